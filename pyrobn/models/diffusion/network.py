"""The reverse chain's network (notes 2.2.2.4: "una red neuronal" learns p(z_{t-1} | z_t)).

A multilayer perceptron of the noisy image z_t, the step t (through sinusoidal features,
Vaswani et al. 2017) and, for a class-conditional model (eq. 19), a one-hot label with
one extra slot for "no label" (classifier-free guidance). The step's features enter the
first layer and, through a linear map of their own, every hidden layer (residual blocks
``h + act(W h + E_k(t))``), so that one network serves every noise level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pyrobn.nn import ACTIVATIONS, check_sizes
from pyrobn.validation import check_int

__all__ = ["Denoiser", "time_features"]


def time_features(t: torch.Tensor, timesteps: int, n: int) -> torch.Tensor:
    """[sin(ω_k s), cos(ω_k s)]_{k < n} with s = 1000 t / T and ω_k = 1000^(-k / n).

    Shape ``(*t.shape, 2 n)``; ``t`` holds integer steps 0..T.

    >>> time_features(torch.tensor([0, 5]), 10, 2).shape
    torch.Size([2, 4])
    """
    k = torch.arange(n, device=t.device, dtype=torch.float32)
    omega = torch.exp(-math.log(1000.0) * k / n)
    arg = (t.to(torch.float32) * (1000.0 / timesteps))[..., None] * omega
    return torch.cat([arg.sin(), arg.cos()], -1)


class Denoiser(nn.Module):
    """f(z_t, t, c) -> (..., D, P): P numbers per coordinate (level logits, or one value).

    Args:
        data_dim: D.
        outputs: P, the numbers per coordinate.
        hidden: the widths of the hidden layers (all equal widths get residual blocks).
        timesteps: T (the step's features are functions of t / T).
        condition_dim: the one-hot label's size (0: unconditional).
        activation: a name in :data:`pyrobn.nn.ACTIVATIONS`.
        time_dim: the number of frequencies of the step's features.
        dropout: dropout rate inside the hidden layers (training mode only).

    >>> net = Denoiser(64, 17, (128, 128), timesteps=100)
    >>> net(torch.zeros(5, 64), torch.full((5,), 3)).shape
    torch.Size([5, 64, 17])
    """

    def __init__(
        self,
        data_dim: int,
        outputs: int,
        hidden: Sequence[int],
        *,
        timesteps: int,
        condition_dim: int = 0,
        activation: str = "silu",
        time_dim: int = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.data_dim = check_int(data_dim, "data_dim")
        self.outputs = check_int(outputs, "outputs")
        self.timesteps = check_int(timesteps, "timesteps")
        self.condition_dim = check_int(condition_dim, "condition_dim", low=0)
        self.time_dim = check_int(time_dim, "time_dim")
        sizes = check_sizes(hidden, "hidden")
        self.act = ACTIVATIONS[activation]()
        features = 2 * self.time_dim
        width_in = data_dim + features + self.condition_dim
        self.layers = nn.ModuleList()
        self.time_maps = nn.ModuleList()
        previous = width_in
        for width in sizes:
            self.layers.append(nn.Linear(previous, width))
            self.time_maps.append(nn.Linear(features, width, bias=False))
            previous = width
        self.residual = [i > 0 and sizes[i] == sizes[i - 1] for i in range(len(sizes))]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(previous, data_dim * self.outputs)

    def forward(
        self, z: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z of shape (..., D), t of shape (...) (integer steps), c (..., C) or None."""
        e = time_features(t, self.timesteps, self.time_dim).to(z.dtype)
        e = e.expand(*z.shape[:-1], e.shape[-1])
        parts = [z, e]
        if self.condition_dim:
            assert c is not None
            parts.append(c.expand(*z.shape[:-1], c.shape[-1]))
        h = torch.cat(parts, -1)
        for layer, time_map, residual in zip(self.layers, self.time_maps, self.residual):
            update = self.act(layer(self.dropout(h) if residual else h) + time_map(e))
            h = h + update if residual else update
        return self.out(h).unflatten(-1, (self.data_dim, self.outputs))
