"""Boundary checks shared by every model: they raise :mod:`pyrobn.errors` naming the fault.

Models call these in constructors, ``fit`` and queries, never inside the hot path.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pyrobn.errors import (
    ConfigurationError,
    InvalidDistributionError,
    NonFiniteError,
    OutOfSupportError,
    ShapeError,
    SizeLimitError,
)

__all__ = [
    "MEMORY_BUDGET_BYTES",
    "check_allocation",
    "check_distribution",
    "check_finite",
    "check_int",
    "check_integers_in_range",
    "check_labels",
    "check_positive",
    "check_shape",
    "memory_budget",
    "to_real_tensor",
]

_BUDGET_ENV = "PYROBN_MEMORY_BUDGET"
#: the default budget of one allocation pyrobn is about to make (4 GiB)
MEMORY_BUDGET_BYTES = 4 * 2**30
_SUFFIXES = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def memory_budget() -> int:
    """The allocation budget in bytes: ``PYROBN_MEMORY_BUDGET`` (bytes, or with a K/M/G/T
    suffix: ``"512M"``) when set, else :data:`MEMORY_BUDGET_BYTES`.

    >>> memory_budget() > 0
    True
    """
    text = os.environ.get(_BUDGET_ENV, "").strip().upper().removesuffix("B")
    if not text:
        return MEMORY_BUDGET_BYTES
    number, unit = (text[:-1], text[-1]) if text[-1] in _SUFFIXES else (text, "")
    try:
        value = float(number) * _SUFFIXES[unit]
    except ValueError:
        raise ConfigurationError(
            f"{_BUDGET_ENV} must be a number of bytes such as 4G or 512M, got {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{_BUDGET_ENV} must be positive, got {text!r}")
    return int(value)


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def check_allocation(
    n_elements: float, dtype: torch.dtype, what: str, budget: int | None = None
) -> None:
    """Raise :class:`SizeLimitError` before allocating ``n_elements`` of ``dtype`` past the
    budget (:func:`memory_budget` unless ``budget`` is given), naming ``what`` and the size.

    ``n_elements`` may be a float or a huge int (a product of dimensions): nothing is
    allocated to check it.

    >>> check_allocation(10, torch.float64, "a table")
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = float(n_elements) * itemsize
    limit = memory_budget() if budget is None else budget
    if need > limit:
        raise SizeLimitError(
            f"{what} would need {_format_bytes(need)} ({n_elements:.4g} elements of {dtype}), "
            f"over the memory budget of {_format_bytes(limit)} (set {_BUDGET_ENV} to change it)"
        )


def to_real_tensor(
    x: Any,
    name: str,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``x`` (tensor, array, nested list, number) as a real floating tensor, or a clear error.

    Complex values, strings, objects and ragged lists raise :class:`ShapeError` or
    :class:`ConfigurationError` naming ``name`` instead of being cast silently. Integer and
    bool inputs become floats (``dtype``, default torch's default dtype; tensors keep a
    floating dtype they already have). The device is ``device``, else the tensor's own,
    else :func:`pyrobn.device`.

    >>> to_real_tensor([[1, 2], [3, 4]], "x").dtype
    torch.float32
    """
    from pyrobn.device import device as default_device

    if isinstance(x, torch.Tensor):
        tensor = x
    else:
        if isinstance(x, str | bytes):
            raise ConfigurationError(f"{name} must be numbers, got the string {x!r}")
        try:
            array = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise ShapeError(f"{name} must be a rectangular array of numbers: {exc}") from None
        if array.dtype == object:
            raise ShapeError(
                f"{name} must be a rectangular array of numbers (ragged or mixed input given)"
            )
        if array.dtype.kind in "USV":
            raise ConfigurationError(f"{name} must be numbers, got an array of {array.dtype}")
        if array.dtype.kind == "c":
            raise ConfigurationError(f"{name} must be real, got complex values ({array.dtype})")
        tensor = torch.from_numpy(np.require(array, requirements="C"))  # keeps 0-d arrays 0-d
    if tensor.is_complex():
        raise ConfigurationError(f"{name} must be real, got a complex tensor ({tensor.dtype})")
    target_dtype = dtype
    if target_dtype is None:
        target_dtype = tensor.dtype if tensor.is_floating_point() else torch.get_default_dtype()
        if isinstance(x, np.ndarray | list | tuple) and tensor.dtype == torch.float64:
            target_dtype = torch.get_default_dtype()
    if device is not None:
        target = torch.device(device)
    elif isinstance(x, torch.Tensor):
        target = x.device
    else:
        target = default_device()
    return tensor.to(device=target, dtype=target_dtype)


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
    """Raise :class:`ConfigurationError` unless ``value`` (every entry) is a real, finite
    number > 0. Python numbers are checked in float64 (``1e-300`` is positive)."""
    if isinstance(value, bool) or isinstance(value, str | bytes):
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
    try:
        t = torch.as_tensor(value, dtype=None if isinstance(value, torch.Tensor) else torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}") from None
    if t.is_complex() or t.dtype == torch.bool:
        raise ConfigurationError(f"{name} must be a positive real number, got {value!r}")
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


def check_labels(
    y: Any,
    n: int,
    n_classes: int,
    name: str = "y",
    *,
    owner: str = "model",
    device: torch.device | str | None = None,
) -> torch.Tensor | None:
    """Class labels ``y`` of ``n`` rows for a model with ``n_classes`` classes (eq. 19).

    Returns ``None`` for an unconditional model (``n_classes == 0``, ``y`` must be None),
    else a long tensor of shape (n,) with values in {0, ..., n_classes - 1}; a single
    label is repeated for every row. Labels, not one-hot rows: a model one-hot encodes
    them itself where it needs a context vector. A label where none belongs, a missing
    label, a wrong shape or an out-of-range value raise :mod:`pyrobn.errors` naming
    ``name`` (``owner`` names the model in the message).

    >>> check_labels([0, 2, 1], 3, 3).tolist()
    [0, 2, 1]
    >>> check_labels(1, 2, 3).tolist()
    [1, 1]
    """
    if n_classes == 0:
        if y is not None:
            raise ConfigurationError(
                f"{name} given, but this {owner} is unconditional (n_classes=0)"
            )
        return None
    if y is None:
        raise ConfigurationError(
            f"this {owner} is class-conditional (n_classes={n_classes}): pass {name}"
        )
    labels = to_real_tensor(y, name, dtype=torch.float64, device=device)
    if labels.dim() == 0:
        labels = labels.expand(n)
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ShapeError(f"{name} must be a label or have shape ({n},), got {tuple(labels.shape)}")
    return check_integers_in_range(labels, 0, n_classes, name).long()
