"""GaussianMixture: the notes' learned prior weight (2.4.4), MAP, the full mixture vs sklearn."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from pyrobn import GaussianMixture
from pyrobn.datasets import course_mixture, gaussian_blobs
from pyrobn.datasets.mixture import COURSE_MIXTURE, course_mixture_log_prob
from pyrobn.errors import (
    ConfigurationError,
    InvalidDistributionError,
    NonFiniteError,
    ShapeError,
)
from pyrobn.models.mixture import weight_mle_two_components

P = COURSE_MIXTURE


def notes_mixture(r0: float = 0.5, **kwargs) -> GaussianMixture:
    """The notes' eq. 50 model: fixed N(-1, 1), N(3, 2^2), learned r = p(z = 1)."""
    return GaussianMixture(
        2,
        learn=("weights",),
        means=[P["mu0"], P["mu1"]],
        scales=[P["s0"], P["s1"]],
        weights=[1 - r0, r0],
        **kwargs,
    )


def exact_r(x: np.ndarray) -> float:
    """argmax_r mean log[(1 - r) p0 + r p1], by brentq on the derivative."""
    p0, p1 = norm.pdf(x, P["mu0"], P["s0"]), norm.pdf(x, P["mu1"], P["s1"])
    return brentq(
        lambda r: np.mean((p1 - p0) / ((1 - r) * p0 + r * p1)), 1e-9, 1 - 1e-9, xtol=1e-14
    )


def test_course_mixture_data_follow_the_notes():
    x, z = course_mixture(20_000, seed=1, return_labels=True)
    frac = float(z.double().mean())
    assert abs(frac - P["r"]) < 4 * math.sqrt(0.8 * 0.2 / 20_000)  # z = 1 w.p. r
    for k, (mu, s) in enumerate([(P["mu0"], P["s0"]), (P["mu1"], P["s1"])]):
        xk = x[z == k]
        assert abs(float(xk.mean()) - mu) < 4 * s / math.sqrt(len(xk))
    gm = notes_mixture(0.8)
    assert torch.allclose(gm.log_prob(x), course_mixture_log_prob(x, 0.8), atol=1e-12)


def test_learned_r_equals_exact_maximiser(device):
    """The notes' train_loop (SGD on the normalised NLL, theta_0 = 0.1) reaches r* to 1e-3."""
    x = course_mixture(1000, seed=0, device=device)
    r_star = exact_r(x.cpu().numpy())
    gm = notes_mixture(1 / (1 + math.exp(-0.1))).to(device)
    history = gm.fit(x, steps=80, lr=10.0, optimizer="sgd", init="keep")
    r = float(gm.weights[1].detach())
    assert abs(r - r_star) < 1e-3
    assert abs(r_star - 0.8) < 0.05
    # the loss is the normalised NLL of eq. 45, and it went down
    assert history.losses[0] == pytest.approx(
        -float(course_mixture_log_prob(x, 1 / (1 + math.exp(-0.1))).mean())
    )
    assert history.losses[-1] < history.losses[0]
    # the library's root solve agrees with scipy's on the same samples
    lp = gm.joint_log_probs(x) - gm.weights.log()
    assert weight_mle_two_components(x, lp[:, 0], lp[:, 1]) == pytest.approx(r_star, abs=1e-10)


def test_map_with_dirichlet_prior_through_autodelta():
    """MAP weights = the fixed point w_k = (N_k + a_k - 1)/(N + sum a - K); SVI and EM agree."""
    x = course_mixture(300, seed=2)
    alpha = [6.0, 2.0]
    svi = notes_mixture(prior=alpha)
    svi.fit(x, steps=150, lr=0.1, init="keep")
    assert "AutoDelta" in str(type(svi.map_guide).__name__)
    em = notes_mixture(prior=alpha)
    em.fit(x, method="em", steps=5000, tol=1e-15, init="keep")
    # brute force: maximise log-lik + log Dir on a fine grid of r, then refine
    xs = x.numpy()
    p0, p1 = norm.pdf(xs, P["mu0"], P["s0"]), norm.pdf(xs, P["mu1"], P["s1"])

    def slope(r):
        return (
            np.sum((p1 - p0) / ((1 - r) * p0 + r * p1))
            - (alpha[0] - 1) / (1 - r)
            + (alpha[1] - 1) / r
        )

    r_map = brentq(slope, 1e-6, 1 - 1e-6, xtol=1e-14)
    assert float(em.weights[1].detach()) == pytest.approx(r_map, abs=1e-6)
    assert float(svi.weights[1].detach()) == pytest.approx(r_map, abs=1e-3)
    # the prior pulls r towards its own mode (a_1 - 1)/(sum a - 2) = 1/6 relative to the MLE
    assert r_map < exact_r(xs)


def test_responsibilities_are_bayes_rule():
    gm = notes_mixture(0.8)
    x = torch.tensor([-3.0, 0.0, 1.0, 5.0], dtype=torch.float64)
    resp = gm.responsibilities(x)
    p0 = 0.2 * norm.pdf(x.numpy(), -1, 1)
    p1 = 0.8 * norm.pdf(x.numpy(), 3, 2)
    np.testing.assert_allclose(resp[:, 1].numpy(), p1 / (p0 + p1), atol=1e-12)
    assert torch.allclose(resp.sum(-1), torch.ones(4, dtype=torch.float64))


def test_ancestral_sampling_matches_the_model():
    gm = GaussianMixture(
        3,
        dim=2,
        learn="all",
        weights=[0.2, 0.5, 0.3],
        means=[[0, 0], [3, 3], [-3, 2]],
        covariances=[[[1, 0.5], [0.5, 1]], [[0.5, 0], [0, 2]], [[1, 0], [0, 1]]],
    )
    n = 30_000
    x, z = gm.sample(n, seed=0, return_labels=True)
    counts = torch.bincount(z, minlength=3).double() / n
    w = gm.weights.detach()
    assert torch.all((counts - w).abs() < 4 * (w * (1 - w) / n).sqrt())
    for k in range(3):
        xk = x[z == k]
        se = (gm.covariances[k].diagonal().detach() / len(xk)).sqrt()
        assert torch.all((xk.mean(0) - gm.means[k].detach()).abs() < 4 * se)
        assert torch.allclose(torch.cov(xk.T), gm.covariances[k].detach(), atol=0.1)
    assert torch.equal(gm.sample(5, seed=3), gm.sample(5, seed=3))


def test_log_prob_against_scipy():
    from scipy.stats import multivariate_normal

    gm = GaussianMixture(
        2,
        dim=2,
        learn="all",
        weights=[0.3, 0.7],
        means=[[0, 1], [2, -1]],
        covariances=[[[2, 0.3], [0.3, 1]], [[1, -0.4], [-0.4, 0.5]]],
    )
    x = np.random.default_rng(0).normal(size=(50, 2))
    ref = np.log(
        0.3 * multivariate_normal([0, 1], [[2, 0.3], [0.3, 1]]).pdf(x)
        + 0.7 * multivariate_normal([2, -1], [[1, -0.4], [-0.4, 0.5]]).pdf(x)
    )
    np.testing.assert_allclose(gm.log_prob(x).numpy(), ref, atol=1e-12)
    n_params = 1 + 4 + 6
    assert gm.bic(x) == pytest.approx(-2 * ref.sum() + n_params * math.log(50))


def test_full_mixture_held_out_within_one_percent_of_sklearn():
    train, test = gaussian_blobs(1500, 0), gaussian_blobs(1500, 1)
    sk = SkGaussianMixture(3, tol=1e-6, max_iter=1000, n_init=3, random_state=0).fit(train)
    gm = GaussianMixture(3, dim=2, learn="all")
    gm.fit(train, method="em", steps=1000, tol=1e-9, restarts=3, seed=0)
    ours, theirs = gm.score(test), sk.score(test)
    assert abs(ours - theirs) < 0.01 * abs(theirs)
    assert gm.score(train) >= sk.score(train) - 1e-4


def test_full_mixture_svi_reaches_the_em_optimum():
    """The SVI path (TraceEnum_ELBO, z enumerated) and the EM path find one maximum.

    This sample sits near a saddle: both paths plateau before escaping (EM ~180 iterations,
    Adam ~250 steps).
    """
    train = course_mixture(300, seed=5)
    em = GaussianMixture(2, learn="all")
    em.fit(train, method="em", steps=2000, tol=1e-12, reg_covar=0.0)
    svi = GaussianMixture(2, learn="all")
    svi.fit(train, method="svi", steps=350, lr=0.2)
    assert svi.score(train) == pytest.approx(em.score(train), abs=1e-4)


def test_restarts_keep_the_best():
    train = gaussian_blobs(400, 3)
    scores = []
    for seed in range(3):
        g = GaussianMixture(3, dim=2, learn="all")
        g.fit(train, method="em", steps=300, tol=1e-7, seed=seed)
        scores.append(g.score(train))
    best = GaussianMixture(3, dim=2, learn="all")
    best.fit(train, method="em", steps=300, tol=1e-7, restarts=3, seed=0)
    assert best.score(train) == pytest.approx(max(scores), abs=1e-10)


def test_bic_prefers_the_true_number_of_components():
    train = gaussian_blobs(800, 4)
    bics = []
    for k in (1, 2, 3, 4):
        g = GaussianMixture(k, dim=2, learn="all")
        g.fit(train, method="em", steps=300, tol=1e-6, restarts=2)
        bics.append(g.bic(train))
    assert int(np.argmin(bics)) + 1 == 3


def test_save_load_round_trip(tmp_path):
    gm = notes_mixture(0.3)
    gm.fit(course_mixture(200, seed=0), steps=20, lr=1.0, optimizer="sgd", init="keep")
    gm.save(tmp_path / "gm.pt")
    pyro.clear_param_store()
    back = GaussianMixture.load(tmp_path / "gm.pt")
    x = torch.linspace(-5, 5, 11, dtype=torch.float64)
    assert torch.equal(back.log_prob(x), gm.log_prob(x))


def test_bad_input():
    with pytest.raises(InvalidDistributionError, match="sums to"):
        GaussianMixture(2, weights=[0.5, 0.6])
    with pytest.raises(InvalidDistributionError, match="negative"):
        GaussianMixture(2, weights=[1.5, -0.5])
    with pytest.raises(ConfigurationError, match="scales"):
        GaussianMixture(2, scales=[1.0, 0.0])
    with pytest.raises(ConfigurationError, match="not positive definite"):
        GaussianMixture(2, dim=2, covariances=np.array([np.eye(2), [[1, 2], [2, 1]]]))
    with pytest.raises(ShapeError, match=r"means must have shape \(2, 2\)"):
        GaussianMixture(2, dim=2, means=[[0, 0, 0], [1, 1, 1]])
    with pytest.raises(ConfigurationError, match="learn"):
        GaussianMixture(2, learn=("weights", "colour"))
    with pytest.raises(ConfigurationError, match="Dirichlet"):
        GaussianMixture(2, prior=[1.0, -1.0])
    with pytest.raises(ConfigurationError, match="n_components"):
        GaussianMixture(0)
    gm = GaussianMixture(2, dim=2, learn="all")
    with pytest.raises(ShapeError, match=r"\(N, 2\)"):
        gm.log_prob(np.zeros((3, 3)))
    with pytest.raises(NonFiniteError, match=r"index \(1, 0\)"):
        gm.fit(np.array([[0.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(ConfigurationError, match="method"):
        gm.fit(np.zeros((4, 2)), method="gibbs")
