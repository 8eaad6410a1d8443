"""The notes' own code of 2.4.4 beside pyrobn, on the same samples, step by step.

``Mixture``, ``PriorEstimator`` and ``train_loop`` below are transcribed from the chapter
(section 2.4.4, the code of Figuras 17 and 18; also in pyrobn/data/apuntes_redes_bayesianas.txt)
with only whitespace and one lint marker changed. The notes draw their data unseeded with
``generate_data``; both paths here train on pyrobn's seeded samples
``course_mixture(1000, seed=0)`` (the same model: r = 0.8, N(-1, 1), N(3, 2^2)), so every
step can be compared. The notes' code runs with torch's default dtype set to float64 for
the test (its parameter is ``torch.tensor(init_val)``), which is what makes the two paths
agree to rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.optim as optim
from common import assert_close
from scipy.optimize import brentq

from pyrobn import GaussianMixture
from pyrobn.datasets import course_mixture
from pyrobn.datasets.mixture import COURSE_MIXTURE, course_mixture_log_prob
from pyrobn.random import seeded

# ----------------------------------------------------------------- the notes' code
r = 0.8
gaussians = [(-1, 1), (3, 2)]


class Mixture:
    def __init__(self, r: float, gaussians: list[tuple[float, float]]) -> None:
        self.r = r
        self.gaussians = gaussians  # (mu_0, sigma_0), (mu_1, sigma_1).

    def generate_data(self, n_samples: int = 1000) -> torch.Tensor:
        r = torch.full([n_samples], self.r)
        z = torch.bernoulli(r)
        x = torch.empty(n_samples)
        x[z == 0] = torch.normal(*self.gaussians[0], [(z == 0).sum()])
        x[z == 1] = torch.normal(*self.gaussians[1], [(z == 1).sum()])
        return x

    @staticmethod
    def p_x(
        x: torch.Tensor, r: float | torch.Tensor, gaussians: list[tuple[float, float]]
    ) -> torch.Tensor:
        mu = gaussians[0][0], gaussians[1][0]
        var = gaussians[0][1] ** 2, gaussians[1][1] ** 2

        p0 = (2 * torch.pi * var[0]) ** (-1 / 2) * torch.exp(-1 / (2 * var[0]) * (x - mu[0]) ** 2)
        p1 = (2 * torch.pi * var[1]) ** (-1 / 2) * torch.exp(-1 / (2 * var[1]) * (x - mu[1]) ** 2)
        p = (1 - r) * p0 + r * p1
        return p


class PriorEstimator(nn.Module):
    def __init__(self, init_val: float = 0.5) -> None:
        super().__init__()
        self.logit_r = nn.Parameter(torch.tensor(init_val))

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logit_r)


def train_loop(
    model: PriorEstimator, optimizer: optim.Optimizer, x: torch.Tensor, n_epochs: int = 500
) -> tuple[list[float], list[float]]:
    normalized_nlls, r_preds = [], []

    for epoch in range(n_epochs):  # noqa: B007 (the notes' code)
        r_pred = model()
        p_x = Mixture.p_x(x, r_pred, gaussians)
        normalized_nll = -p_x.log().mean()

        optimizer.zero_grad()
        normalized_nll.backward()
        optimizer.step()

        normalized_nlls.append(normalized_nll.item())
        r_preds.append(r_pred.item())

    return normalized_nlls, r_preds


# ------------------------------------------------------------------ the comparison
@pytest.fixture()
def float64_default():
    """The notes' tensors in float64 for the duration of one test."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def pyrobn_path(x: torch.Tensor, theta0: float, lr: float, steps: int) -> tuple[list, list, list]:
    """pyrobn's train_loop: the mixture with fixed Gaussians, r = sigmoid(theta), plain SGD on
    the normalised NLL through fit_svi. Returns the loss per step, r before each step, and
    theta before each step and after the last."""
    r0 = 1 / (1 + math.exp(-theta0))
    gm = GaussianMixture(2, means=[-1.0, 3.0], scales=[1.0, 2.0], weights=[1 - r0, r0])
    path, thetas = [float(gm.weights[1])], [float(gm.weight_logits[0].detach())]

    def record(step: int, loss: float) -> None:
        path.append(float(gm.weights[1]))
        thetas.append(float(gm.weight_logits[0].detach()))

    gm.fit(x, steps=steps, lr=lr, optimizer="sgd", init="keep", callback=record)
    return [-v for v in gm.fit_result_.objective], path[:-1], thetas


def exact_maximiser(x: torch.Tensor) -> float:
    """argmax_r of the mean log-likelihood, by a root solve of its derivative (concave)."""
    p = COURSE_MIXTURE
    xs = x.numpy()
    p0 = np.exp(-0.5 * ((xs - p["mu0"]) / p["s0"]) ** 2) / (p["s0"] * math.sqrt(2 * math.pi))
    p1 = np.exp(-0.5 * ((xs - p["mu1"]) / p["s1"]) ** 2) / (p["s1"] * math.sqrt(2 * math.pi))
    return brentq(
        lambda q: np.mean((p1 - p0) / ((1 - q) * p0 + q * p1)), 1e-9, 1 - 1e-9, xtol=1e-15
    )


def test_the_notes_density_and_data_are_pyrobns(float64_default):
    x = course_mixture(1000, seed=0, device="cpu")
    for q in (0.2, 0.8):
        notes = Mixture.p_x(x, q, gaussians).log()
        assert_close(notes, course_mixture_log_prob(x, q), rtol=1e-13, atol=1e-13)
    gm = GaussianMixture(2, means=[-1.0, 3.0], scales=[1.0, 2.0], weights=[0.2, 0.8])
    assert_close(gm.log_prob(x), Mixture.p_x(x, 0.8, gaussians).log(), rtol=1e-13, atol=1e-13)
    # the notes' generate_data draws from the same model: z = 1 with probability r = 0.8
    with seeded(0):
        drawn = Mixture(r, gaussians).generate_data(20_000)
    upper = (drawn > 1.0).double().mean()  # p(x > 1) = 0.2 (1 - Phi(2)) + 0.8 (1 - Phi(-1))
    expected = 0.2 * 0.5 * math.erfc(2 / math.sqrt(2)) + 0.8 * 0.5 * math.erfc(-1 / math.sqrt(2))
    assert abs(float(upper) - expected) < 4 * math.sqrt(expected * (1 - expected) / 20_000)


#: lr -> (largest path difference allowed, largest |r_100 - r*| allowed); see the test
FIGURA_18 = {
    0.1: (1e-12, None),
    1: (1e-12, 1e-4),
    10: (1e-12, 1e-9),
    20: (1e-12, 1e-5),
    30: (1e-4, None),
}


@pytest.mark.parametrize("lr", list(FIGURA_18))
def test_figura_18_paths_agree_step_by_step(lr, float64_default):
    """Figura 18's code (PriorEstimator(init_val=0.1), SGD, 100 epochs) and pyrobn's fit.

    Every step: the notes' train_loop run for one epoch from pyrobn's theta_k gives pyrobn's
    loss_k and theta_(k+1) (measured: equal to 4e-16; allowed 1e-13). The whole paths of
    loss and r: measured 9e-16 at most for lr <= 20; at lr = 30, where r oscillates with
    amplitude 0.26 around r* (the notes' "oscila con alta amplitud"), rounding differences
    grow from step 22 to 3.6e-6 by step 100 (allowed 1e-4). End points: lr = 1, 10, 20 reach
    the exact maximiser to 6e-6, 0 and 6e-7; lr = 0.1 is still crawling (r = 0.748).
    """
    x = course_mixture(1000, seed=0, device="cpu")
    model = PriorEstimator(init_val=0.1)
    optimizer = optim.SGD(model.parameters(), lr=lr)
    normalized_nlls, r_preds = train_loop(model, optimizer, x, n_epochs=100)
    losses, path, thetas = pyrobn_path(x, 0.1, float(lr), 100)
    assert len(losses) == len(normalized_nlls) == len(path) == 100 and len(thetas) == 101
    for k in range(100):
        one = PriorEstimator(init_val=thetas[k])
        (loss_k,), _ = train_loop(one, optim.SGD(one.parameters(), lr=lr), x, n_epochs=1)
        assert abs(loss_k - losses[k]) <= 1e-13 * abs(loss_k), (k, loss_k, losses[k])
        assert abs(float(one.logit_r) - thetas[k + 1]) <= 1e-13 * max(1, abs(thetas[k + 1])), k
    tolerance, end = FIGURA_18[lr]
    assert_close(losses, normalized_nlls, rtol=tolerance, atol=tolerance)
    assert_close(path, r_preds, rtol=tolerance, atol=tolerance)
    if end is not None:
        assert abs(r_preds[-1] - exact_maximiser(x)) < end
    elif lr == 30:
        assert max(r_preds[-20:]) - min(r_preds[-20:]) > 0.15
    else:
        assert r_preds[0] < r_preds[-1] < 0.78  # lr = 0.1: still on its way up


def test_the_notes_default_run_and_the_readme_snippet(float64_default):
    """PriorEstimator() starts at logit 0.5, r0 = sigmoid(0.5) = 0.6225 (the README snippet
    starts there too); SGD at lr = 1 for 500 epochs ends at the exact maximiser of the mean
    log-likelihood on the samples: 0.8108 on pyrobn's (the notes' 0.7847 came from an
    unseeded draw of other samples; tutorial 03 shows the spread)."""
    x = course_mixture(1000, seed=0, device="cpu")
    model = PriorEstimator()
    assert float(model()) == pytest.approx(1 / (1 + math.exp(-0.5))) == pytest.approx(0.6225, 1e-4)
    train_loop(model, optim.SGD(model.parameters(), lr=1), x)
    _, path, _ = pyrobn_path(x, 0.5, 1.0, 500)
    assert path[0] == pytest.approx(0.6225, abs=1e-4)
    r_star = exact_maximiser(x)
    assert float(model()) == pytest.approx(r_star, abs=1e-12)
    assert round(r_star, 4) == 0.8108
    # the README's snippet, as printed there
    r0 = 1 / (1 + math.exp(-0.5))
    gm = GaussianMixture(
        2, learn=("weights",), means=[-1.0, 3.0], scales=[1.0, 2.0], weights=[1 - r0, r0]
    )
    gm.fit(x, steps=500, lr=1.0, optimizer="sgd", init="keep")
    assert float(gm.weights[1]) == pytest.approx(r_star, abs=1e-12)
