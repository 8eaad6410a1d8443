"""What the neural generative models' ``fit`` share: the minibatch schedule (``steps`` or
``epochs`` of ``batch_size`` rows) and the first fit's standardisation of continuous data.

Used by :class:`~pyrobn.AutoregressiveModel`, :class:`~pyrobn.NormalizingFlow`,
:class:`~pyrobn.DiffusionModel` and :class:`~pyrobn.GAN`, so that the four read their
training arguments and standardise their data in one way.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from pyrobn.errors import ConfigurationError
from pyrobn.validation import check_int

__all__ = ["Schedule", "minibatch_schedule", "standardize_once"]


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
