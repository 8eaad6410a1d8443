"""Where and how pyrobn computes: the device (CUDA when available, CPU otherwise,
``PYROBN_DEVICE`` overrides) and torch's thread counts, which no call leaves changed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from pyrobn.errors import ConfigurationError, DeviceUnavailable

__all__ = ["available_devices", "device", "preserve_threads", "to_tensor"]

_ENV = "PYROBN_DEVICE"


@contextlib.contextmanager
def preserve_threads() -> Iterator[None]:
    """Give torch's intra-op thread count back as it was on entry.

    Some libraries change it as a side effect (numba's OpenMP layer sets OpenMP's thread
    count when its pool starts, and torch reads that count as its own); a pyrobn call
    never leaves it changed.

    >>> n = torch.get_num_threads()
    >>> with preserve_threads():
    ...     torch.set_num_threads(n + 1)
    >>> torch.get_num_threads() == n
    True
    """
    intra = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != intra:
            torch.set_num_threads(intra)


def device() -> torch.device:
    """The device pyrobn computes on.

    ``PYROBN_DEVICE=cpu`` or ``PYROBN_DEVICE=cuda`` (also ``cuda:1``) forces a choice;
    otherwise CUDA when ``torch.cuda.is_available()``, else CPU.

    >>> pyrobn.device()
    device(type='cpu')
    """
    choice = os.environ.get(_ENV, "").strip().lower()
    if not choice:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"{_ENV}={choice!r} asks for CUDA, but torch {torch.__version__} sees no CUDA "
                "device (install a CUDA build of torch, or set PYROBN_DEVICE=cpu)"
            )
        return torch.device(choice)
    raise ConfigurationError(f"{_ENV} must be 'cpu' or 'cuda[:N]', not {choice!r}")


def available_devices() -> list[torch.device]:
    """CPU, plus the first CUDA device when there is one (for parametrised tests)."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices


def to_tensor(
    x: Any,
    *,
    dtype: torch.dtype | None = None,
    device_: torch.device | str | None = None,
) -> torch.Tensor:
    """``x`` (array, list, tensor) as a tensor on ``device_`` (default :func:`device`).

    Tensors keep their dtype unless ``dtype`` is given; numpy floats become
    ``torch.get_default_dtype()`` unless ``dtype`` says otherwise.
    """
    target = torch.device(device_) if device_ is not None else device()
    if isinstance(x, torch.Tensor):
        return x.to(device=target, dtype=dtype or x.dtype)
    array = np.asarray(x)
    if dtype is None and np.issubdtype(array.dtype, np.floating):
        dtype = torch.get_default_dtype()
    return torch.as_tensor(array, dtype=dtype, device=target)
