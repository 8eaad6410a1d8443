"""What the neural generative models share: the minibatch schedule (``steps`` or
``epochs`` of ``batch_size`` rows), the first fit's standardisation of continuous data,
and classifier-free guidance.

Used by :class:`~pyrobn.AutoregressiveModel`, :class:`~pyrobn.NormalizingFlow`,
:class:`~pyrobn.DiffusionModel` and :class:`~pyrobn.GAN`, so that the four read their
training arguments and standardise their data in one way.

**Classifier-free guidance** (Ho & Salimans 2021; the diffusion and autoregressive
models). A class-conditional network f(·, c) of eq. 19 reads the label as a one-hot
context c with one more slot, ∅ ("no label"); training replaces each label by ∅ with
probability ``p_uncond`` (label dropout), so one network gives both f(·, y) and
f(·, ∅), the conditional and the unconditional model. Sampling with guidance w >= 0
uses (1 + w) f(·, y) - w f(·, ∅) in place of f(·, y): w = 0 is the model p(x | y);
w > 0 pushes the draws towards what tells y apart from the other classes, and they
no longer follow p(x | y). ∅ is never a user's label (labels are checked against
0..n_classes - 1 before they get here).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from pyrobn.errors import ConfigurationError
from pyrobn.validation import (
    check_finite,
    check_int,
    check_integers_in_range,
    check_shape,
    to_real_tensor,
)

__all__ = [
    "LevelData",
    "Schedule",
    "check_guidance",
    "check_p_uncond",
    "class_context",
    "guided",
    "minibatch_schedule",
    "null_context",
    "standardize_once",
]


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


def check_p_uncond(p_uncond: Any) -> float:
    """The label-dropout probability as a float in [0, 1), else :class:`ConfigurationError`.

    >>> check_p_uncond(0.1)
    0.1
    """
    if (
        isinstance(p_uncond, bool)
        or not isinstance(p_uncond, int | float)
        or not 0 <= p_uncond < 1  # NaN fails too
    ):
        raise ConfigurationError(f"p_uncond must lie in [0, 1), got {p_uncond!r}")
    return float(p_uncond)


def check_guidance(guidance: Any, n_classes: int, p_uncond: float) -> float:
    """The guidance weight w as a float >= 0 (finite), else :class:`ConfigurationError`;
    w > 0 needs a class-conditional model (``n_classes > 0``) trained with label dropout
    (``p_uncond > 0``: otherwise f(·, ∅) was never trained).

    >>> check_guidance(2, 10, 0.1)
    2.0
    """
    if isinstance(guidance, bool) or not isinstance(guidance, int | float):
        raise ConfigurationError(f"guidance must be a number >= 0, got {guidance!r}")
    if not (math.isfinite(guidance) and guidance >= 0):
        raise ConfigurationError(f"guidance must be a number >= 0, got {guidance!r}")
    if guidance and n_classes == 0:
        raise ConfigurationError("guidance needs a class-conditional model (n_classes > 0)")
    if guidance and not p_uncond > 0:
        raise ConfigurationError(
            "guidance needs a model trained with label dropout (p_uncond > 0): with "
            "p_uncond = 0 the unconditional output f(., no label) is never trained"
        )
    return float(guidance)


def class_context(
    labels: torch.Tensor | None,
    n_classes: int,
    dtype: torch.dtype,
    *,
    null_slot: bool = True,
    p_uncond: float = 0.0,
    shape: tuple[int, ...] | torch.Size = (),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The one-hot context of long ``labels`` in 0..n_classes-1 (eq. 19), with one more
    slot, index ``n_classes``, for ∅ when ``null_slot``. ``labels = None`` gives ∅ for
    every entry of ``shape`` (on ``device``); ``p_uncond > 0`` replaces each label by ∅
    with that probability (label dropout during training; the global RNG, which a fit
    seeds locally).

    >>> class_context(torch.tensor([0, 2]), 3, torch.float32).tolist()
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    >>> class_context(None, 3, torch.float32, shape=(1,)).tolist()
    [[0.0, 0.0, 0.0, 1.0]]
    """
    if labels is None:
        if not null_slot:
            raise ConfigurationError("no label given to a model without a 'no label' slot")
        labels = torch.full(tuple(shape), n_classes, dtype=torch.long, device=device)
    elif p_uncond > 0:
        if not null_slot:
            raise ConfigurationError("label dropout needs the 'no label' slot")
        dropped = torch.rand(labels.shape, device=labels.device) < p_uncond
        labels = torch.where(dropped, torch.full_like(labels, n_classes), labels)
    return F.one_hot(labels.long(), n_classes + int(null_slot)).to(dtype)


def null_context(context: torch.Tensor) -> torch.Tensor:
    """∅ in the shape of a context from :func:`class_context` (its last slot set)."""
    null = torch.zeros_like(context)
    null[..., -1] = 1
    return null


def guided(
    f: Callable[[torch.Tensor], torch.Tensor], context: torch.Tensor | None, guidance: float
) -> torch.Tensor:
    """f(c) for w = 0 (or no context), else (1 + w) f(c) - w f(∅): classifier-free guidance.

    >>> c = class_context(torch.tensor([1]), 2, torch.float32)
    >>> guided(lambda c: 3 * c, c, 0.5).tolist()   # 1.5 (3c) - 0.5 (3∅)
    [[0.0, 4.5, -1.5]]
    """
    out = f(context)
    if guidance and context is not None:
        out = (1 + guidance) * out - guidance * f(null_context(context))
    return out


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
