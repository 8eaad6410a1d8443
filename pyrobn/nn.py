"""Small network builders shared by the neural models (plain ``torch.nn``, no Pyro).

The VAE family (lecture: encoder hφ, decoder fθ) and its plain-PyTorch reference
(``tests/vae_reference.py``) build their networks here, so "the same network"
means the same code, layer for layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import nn

from pyrobn.errors import ConfigurationError
from pyrobn.validation import check_int

#: the activations :func:`mlp` knows, by name
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
}


def check_sizes(sizes: Sequence[int], name: str) -> tuple[int, ...]:
    """``sizes`` as a tuple of positive ints, else :class:`ConfigurationError` naming ``name``."""
    return tuple(check_int(size, f"{name}[{i}]") for i, size in enumerate(sizes))


def mlp(sizes: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """A multilayer perceptron: ``Linear -> activation -> ... -> Linear`` through ``sizes``.

    The activation follows every layer but the last (the output is left linear: logits,
    means or log-variances). ``sizes = (a, b)`` is a single affine map.

    >>> mlp([64, 128, 4])
    Sequential(Linear(64, 128), ReLU(), Linear(128, 4))
    """
    sizes = check_sizes(sizes, "sizes")
    if len(sizes) < 2:
        raise ConfigurationError(f"an MLP needs an input and an output size, got {sizes}")
    if activation not in ACTIVATIONS:
        raise ConfigurationError(
            f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def encoder_decoder(
    data_dim: int,
    latent_dim: int,
    hidden: Sequence[int],
    activation: str = "relu",
    *,
    condition_dim: int = 0,
    encoder_outputs: int = 2,
) -> tuple[nn.Sequential, nn.Sequential]:
    """The autoencoder pair: encoder hφ: R^(D+C) -> R^(k L), decoder fθ: R^(L+C) -> R^D.

    ``hidden`` are the encoder's hidden widths; the decoder mirrors them. ``C =
    condition_dim`` one-hot inputs are concatenated to both (notes 2.2.3, eq. 19). The
    encoder returns ``encoder_outputs * latent_dim`` numbers: 2 for a VAE (mean and
    log-variance, lecture), 1 for a deterministic autoencoder. The encoder is built
    first, then the decoder, so one seed gives one initialisation.
    """
    hidden = check_sizes(hidden, "hidden")
    encoder = mlp([data_dim + condition_dim, *hidden, encoder_outputs * latent_dim], activation)
    decoder = mlp([latent_dim + condition_dim, *reversed(hidden), data_dim], activation)
    return encoder, decoder
