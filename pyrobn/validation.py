"""Boundary checks shared by every model: they raise :mod:`pyrobn.errors` naming the fault.

Models call these in constructors, ``fit`` and queries, never inside the hot path.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch

from pyrobn.errors import (
    ConfigurationError,
    InvalidDistributionError,
    NonFiniteError,
    OutOfSupportError,
    ShapeError,
)


def _first_index(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0].tolist())


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise :class:`NonFiniteError` if ``x`` holds NaN or inf (the first index is named)."""
    bad = ~torch.isfinite(x)
    if bad.any():
        index = _first_index(bad)
        raise NonFiniteError(
            f"{name} has {int(bad.sum())} non-finite value(s); the first is "
            f"{x[index].item()} at index {index}"
        )
    return x


def check_shape(x: torch.Tensor, expected: Sequence[int | None], name: str) -> torch.Tensor:
    """Raise :class:`ShapeError` unless ``x.shape`` matches ``expected`` (None = any size)."""
    if x.dim() != len(expected) or any(e is not None and e != s for e, s in zip(expected, x.shape)):
        shown = tuple("*" if e is None else e for e in expected)
        raise ShapeError(f"{name} must have shape {shown}, got {tuple(x.shape)}")
    return x


def check_int(value: Any, name: str, low: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``low``, else
    :class:`ConfigurationError` naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        bound = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigurationError(f"{name} must be {bound}, got {value!r}")
    return int(value)


def check_positive(value: float | torch.Tensor, name: str) -> None:
    """Raise :class:`ConfigurationError` unless ``value`` (every entry) is finite and > 0."""
    t = torch.as_tensor(value)
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ConfigurationError(f"{name} must be positive and finite, got {value}")


def check_integers_in_range(
    x: torch.Tensor, low: int, high: int, name: str, *, allow: int | None = None
) -> torch.Tensor:
    """Raise :class:`OutOfSupportError` unless every entry is an integer in [low, high).

    ``allow`` is one extra admitted value (for example -1 for "missing").
    """
    if x.is_floating_point():
        check_finite(x, name)
        if bool((x != x.round()).any()):
            index = _first_index(x != x.round())
            raise OutOfSupportError(f"{name} must hold integers; index {index} is {x[index]}")
    bad = (x < low) | (x >= high)
    if allow is not None:
        bad &= x != allow
    if bad.any():
        index = _first_index(bad)
        extra = f" (or {allow})" if allow is not None else ""
        raise OutOfSupportError(
            f"{name} must lie in {{{low}, ..., {high - 1}}}{extra}; "
            f"index {index} holds {int(x[index])}"
        )
    return x


def check_distribution(
    probs: torch.Tensor, name: str, *, atol: float = 1e-6, row_names: Sequence[str] | None = None
) -> torch.Tensor:
    """Raise :class:`InvalidDistributionError` unless every row (last axis) is a distribution.

    Rows must be non-negative and sum to 1 within ``atol``; the first bad row is named,
    by ``row_names`` when given, else by its index.
    """
    check_finite(probs, name)

    def label(flat_index: int) -> str:
        if row_names is not None:
            return row_names[flat_index]
        index = tuple(
            int(i) for i in torch.unravel_index(torch.tensor(flat_index), probs.shape[:-1])
        )
        return f"row {index}" if index else "the table"

    rows = probs.reshape(-1, probs.shape[-1])
    negative = (rows < 0).any(-1)
    if negative.any():
        i = int(negative.nonzero()[0])
        raise InvalidDistributionError(
            f"{name}: {label(i)} has a negative entry: {rows[i].tolist()}"
        )
    sums = rows.sum(-1)
    off = (sums - 1).abs() > atol
    if off.any():
        i = int(off.nonzero()[0])
        raise InvalidDistributionError(
            f"{name}: {label(i)} sums to {float(sums[i]):.10g}, not 1 "
            f"(tolerance {atol}): {rows[i].tolist()}"
        )
    return probs
