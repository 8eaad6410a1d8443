"""Random numbers without side effects on the caller.

Every function of pyrobn that draws takes a ``seed``. With a seed it draws from streams of
its own (:func:`generator`) or runs under :func:`seeded`, which seeds Python, NumPy, torch
and Pyro for the block and gives the caller's states back afterwards; without one it
consumes the caller's streams, as torch does. Only :func:`set_seed`, which the user calls,
reseeds the process.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyro
import torch

from pyrobn.validation import check_int

__all__ = ["forked", "generator", "seeded", "set_seed"]


def set_seed(seed: int) -> None:
    """Seed :mod:`random`, NumPy, torch (CPU and CUDA) and Pyro with ``seed``.

    The one call in pyrobn that changes the process's random state: the user asks for it.

    >>> set_seed(0)
    """
    pyro.set_rng_seed(check_int(seed, "seed", low=0))


def _cuda_devices() -> list[int]:
    # only devices torch has already initialised: forking the others would initialise them
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return []
    return list(range(torch.cuda.device_count()))


@contextlib.contextmanager
def forked() -> Iterator[None]:
    """Run the block on the caller's random states, then put them back as they were on entry
    (Python's :mod:`random`, NumPy's global generator, torch's CPU and initialised CUDA
    generators): whatever the block draws or reseeds stays inside it."""
    python_state: Any = random.getstate()
    numpy_state: Any = np.random.get_state()  # noqa: NPY002 (the caller's global stream)
    with torch.random.fork_rng(devices=_cuda_devices()):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)  # noqa: NPY002


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with Python, NumPy, torch and Pyro seeded by ``seed``, then restore.

    On exit (also by an exception) the caller's states of :mod:`random`, NumPy's global
    generator, torch's CPU generator and every initialised CUDA generator are put back, so
    a seeded call leaves the caller's random streams exactly where they were.
    ``seed=None`` runs the block on the caller's streams unchanged.

    >>> import torch
    >>> before = torch.get_rng_state()
    >>> with seeded(0):
    ...     a = torch.rand(2)
    >>> bool((torch.get_rng_state() == before).all())
    True
    """
    if seed is None:
        yield
        return
    seed = check_int(seed, "seed", low=0)
    with forked():
        pyro.set_rng_seed(seed)
        yield


def generator(seed: int | None, device: torch.device | str | None = None) -> torch.Generator:
    """A torch generator of its own on ``device`` (CPU by default), seeded by ``seed``.

    ``seed=None`` takes a seed from torch's global generator (one draw, as an unseeded
    call should), so repeated unseeded calls differ.

    >>> g = generator(0)
    >>> torch.rand(1, generator=g).item() == torch.rand(1, generator=generator(0)).item()
    True
    """
    g = torch.Generator(device=device if device is not None else "cpu")
    if seed is None:
        g.manual_seed(int(torch.randint(2**62, ())))
    else:
        g.manual_seed(check_int(seed, "seed", low=0))
    return g
