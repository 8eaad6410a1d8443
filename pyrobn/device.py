"""Device selection: CUDA when available, CPU otherwise, ``PYROBN_DEVICE`` overrides."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from pyrobn.errors import ConfigurationError, DeviceUnavailable

_ENV = "PYROBN_DEVICE"


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
