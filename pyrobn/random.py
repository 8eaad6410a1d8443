"""Seeding: one call seeds Python, NumPy, torch and Pyro."""

from __future__ import annotations

import pyro


def set_seed(seed: int) -> None:
    """Seed :mod:`random`, NumPy, torch (CPU and CUDA) and Pyro with ``seed``."""
    pyro.set_rng_seed(int(seed))
