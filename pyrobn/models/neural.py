"""What the neural generative models' ``fit`` share: the minibatch schedule (``steps`` or
``epochs`` of ``batch_size`` rows) and the first fit's standardisation of continuous data.

Used by :class:`~pyrobn.AutoregressiveModel`, :class:`~pyrobn.NormalizingFlow`,
:class:`~pyrobn.DiffusionModel` and :class:`~pyrobn.GAN`, so that the four read their
training arguments and standardise their data in one way.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from pyrobn.errors import ConfigurationError
from pyrobn.validation import (
    check_finite,
    check_int,
    check_integers_in_range,
    check_shape,
    to_real_tensor,
)

__all__ = ["LevelData", "Schedule", "minibatch_schedule", "standardize_once"]


class Schedule(NamedTuple):
    """``batch`` rows a step (at most n), ``per_epoch`` = ceil(n / batch) steps, ``total`` steps."""

    batch: int
    per_epoch: int
    total: int

    def subsample(self, n: int) -> int | None:
        """The data plate's ``subsample_size``: None when a step takes every row."""
        return None if self.batch >= n else self.batch


def minibatch_schedule(
    n: int, steps: int | None, epochs: int | None, batch_size: int | None
) -> Schedule:
    """Give exactly one of ``steps`` and ``epochs``; ``batch_size=None`` takes all n rows.

    >>> minibatch_schedule(1000, None, 3, 64)
    Schedule(batch=64, per_epoch=16, total=48)
    >>> minibatch_schedule(10, 5, None, None).subsample(10) is None
    True
    """
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size")
    batch = n if batch_size is None or batch_size >= n else batch_size
    per_epoch = math.ceil(n / batch)
    if (steps is None) == (epochs is None):
        raise ConfigurationError("give exactly one of steps= and epochs=")
    if steps is not None:
        return Schedule(batch, per_epoch, check_int(steps, "steps"))
    return Schedule(batch, per_epoch, check_int(epochs, "epochs") * per_epoch)


@torch.no_grad()
def standardize_once(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, standardized: torch.Tensor
) -> None:
    """On the first fit, store the columns' mean and sd (floored at 1e-6; 1 for one row)
    in the buffers ``shift`` and ``scale``, and set the flag ``standardized``; later fits
    keep them, so that a model keeps one scale through repeated fits."""
    if bool(standardized):
        return
    shift.copy_(x.mean(0))
    scale.copy_(x.std(0).clamp_min(1e-6) if x.shape[0] > 1 else torch.ones_like(scale))
    standardized.fill_(True)


class LevelData:
    """The data boundary of a model of rows x in R^D or on ``levels`` integer levels, with
    an optional class label (eq. 19): needs ``data_dim``, ``levels``, ``n_classes`` and a
    ``device`` (the diffusion model and the GAN)."""

    data_dim: int
    levels: int | None
    n_classes: int
    device: torch.device

    @property
    def discrete(self) -> bool:
        """Whether x lives on integer levels (a categorical decoder)."""
        return self.levels is not None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype  # type: ignore[attr-defined]

    def _check_x(self, x: Any, name: str = "x") -> torch.Tensor:
        """x as (n, D): integer levels (long) for discrete data, finite floats otherwise."""
        if self.discrete:
            x = to_real_tensor(x, name, dtype=torch.float64, device=self.device)
            check_shape(x, (None, self.data_dim), name)
            check_integers_in_range(x, 0, self.levels, name)  # type: ignore[arg-type]
            return x.long()
        x = to_real_tensor(x, name, dtype=self.dtype, device=self.device)
        check_shape(x, (None, self.data_dim), name)
        return check_finite(x, name)

    def _check_y(self, y: Any, n: int, name: str = "y") -> torch.Tensor | None:
        """Labels (n,) in 0..n_classes-1 (an int is one label for every row); None for an
        unconditional model, which refuses labels."""
        if self.n_classes == 0:
            if y is not None:
                raise ConfigurationError(
                    f"{name} given, but this model is unconditional (n_classes=0)"
                )
            return None
        if y is None:
            raise ConfigurationError(
                f"this model is class-conditional (n_classes={self.n_classes}): pass {name}"
            )
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((n,), y)
        y = to_real_tensor(y, name, dtype=torch.float64, device=self.device)
        check_shape(y, (n,), name)
        return check_integers_in_range(y, 0, self.n_classes, name).long()
