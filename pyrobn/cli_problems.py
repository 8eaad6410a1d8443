"""The problems ``pyrobn compare regression | mixture`` runs (also tutorial 12's (a), (b)).

This module serves the command line; it is not part of the modelling API. Each builder
returns a :class:`ComparisonProblem`: the model, its data, the guides to compare and the
exact posterior to compare them with.

``regression``: :func:`correlated_regression`, Bayesian linear regression whose first two
features correlate at 0.95 (exact Gaussian posterior, notes 2.3 and 2.4.1.3).
``mixture``: :func:`mixture_weight`, the notes' mixture weight r (2.4.4, eq. 50) with a
Beta(2, 2) prior and z enumerated (exact posterior by quadrature on a grid).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoLowRankMultivariateNormal

from pyrobn.datasets import course_mixture
from pyrobn.device import device as default_device
from pyrobn.infer.compare import GridDensity
from pyrobn.models.regression import BayesianLinearRegression
from pyrobn.validation import check_allocation, check_int

#: the notes' fixed components (2.4.4): N(-1, 1) and N(3, 2^2)
COMPONENT_LOCS = (-1.0, 3.0)
COMPONENT_SCALES = (1.0, 2.0)


@dataclass
class ComparisonProblem:
    """What :func:`pyrobn.infer.compare_guides` needs, and how to read the answer."""

    name: str
    model: Callable[..., Any]
    data: tuple[torch.Tensor, ...]
    guides: dict[str, Any]
    reference: dict[str, Any] | None = None
    num_particles: int = 8
    extra: dict[str, Any] = field(default_factory=dict)


def correlated_regression(
    n: int = 100, seed: int = 0, device: torch.device | str | None = None
) -> ComparisonProblem:
    """theta ~ N(0, I), y = theta^T x + N(0, 0.5^2), features 0 and 1 correlated at 0.95."""
    n = check_int(n, "n", low=2)
    check_allocation(4 * n, torch.float64, f"a regression data set of {n} rows")
    target = torch.device(device) if device is not None else default_device()
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    X[:, 1] = 0.95 * X[:, 0] + 0.31 * X[:, 1]
    y = X @ torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    y = y + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    X, y = X.to(target), y.to(target)
    blr = BayesianLinearRegression(3, noise_scale=0.5, lam=1.0).to(target)
    guides = {
        "delta": "delta",
        "normal": "normal",
        "mvn": "mvn",
        "lowrank(1)": functools.partial(AutoLowRankMultivariateNormal, rank=1),
        "laplace": "laplace",
        "hand-written": blr.guide,
        "nuts": "nuts",
    }
    return ComparisonProblem(
        "regression",
        blr,
        (X, y),
        guides,
        reference={"theta": blr.posterior(X, y)},
        num_particles=16,
        extra={"log_evidence": float(blr.log_evidence(X, y))},
    )


def _components(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.new_tensor(COMPONENT_LOCS), x.new_tensor(COMPONENT_SCALES)


def mixture_weight(
    n: int = 500, seed: int = 0, device: torch.device | str | None = None, grid_size: int = 4001
) -> ComparisonProblem:
    """p(x) = (1 - r) N(-1, 1) + r N(3, 2^2), r ~ Beta(2, 2), z ~ Bernoulli(r) enumerated.

    The exact posterior p(r | x) ∝ Beta(r; 2, 2) Π_n [(1 - r) N_0(x_n) + r N_1(x_n)]
    (eq. 50) is evaluated on a grid of ``grid_size`` points.
    """
    n = check_int(n, "n", low=2)
    grid_size = check_int(grid_size, "grid_size", low=3)
    check_allocation(2 * n * grid_size, torch.float64, f"the exact posterior of r on {n} points")
    x = course_mixture(n, seed=seed, device=device)
    locs, scales = _components(x)

    def weight_model(x: torch.Tensor) -> None:
        r = pyro.sample("r", dist.Beta(x.new_tensor(2.0), x.new_tensor(2.0)))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(r)).long()
            pyro.sample("x", dist.Normal(locs[z], scales[z]), obs=x)

    grid = torch.linspace(1e-4, 1 - 1e-4, grid_size, dtype=torch.float64, device=x.device)
    log_components = dist.Normal(locs, scales).log_prob(x[:, None])
    log_lik = torch.logaddexp(
        (1 - grid).log()[:, None] + log_components[:, 0],
        grid.log()[:, None] + log_components[:, 1],
    ).sum(-1)
    exact = GridDensity(grid, dist.Beta(2.0, 2.0).log_prob(grid.cpu()).to(grid) + log_lik)
    guides = {"delta": "delta", "normal": "normal", "laplace": "laplace", "nuts": "nuts"}
    return ComparisonProblem(
        "mixture weight r", weight_model, (x,), guides, {"r": exact}, 8, {"grid": grid}
    )


#: the problems of ``pyrobn compare``, by the name the command takes
PROBLEMS: dict[str, Callable[..., ComparisonProblem]] = {
    "regression": correlated_regression,
    "mixture": mixture_weight,
}

__all__ = [
    "COMPONENT_LOCS",
    "COMPONENT_SCALES",
    "PROBLEMS",
    "ComparisonProblem",
    "correlated_regression",
    "mixture_weight",
]
