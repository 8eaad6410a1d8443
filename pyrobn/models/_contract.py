"""Private stand-ins for the estimator contract (CONTRACT.md) until it lands on main.

``FitResult``, ``seeded`` and ``generator`` have the contract's names and meaning; once
``pyrobn.infer.result`` and the new ``pyrobn.random`` exist, the paradigm modules import
them from there and this file goes.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from pyrobn.infer.svi import History


@dataclass
class FitResult:
    """What a fit did (contract: one type for every model). Objective: higher is better."""

    method: str
    objective: list[float]
    objective_name: str = "log_likelihood"
    restarts: list[list[float]] = field(default_factory=list)
    best_restart: int = 0
    converged: bool = True
    wall_time: float = 0.0
    history: History | None = None

    @property
    def n_iter(self) -> int:
        return len(self.objective)

    @property
    def final_objective(self) -> float:
        return self.objective[-1] if self.objective else math.nan

    @classmethod
    def from_history(
        cls,
        history: History,
        method: str = "svi",
        objective_name: str = "elbo",
        wall_time: float | None = None,
    ) -> FitResult:
        objective = [-loss for loss in history.losses]
        return cls(
            method,
            objective,
            objective_name,
            [objective],
            0,
            True,
            history.wall_time if wall_time is None else wall_time,
            history,
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["history"] = None if self.history is None else self.history.as_dict()
        return out


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Seed torch (and Pyro's other streams) inside; the caller's RNG states are restored."""
    if seed is None:
        yield
        return
    import random

    import numpy as np
    import pyro

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    with torch.random.fork_rng(devices=devices):
        try:
            pyro.set_rng_seed(int(seed))
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


def generator(seed: int | None, device: torch.device | str | None = None) -> torch.Generator:
    """A local generator on ``device``; seed None draws its seed from the global torch RNG."""
    device = torch.device(device if device is not None else "cpu")
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    return torch.Generator(device=device).manual_seed(int(seed))


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """Yield a one-element list that holds the elapsed seconds on exit."""
    out = [0.0]
    start = time.perf_counter()
    try:
        yield out
    finally:
        out[0] = time.perf_counter() - start


__all__ = ["FitResult", "generator", "seeded", "timed"]
