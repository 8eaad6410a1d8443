"""Small network builders shared by the neural models (plain ``torch.nn``, no Pyro).

The VAE family (lecture: encoder hφ, decoder fθ) and its plain-PyTorch reference
(``tests/vae_reference.py``) build their networks here, so "the same network"
means the same code, layer for layer. The autoregressive models (notes 2.2.2.1) take
their causal conditioners from here too: :class:`MADE` (masked MLP),
:class:`CausalConvNet` (dilated causal 1-D convolutions), :class:`PixelCNN` (masked 2-D
convolutions) and :class:`CausalTransformer`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pyrobn.errors import ConfigurationError, ShapeError
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

    >>> [type(layer).__name__ for layer in mlp([64, 128, 4])]
    ['Linear', 'ReLU', 'Linear']
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
    condition_every_layer: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """The autoencoder pair: encoder hφ: R^(D+C) -> R^(k L), decoder fθ: R^(L+C) -> R^D.

    ``hidden`` are the encoder's hidden widths; the decoder mirrors them. ``C =
    condition_dim`` one-hot inputs are concatenated to both (notes 2.2.3, eq. 19). The
    encoder returns ``encoder_outputs * latent_dim`` numbers: 2 for a VAE (mean and
    log-variance, lecture), 1 for a deterministic autoencoder. The encoder is built
    first, then the decoder, so one seed gives one initialisation. With
    ``condition_every_layer`` the condition also enters every later layer of both
    (:class:`ConditionedMLP`).
    """
    hidden = check_sizes(hidden, "hidden")
    encoder = conditioned_mlp(
        [data_dim + condition_dim, *hidden, encoder_outputs * latent_dim],
        activation,
        condition_dim if condition_every_layer else 0,
    )
    decoder = conditioned_mlp(
        [latent_dim + condition_dim, *reversed(hidden), data_dim],
        activation,
        condition_dim if condition_every_layer else 0,
    )
    return encoder, decoder


def conditioned_mlp(
    sizes: Sequence[int], activation: str = "relu", condition_dim: int = 0
) -> nn.Module:
    """:func:`mlp` when ``condition_dim`` is 0, else a :class:`ConditionedMLP` whose last
    ``condition_dim`` inputs enter every layer.

    >>> [type(conditioned_mlp([5, 8, 2], "relu", c)).__name__ for c in (0, 2)]
    ['Sequential', 'ConditionedMLP']
    """
    if condition_dim:
        return ConditionedMLP(sizes, condition_dim, activation)
    return mlp(sizes, activation)


class ConditionedMLP(nn.Module):
    """An MLP whose condition c enters every layer: h_1 = a(W_1 [u; c] + b_1), then
    h_k = a(W_k h_{k-1} + V_k c + b_k) for the next layers (the output linear).

    The input is the concatenation ``[u; c]`` with the last ``condition_dim`` columns the
    condition, as :func:`mlp`'s conditional input (notes 2.2.3, eq. 19: "concatenar el
    valor de y"); each later layer k adds a learned projection V_k c of the condition to
    its pre-activation, as the conditional PixelCNN and :class:`MADE` do, so that the
    network cannot drop c after its first layer. With one-hot c, V_k c is a per-class
    bias of layer k.

    >>> net = ConditionedMLP([4 + 3, 8, 8, 5], condition_dim=3)
    >>> net(torch.zeros(2, 7)).shape, [tuple(v.weight.shape) for v in net.condition]
    (torch.Size([2, 5]), [(8, 3), (5, 3)])
    """

    def __init__(self, sizes: Sequence[int], condition_dim: int, activation: str = "relu") -> None:
        super().__init__()
        sizes = check_sizes(sizes, "sizes")
        self.condition_dim = check_int(condition_dim, "condition_dim")
        if len(sizes) < 2:
            raise ConfigurationError(f"an MLP needs an input and an output size, got {sizes}")
        if sizes[0] <= self.condition_dim:
            raise ConfigurationError(
                f"the input size {sizes[0]} must exceed condition_dim = {self.condition_dim}"
            )
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.condition = nn.ModuleList(
            nn.Linear(self.condition_dim, b, bias=False) for b in sizes[2:]
        )
        self.activation = _activation(activation)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        c = inputs[..., -self.condition_dim :]
        h = self.layers[0](inputs)
        for layer, project in zip(self.layers[1:], self.condition, strict=True):
            h = layer(self.activation(h)) + project(c)
        return h


# --------------------------------------------------------------------------- causal networks
#
# The conditioners of the autoregressive models (notes 2.2.2.1, eq. 15): each maps a
# sequence of inputs (B, T, C_in), already in the model's order, to per-position
# parameters (B, T, P) such that output t depends on inputs 0..t-1 only (never on t or
# later). ``tests/test_autoregressive.py`` checks that property by autograd for each.


class MaskedLinear(nn.Linear):
    """``y = x (W ⊙ M)ᵀ + b``: a linear layer whose weight is multiplied by a fixed 0/1 mask."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor) -> None:
        super().__init__(in_features, out_features)
        if tuple(mask.shape) != (out_features, in_features):
            raise ConfigurationError(
                f"mask must have shape ({out_features}, {in_features}), got {tuple(mask.shape)}"
            )
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def _check_dropout(dropout: float) -> float:
    if not 0 <= dropout < 1:
        raise ConfigurationError(f"dropout must lie in [0, 1), got {dropout}")
    return float(dropout)


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigurationError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]()


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015) over T positions.

    Input position t (1-based degree t) feeds hidden unit k only if the unit's degree
    m(k) >= t; output position t reads hidden units with m(k) < t. Hidden degrees cycle
    through 1..T-1, so every path from input s to output t has s < t: output t is a
    function of inputs 1..t-1. A context c (e.g. a one-hot class, eq. 19) feeds every
    hidden unit and every output unmasked.

    >>> net = MADE(64, in_features=1, hidden=(256,), out_features=17)
    >>> net(torch.zeros(2, 64, 1)).shape
    torch.Size([2, 64, 17])
    """

    def __init__(
        self,
        length: int,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        context_dim: int = 0,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.length = check_int(length, "length")
        self.in_features = check_int(in_features, "in_features")
        self.out_features = check_int(out_features, "out_features")
        self.context_dim = check_int(context_dim, "context_dim", low=0)
        hidden = check_sizes(hidden, "hidden")
        if not hidden:
            raise ConfigurationError("MADE needs at least one hidden layer")
        T = self.length
        degrees = [torch.arange(1, T + 1).repeat_interleave(self.in_features)]
        for width in hidden:
            degrees.append(torch.arange(width) % max(T - 1, 1) + 1)
        out_degrees = torch.arange(1, T + 1).repeat_interleave(self.out_features)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(degrees)):
            layers.append(MaskedLinear(len(a), len(b), (b[:, None] >= a[None, :]).float()))
            layers.append(_activation(activation))
            if dropout:
                layers.append(nn.Dropout(_check_dropout(dropout)))
            if i == 0 and self.context_dim:
                self.context_in = nn.Linear(self.context_dim, len(b), bias=False)
        self.body = nn.ModuleList(layers)
        self.out = MaskedLinear(
            len(degrees[-1]), T * self.out_features, (out_degrees[:, None] > degrees[-1]).float()
        )
        if self.context_dim:
            self.context_out = nn.Linear(self.context_dim, T * self.out_features, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(-2)
        for i, layer in enumerate(self.body):
            h = layer(h)
            if i == 0 and context is not None and self.context_dim:
                h = h + self.context_in(context)
        out = self.out(h)
        if context is not None and self.context_dim:
            out = out + self.context_out(context)
        return out.unflatten(-1, (self.length, self.out_features))


class CausalConv1d(nn.Conv1d):
    """A 1-D convolution padded on the left: output t sees inputs t-(k-1)d .. t.

    ``shift=True`` (the first layer) moves the window one step back, so output t sees
    inputs before t only (strictly causal).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, *,
        shift: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.shift = bool(shift)
        self.left = (kernel_size - 1) * dilation + int(self.shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(F.pad(x, (self.left, 0)))
        return y[..., :-1] if self.shift else y


class CausalConvNet(nn.Module):
    """A stack of dilated causal 1-D convolutions (WaveNet-like) with residual connections.

    Layer 0 is strictly causal (:class:`CausalConv1d` with ``shift``); layer i > 0 has
    dilation 2^(i mod cycle). The receptive field is :attr:`receptive_field` positions
    back: an order-R Markov chain's window (notes 2.1.3.3), learned by a network. Works
    on any length T. A context c (a one-hot class, eq. 19) enters every layer: layer k's
    pre-activation gains V_k c, one learned projection per layer (the conditional
    PixelCNN's form, van den Oord et al. 2016); none without a context.

    >>> net = CausalConvNet(1, 32, 17, layers=3, kernel_size=3)
    >>> net(torch.zeros(2, 64, 1)).shape
    torch.Size([2, 64, 17])
    """

    def __init__(
        self,
        in_features: int,
        channels: int,
        out_features: int,
        *,
        layers: int = 4,
        kernel_size: int = 3,
        dilation_cycle: int = 4,
        context_dim: int = 0,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_int(in_features, "in_features")
        channels = check_int(channels, "channels")
        check_int(out_features, "out_features")
        layers = check_int(layers, "layers")
        kernel_size = check_int(kernel_size, "kernel_size", low=2)
        dilation_cycle = check_int(dilation_cycle, "dilation_cycle")
        self.context_dim = check_int(context_dim, "context_dim", low=0)
        self.first = CausalConv1d(in_features, channels, kernel_size, shift=True)
        self.dilations = [2 ** (i % dilation_cycle) for i in range(1, layers)]
        self.convs = nn.ModuleList(
            CausalConv1d(channels, channels, kernel_size, d) for d in self.dilations
        )
        self.act = _activation(activation)
        self.drop = nn.Dropout(_check_dropout(dropout))
        self.out = nn.Conv1d(channels, out_features, 1)
        self.layers = layers
        if self.context_dim:
            # V_k of every layer k: (layers, channels) outputs
            self.context = nn.Linear(self.context_dim, layers * channels, bias=False)
        self.receptive_field = kernel_size + sum((kernel_size - 1) * d for d in self.dilations)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.first(x.transpose(-1, -2))
        terms = None
        if context is not None and self.context_dim:
            terms = self.context(context).unflatten(-1, (self.layers, -1)).unsqueeze(-1)
            h = h + terms[..., 0, :, :]
        h = self.act(h)
        for k, conv in enumerate(self.convs, start=1):
            dh = conv(h)
            if terms is not None:
                dh = dh + terms[..., k, :, :]
            h = h + self.drop(self.act(dh))
        return self.out(h).transpose(-1, -2)


class MaskedConv2d(nn.Conv2d):
    """A 2-D convolution whose kernel keeps only an allowed part (PixelCNN, raster order).

    ``part``: ``"above"`` rows strictly above the centre; ``"above_and_row"`` those rows
    plus the centre row (every column); ``"left"`` the centre row, columns strictly left
    of the centre; ``"left_and_centre"`` columns up to and including the centre.
    """

    PARTS = ("above", "above_and_row", "left", "left_and_centre")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, part: str) -> None:
        if part not in self.PARTS:
            raise ConfigurationError(f"unknown mask part {part!r}; choose one of {self.PARTS}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        c = kernel_size // 2
        mask = torch.zeros_like(self.weight)
        if part == "above":
            mask[:, :, :c, :] = 1
        elif part == "above_and_row":
            mask[:, :, : c + 1, :] = 1
        elif part == "left":
            mask[:, :, c, :c] = 1
        else:
            mask[:, :, c, : c + 1] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class PixelCNN(nn.Module):
    """A PixelCNN without blind spot (van den Oord et al. 2016, vertical + horizontal stacks).

    Images (B, H·W, C_in) in raster order (or their first rows only, (B, h·W, C_in) with
    h <= H: rows below never influence rows above). The vertical stack v(r, c) sees rows above r
    (its first layer masks the centre row out; later layers may use it, since v already
    depends on rows < r only); the horizontal stack h(r, c) sees row r left of c and
    v(r, c). Output (r, c) therefore depends on every pixel before (r, c) in raster
    order within the receptive field, and on none after it. Residual layers, dropout
    between them.

    A context c (a one-hot class, eq. 19) enters every layer of both stacks, as in the
    conditional PixelCNN (van den Oord et al. 2016, eq. 4 without the gate): layer k's
    pre-activations are conv_k(v) + V_k^v c and conv_k(h) + link_k(v) + V_k^h c, one
    learned projection per layer and stack (one ``nn.Linear`` holding all of them).
    Without a context (``context_dim = 0``) the network has no such parameter.

    >>> net = PixelCNN((8, 8), 1, 32, 17, layers=3)
    >>> net(torch.zeros(2, 64, 1)).shape
    torch.Size([2, 64, 17])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        in_features: int,
        channels: int,
        out_features: int,
        *,
        layers: int = 4,
        kernel_size: int = 3,
        context_dim: int = 0,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.image_shape = check_sizes(image_shape, "image_shape")
        if len(self.image_shape) != 2:
            raise ConfigurationError(f"image_shape must be (H, W), got {self.image_shape}")
        check_int(in_features, "in_features")
        channels = check_int(channels, "channels")
        check_int(out_features, "out_features")
        layers = check_int(layers, "layers")
        kernel_size = check_int(kernel_size, "kernel_size", low=2)
        if kernel_size % 2 == 0:
            raise ConfigurationError(f"kernel_size must be odd, got {kernel_size}")
        self.context_dim = check_int(context_dim, "context_dim", low=0)
        first_k = kernel_size + 2
        self.v_first = MaskedConv2d(in_features, channels, first_k, "above")
        self.h_first = MaskedConv2d(in_features, channels, first_k, "left")
        self.v_convs = nn.ModuleList(
            MaskedConv2d(channels, channels, kernel_size, "above_and_row")
            for _ in range(layers - 1)
        )
        self.h_convs = nn.ModuleList(
            MaskedConv2d(channels, channels, kernel_size, "left_and_centre")
            for _ in range(layers - 1)
        )
        self.v_to_h = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(layers))
        self.act = _activation(activation)
        self.drop = nn.Dropout(_check_dropout(dropout))
        self.out = nn.Conv2d(channels, out_features, 1)
        self.layers = layers
        if self.context_dim:
            # V_k^v and V_k^h of every layer k: (layers, 2, channels) outputs
            self.context = nn.Linear(self.context_dim, layers * 2 * channels, bias=False)

    def _context_terms(self, context: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(V_k^v c, V_k^h c) for every layer k, each (..., channels, 1, 1)."""
        terms = self.context(context).unflatten(-1, (self.layers, 2, -1))[..., None, None]
        return [(terms[..., k, 0, :, :, :], terms[..., k, 1, :, :, :]) for k in range(self.layers)]

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        W = self.image_shape[1]
        if x.shape[-2] % W or x.shape[-2] > self.image_shape[0] * W:
            raise ShapeError(
                f"PixelCNN inputs are whole rows of {W} pixels, at most {self.image_shape[0]} "
                f"rows; got {x.shape[-2]} positions"
            )
        img = x.transpose(-1, -2).unflatten(-1, (-1, W))
        v, h = self.v_first(img), self.h_first(img)
        terms = None
        if context is not None and self.context_dim:
            terms = self._context_terms(context)
            v, h = v + terms[0][0], h + terms[0][1]
        v = self.act(v)
        h = self.act(h + self.v_to_h[0](v))
        for k, (v_conv, h_conv, link) in enumerate(
            zip(self.v_convs, self.h_convs, self.v_to_h[1:]), start=1
        ):
            dv, dh = v_conv(v), h_conv(h)
            if terms is not None:
                dv, dh = dv + terms[k][0], dh + terms[k][1]
            v = v + self.drop(self.act(dv))
            h = h + self.drop(self.act(dh + link(v)))
        return self.out(h).flatten(-2).transpose(-1, -2)


class CausalTransformer(nn.Module):
    """A small decoder-only transformer: output t attends to inputs 0..t-1 only.

    Inputs are projected to ``d_model``, shifted one step right behind a learned start
    vector (so position t holds input t-1), given learned position embeddings, and run
    through ``layers`` pre-norm encoder layers under a causal attention mask. A context
    c is added to every position. ``max_length`` bounds T.

    >>> net = CausalTransformer(1, 17, d_model=32, heads=2, layers=2, max_length=64)
    >>> net(torch.zeros(2, 64, 1)).shape
    torch.Size([2, 64, 17])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        max_length: int = 64,
        context_dim: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_int(in_features, "in_features")
        check_int(out_features, "out_features")
        d_model = check_int(d_model, "d_model")
        heads = check_int(heads, "heads")
        if d_model % heads:
            raise ConfigurationError(f"d_model ({d_model}) must be a multiple of heads ({heads})")
        self.max_length = check_int(max_length, "max_length")
        self.context_dim = check_int(context_dim, "context_dim", low=0)
        self.embed = nn.Linear(in_features, d_model)
        self.start = nn.Parameter(torch.zeros(d_model))
        self.position = nn.Parameter(0.02 * torch.randn(self.max_length, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model,
            heads,
            dim_feedforward=4 * d_model,
            dropout=_check_dropout(dropout),
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(
            layer, check_int(layers, "layers"), enable_nested_tensor=False
        )
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, out_features)
        if self.context_dim:
            self.context = nn.Linear(self.context_dim, d_model, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        T = x.shape[-2]
        if T > self.max_length:
            raise ShapeError(f"sequences are at most {self.max_length} long here, got {T}")
        e = self.embed(x)
        start = self.start.expand(*e.shape[:-2], 1, e.shape[-1])
        h = torch.cat([start, e[..., :-1, :]], dim=-2) + self.position[:T]
        if context is not None and self.context_dim:
            h = h + self.context(context).unsqueeze(-2)
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=h.device, dtype=h.dtype)
        h = self.blocks(h, mask=mask, is_causal=True)
        return self.out(self.norm(h))


__all__ = [
    "ACTIVATIONS",
    "MADE",
    "CausalConv1d",
    "CausalConvNet",
    "CausalTransformer",
    "ConditionedMLP",
    "MaskedConv2d",
    "MaskedLinear",
    "PixelCNN",
    "check_sizes",
    "conditioned_mlp",
    "encoder_decoder",
    "mlp",
]
