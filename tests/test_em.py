"""The one EM driver: convergence rule, restarts, local seeding, divergence."""

from __future__ import annotations

import math

import pytest
import torch

from pyrobn.errors import ConfigurationError, TrainingDiverged
from pyrobn.infer.em import converged, run_em


def test_the_rule_is_relative_and_floored():
    assert converged(-1e6, -1e6 + 0.5, 1e-6)  # gain 0.5 below 1e-6 * 1e6 = 1
    assert not converged(-1e6, -1e6 + 2.0, 1e-6)
    assert converged(0.0, 5e-7, 1e-6)  # near zero the floor of 1 applies
    assert not converged(0.0, 2e-6, 1e-6)
    assert converged(-10.0, -11.0, 1e-6)  # a decrease stops EM (and is visible in the trace)


def _fixed_point_problem(target: float):
    """EM-like map s -> (s + target) / 2 with objective -(s - target)^2 (monotone)."""

    def init(restart: int, gen: torch.Generator) -> float:
        return float(torch.rand((), generator=gen)) * 10 * (restart + 1)

    def step(s: float) -> tuple[float, float]:
        return (s + target) / 2, -((s - target) ** 2)

    return init, step


def test_converges_to_the_fixed_point_and_records_every_restart():
    init, step = _fixed_point_problem(3.0)
    state, result = run_em(init, step, max_iter=200, tol=1e-12, restarts=3, seed=0)
    assert state == pytest.approx(3.0, abs=1e-5)
    assert result.converged and result.method == "em"
    assert len(result.restarts) == 3
    assert result.objective == result.restarts[result.best_restart]
    assert all(b >= a for a, b in zip(result.objective, result.objective[1:]))
    assert result.final_objective == max(r[-1] for r in result.restarts)


def test_the_seed_is_local_and_repeats():
    init, step = _fixed_point_problem(1.0)
    before = torch.get_rng_state().clone()
    a = run_em(init, step, max_iter=3, restarts=2, seed=5)[1].restarts
    b = run_em(init, step, max_iter=3, restarts=2, seed=5)[1].restarts
    assert a == b
    assert torch.equal(before, torch.get_rng_state())


def test_max_iter_reached_is_not_converged_and_final_is_appended():
    init, step = _fixed_point_problem(1.0)
    _, result = run_em(init, step, max_iter=2, tol=0.0, final=lambda s: -((s - 1.0) ** 2))
    assert not result.converged and result.n_iter == 3


def test_a_non_finite_objective_raises_training_diverged():
    with pytest.raises(TrainingDiverged, match="restart 0, iteration 1"):
        run_em(lambda r, g: 0.0, lambda s: (s + 1, -math.inf if s >= 1 else -1.0), max_iter=5)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_iter": 0}, {"restarts": 0}, {"tol": -1.0}, {"tol": math.nan}, {"max_iter": 2.5}],
)
def test_bad_settings_are_named(kwargs):
    init, step = _fixed_point_problem(1.0)
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        run_em(init, step, **kwargs)
