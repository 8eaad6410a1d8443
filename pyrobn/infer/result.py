"""What a fit did: :class:`FitResult`, one record for every model and every method.

Every model's ``fit`` returns the model itself and leaves this record in ``fit_result_``:
the method, the objective per iteration (always *higher is better*: a log-likelihood, a
log-posterior or an ELBO), every restart's trace, the best restart, whether the stated
convergence criterion was met, and the wall time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyrobn.infer.svi import History

__all__ = ["FitResult"]


@dataclass
class FitResult:
    """The record of one ``fit``.

    Attributes:
        method: how the model was fitted: ``"em"``, ``"svi"``, ``"map"``,
            ``"closed_form"``, ``"counts"``, ...
        objective: the best restart's objective per iteration, higher is better.
        objective_name: what ``objective`` holds: ``"log_likelihood"``, ``"log_posterior"``,
            ``"elbo"`` (an estimate per SVI step) or ``"log_joint"`` (MAP).
        restarts: every restart's trace (the best one included).
        best_restart: the index of the restart kept.
        converged: whether the stated criterion was met (always True for closed forms).
        wall_time: seconds.
        history: the :class:`pyrobn.infer.History` of ``fit_svi`` for SVI and MAP fits.

    >>> r = FitResult("em", [-10.0, -9.0, -8.9])
    >>> r.final_objective, r.n_iter
    (-8.9, 3)
    """

    method: str
    objective: list[float] = field(default_factory=list)
    objective_name: str = "log_likelihood"
    restarts: list[list[float]] = field(default_factory=list)
    best_restart: int = 0
    converged: bool = True
    wall_time: float = 0.0
    history: History | None = None

    def __post_init__(self) -> None:
        self.objective = [float(v) for v in self.objective]
        if not self.restarts:
            self.restarts = [list(self.objective)]

    @property
    def n_iter(self) -> int:
        """Iterations (EM) or steps (SVI) of the best restart."""
        return len(self.objective)

    @property
    def final_objective(self) -> float:
        """The last value of the objective (NaN before any iteration)."""
        return self.objective[-1] if self.objective else math.nan

    @classmethod
    def from_history(
        cls,
        history: History,
        method: str = "svi",
        objective_name: str = "elbo",
        converged: bool = True,
    ) -> FitResult:
        """The record of a :func:`pyrobn.infer.fit_svi` run: objective = −loss per step."""
        return cls(
            method=method,
            objective=[-loss for loss in history.losses],
            objective_name=objective_name,
            converged=converged,
            wall_time=history.wall_time,
            history=history,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready), without the history object."""
        return {
            "method": self.method,
            "objective": list(self.objective),
            "objective_name": self.objective_name,
            "restarts": [list(r) for r in self.restarts],
            "best_restart": self.best_restart,
            "converged": self.converged,
            "wall_time": self.wall_time,
        }
