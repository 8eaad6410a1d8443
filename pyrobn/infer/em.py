"""The one EM driver of the package: restarts, one convergence rule, a :class:`FitResult`.

Expectation-maximisation raises the log-likelihood (or, with a prior, the log-posterior)
at every iteration: the E-step computes the expected complete-data statistics under
p(z | x, θ_t), the M-step maximises their expected log-likelihood (notes 2.4, eq. 29-31
for the closed-form M-steps of tables). Every model with an EM fit (the discrete network,
the HMM, Naive Bayes, the Gaussian mixture) gives this driver two functions and gets the
same restarts, convergence rule, divergence guard and record.

Convergence: stop when ``objective[t] - objective[t-1] < tol * max(1, |objective[t]|)``
(a relative change, floored at an absolute one near zero).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from pyrobn.errors import ConfigurationError, TrainingDiverged
from pyrobn.infer.result import FitResult
from pyrobn.random import generator
from pyrobn.validation import check_int

__all__ = ["converged", "run_em"]

State = TypeVar("State")


def converged(previous: float, current: float, tol: float) -> bool:
    """The package's one EM stopping rule: the gain is below ``tol`` relative to the level.

    >>> converged(-100.0, -100.0 + 1e-9, 1e-6), converged(-100.0, -90.0, 1e-6)
    (True, False)
    """
    return current - previous < tol * max(1.0, abs(current))


def _check_tol(tol: float) -> float:
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not math.isfinite(tol):
        raise ConfigurationError(f"tol must be a finite number >= 0, got {tol!r}")
    if tol < 0:
        raise ConfigurationError(f"tol must be >= 0, got {tol}")
    return float(tol)


def run_em(
    init: Callable[[int, torch.Generator], State],
    step: Callable[[State], tuple[State, float]],
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    restarts: int = 1,
    seed: int | None = None,
    objective_name: str = "log_likelihood",
    final: Callable[[State], float] | None = None,
) -> tuple[State, FitResult]:
    """Run EM from ``restarts`` starting points and keep the best.

    Args:
        init: ``init(restart, generator) -> state``: the starting parameters of a restart
            (restart 0 may keep the model's current ones); ``generator`` is local, seeded
            from ``seed``, so no restart touches the global random streams.
        step: ``step(state) -> (new_state, objective_at_state)``: one E-step at ``state``
            (returning its objective) followed by the M-step.
        max_iter, tol: at most ``max_iter`` iterations; the rule of :func:`converged`.
        restarts: how many starting points.
        seed: the seed of the local generator (None: drawn from torch's global generator).
        objective_name: what the objective is (recorded in the result).
        final: ``final(state) -> objective`` of the returned state (one more E-step),
            appended to each trace; without it the last iteration's value stands.

    Returns:
        the best restart's final state and a :class:`FitResult`.

    Raises:
        TrainingDiverged: a non-finite objective (naming the restart and the iteration).

    >>> state, result = run_em(lambda r, g: 0.0, lambda s: (s / 2 + 1, -(s - 2) ** 2), tol=1e-9)
    >>> round(state, 4), result.converged
    (2.0, True)
    """
    max_iter = check_int(max_iter, "max_iter")
    restarts = check_int(restarts, "restarts")
    tol = _check_tol(tol)
    gen = generator(seed)
    t0 = time.perf_counter()
    traces: list[list[float]] = []
    flags: list[bool] = []
    best_state: State | None = None
    best_index = -1
    best_value = -math.inf
    for restart in range(restarts):
        state = init(restart, gen)
        trace: list[float] = []
        done = False
        for iteration in range(max_iter):
            new_state, value = step(state)
            value = float(value)
            if not math.isfinite(value):
                raise TrainingDiverged(
                    iteration,
                    value,
                    f"EM diverged: restart {restart}, iteration {iteration} has objective "
                    f"{value}; the model keeps its parameters from before the fit",
                )
            trace.append(value)
            state = new_state
            if len(trace) > 1 and converged(trace[-2], trace[-1], tol):
                done = True
                break
        if final is not None:
            value = float(final(state))
            if not math.isfinite(value):
                raise TrainingDiverged(
                    len(trace), value, f"EM diverged: restart {restart} ends at objective {value}"
                )
            trace.append(value)
        traces.append(trace)
        flags.append(done)
        score = trace[-1] if trace else -math.inf
        if best_state is None or score > best_value:
            best_state, best_index, best_value = state, restart, score
    assert best_state is not None
    result = FitResult(
        method="em",
        objective=traces[best_index],
        objective_name=objective_name,
        restarts=traces,
        best_restart=best_index,
        converged=flags[best_index],
        wall_time=time.perf_counter() - t0,
    )
    return best_state, result
