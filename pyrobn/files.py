"""Files that hold data only: the one reader of model files and checkpoints.

``torch.load(weights_only=True)`` refuses any pickled object other than tensors, numbers,
strings and containers of them, so a file cannot run code when it is read. On a corrupt
or truncated file the unpickler can fail with almost any exception (``IndexError``,
``UnicodeDecodeError``, ``OverflowError`` ...): every one of them becomes a
:class:`pyrobn.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from typing import Any

import torch

from pyrobn.errors import CheckpointError

__all__ = ["read_data_file"]


def read_data_file(path: str | os.PathLike, what: str, map_location: Any = None) -> Any:
    """The content of a file written with ``torch.save``, read as data only.

    Args:
        path: the file.
        what: what the file should be (``"model file"``, ``"checkpoint"``), for messages.

    Raises:
        CheckpointError: no such file, a file that is not a torch file, is cut short or
            corrupt, or holds objects other than data (refused before anything runs).
    """
    where = str(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no {what} at {where!r}")
    try:
        with warnings.catch_warnings():
            # garbage often "declares" an odd pickle protocol: the error below says enough
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"{where!r} is not a pyrobn {what}, or it holds objects other than data "
            f"(refused without running them): {first}"
        ) from exc
    except Exception as exc:  # a corrupt file can make the unpickler fail in any way
        raise CheckpointError(
            f"cannot read {what} {where!r} ({type(exc).__name__}: {exc}); is it cut short "
            "or corrupt?"
        ) from exc
