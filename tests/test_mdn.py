"""MixtureDensityNetwork on the inverse-sine problem (lecture: MDN), the full-covariance
option (Sigma_k(x) through a Cholesky factor), the condition-first API, the contract.

Margins of the statistical tests, measured with this file's training recipe (600 points,
hidden (32, 32), 500 steps, lr 1e-2 decaying to 1e-3; network and fit seeds equal) for seeds
0-4 under ``torch.set_num_threads(1)`` and seeds 0-2 under ``(2)``:

* held-out NLL margin over the best single-Gaussian regressor: 0.837-0.937 nats per point
  (1 thread), 0.847-0.938 (2 threads); the test requires 0.5;
* fraction of 4000 draws within 0.06 of each branch at x = 0.5: 0.213-0.303 (1 thread),
  0.217-0.300 (2 threads); the test requires 0.1. The exact conditional gives 0.222, 0.284,
  0.222; every fit is within 0.030 of it, the test allows 0.08.

Before the learning-rate decay (constant lr 1e-2) the same fits spread over 0.199-0.322 and
one CI machine found 0.07 on the middle branch after a change of thread count.
"""

from __future__ import annotations

import functools
import math
import random
import warnings

import numpy as np
import pyro
import pytest
import torch
from common import assert_close
from scipy.optimize import brentq
from scipy.stats import norm

from pyrobn import MixtureDensityNetwork
from pyrobn.datasets import inverse_sine
from pyrobn.errors import CheckpointError, ConfigurationError, NonFiniteError, ShapeError
from pyrobn.random import forked

# one worker trains the shared models (pytest-xdist --dist loadgroup)
pytestmark = pytest.mark.xdist_group(name="mdn")


def polynomial_gaussian_nll(x_train, t_train, x_test, t_test, degree: int = 5) -> float:
    """Held-out mean NLL of the homoscedastic polynomial Gaussian regressor (1-D x and t).

    t | x ~ N(poly(x), s^2), the polynomial and s^2 fitted by maximum likelihood on the
    training data (least squares; s^2 the mean squared residual): the classic
    single-Gaussian baseline an MDN is compared with.
    """
    xs, ts = (np.asarray(torch.as_tensor(a).cpu()).ravel() for a in (x_train, t_train))
    xv, tv = (np.asarray(torch.as_tensor(a).cpu()).ravel() for a in (x_test, t_test))
    poly = np.polynomial.Polynomial.fit(xs, ts, degree)  # scaled domain: well conditioned
    var = float(np.mean((ts - poly(xs)) ** 2))
    resid = tv - poly(xv)
    return float(np.mean(0.5 * np.log(2 * math.pi * var) + 0.5 * resid**2 / var))


@pytest.fixture(scope="module")
def trained():
    return _train_models()


@functools.lru_cache(maxsize=1)
def _train_models():
    """A 3-component MDN and a 1-component one (the best single-Gaussian regressor)."""
    x, t = inverse_sine(600, seed=0, device="cpu")
    models = {}
    for k in (3, 1):
        m = MixtureDensityNetwork(1, 1, k, hidden=(32, 32), seed=0)
        assert m.fit(x, t, steps=500, lr=1e-2) is m
        models[k] = m
    return models


BRANCHES = [
    brentq(lambda t: t + 0.3 * math.sin(2 * math.pi * t) - 0.5, a, b)
    for a, b in ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0))
]


def exact_branch_fractions(x: float = 0.5, noise: float = 0.05) -> list[float]:
    """p(|t - root| < 0.06 | x) under the data's own model, t ~ U(0, 1),
    x | t ~ N(t + 0.3 sin(2 pi t), noise^2): a quadrature of Bayes' rule over t."""
    grid = np.linspace(0, 1, 200_001)
    w = norm.pdf(x, grid + 0.3 * np.sin(2 * np.pi * grid), noise)
    w /= w.sum()
    return [float(w[np.abs(grid - r) < 0.06].sum()) for r in BRANCHES]


def test_mdn_beats_the_single_gaussian_regressor(trained):
    x, t = inverse_sine(600, seed=0, device="cpu")
    xv, tv = inverse_sine(1000, seed=1, device="cpu")
    nll3 = trained[3].nll(x=xv, t=tv)
    # the best single-Gaussian regressor among: the K = 1 network (heteroscedastic) and
    # homoscedastic polynomial fits of degree 1 to 7
    baseline = min(
        [trained[1].nll(x=xv, t=tv)]
        + [polynomial_gaussian_nll(x, t, xv, tv, d) for d in range(1, 8)]
    )
    # measured margin 0.84-0.94 nats per point over seeds and thread counts; require 0.5
    assert nll3 < baseline - 0.5, (nll3, baseline)


def test_samples_cover_all_three_branches(trained):
    """At x = 0.5, t + 0.3 sin(2 pi t) = 0.5 has three roots; samples reach each one,
    in about the proportions of the exact conditional p(t | x = 0.5)."""
    draws = trained[3].sample(torch.full((1, 1), 0.5), n_samples=4000, seed=0).ravel().numpy()
    exact = exact_branch_fractions()
    for root, expected in zip(BRANCHES, exact):
        frac = np.mean(np.abs(draws - root) < 0.06)
        assert frac > 0.1, (root, frac)  # measured 0.213 at least
        assert abs(frac - expected) < 0.08, (root, frac, expected)  # measured 0.03 at most
    # the single Gaussian puts most of its mass between the branches
    one = trained[1].sample(torch.full((1, 1), 0.5), n_samples=4000, seed=0).ravel().numpy()
    middle = BRANCHES[1]
    assert np.mean(np.abs(one - middle) < 0.06) < np.mean(np.abs(draws - middle) < 0.06) + 0.2


def test_log_prob_mean_mode_sample_are_consistent(trained):
    m = trained[3]
    x = torch.linspace(0.1, 0.9, 7).unsqueeze(-1)
    pi, mu, sigma = m.mixture_parameters(x)
    t = torch.full((7, 1), 0.4)
    ref = np.log((pi.numpy() * norm.pdf(0.4, mu[..., 0].numpy(), sigma[..., 0].numpy())).sum(-1))
    assert_close(m.log_prob(x=x, t=t), ref, rtol=1e-5, atol=1e-5)
    assert_close(m.mean(x), (pi * mu[..., 0]).sum(-1, keepdim=True), rtol=1e-6, atol=1e-7)
    # mode: no grid point has a higher density than the returned mode
    mode = m.mode(x)
    grid = torch.linspace(-0.5, 1.5, 4001)
    dens = m.log_prob(x=x.repeat_interleave(4001, 0), t=grid.repeat(7).unsqueeze(-1))
    assert torch.all(m.log_prob(x=x, t=mode) >= dens.view(7, 4001).max(-1).values - 1e-4)
    # sample moments against the mixture's mean
    draws = m.sample(x, n_samples=20_000, seed=1)
    assert draws.shape == (20_000, 7, 1)
    se = draws.std(0) / math.sqrt(20_000)
    assert torch.all((draws.mean(0) - m.mean(x)).abs() < 4 * se)
    assert_close(m.covariances(x)[..., 0, 0], sigma[..., 0] ** 2)


def test_model_guide_pair_with_predictive(trained):
    from pyro.infer import Predictive

    m = trained[3]
    x = torch.full((5, 1), 0.5)
    out = Predictive(m.model, guide=m.guide, num_samples=3)(x)
    assert out["t"].shape == (3, 5, 1)


def test_save_load(tmp_path, trained):
    m = trained[3]
    m.save(tmp_path / "mdn.pt")
    back = MixtureDensityNetwork.load(tmp_path / "mdn.pt")
    x, t = inverse_sine(20, seed=3, device="cpu")
    assert torch.equal(back.log_prob(x=x, t=t), m.log_prob(x=x, t=t))
    state = torch.load(tmp_path / "mdn.pt", weights_only=True)
    state["state_dict"]["net.0.weight"][0, 0] = math.nan
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN"):
        MixtureDensityNetwork.load(tmp_path / "nan.pt")


# ------------------------------------------------------------ full covariance
def random_full_mdn(seed: int = 0, k: int = 3) -> MixtureDensityNetwork:
    return MixtureDensityNetwork(2, 2, k, hidden=(8,), covariance="full", seed=seed)


def test_full_covariance_log_prob_is_the_gaussian_mixture_density():
    """Against torch's MultivariateNormal (from Sigma, not L) and a brute-force formula."""
    m = random_full_mdn(seed=1)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    pi, mu, tril = m.mixture_parameters(x)
    sigma = m.covariances(x)
    assert tril.shape == (6, 3, 2, 2) and torch.equal(tril, tril.tril())
    assert bool((tril.diagonal(dim1=-2, dim2=-1) > 0).all())
    assert_close(sigma, tril @ tril.transpose(-1, -2))
    mvn = torch.distributions.MultivariateNormal(mu, covariance_matrix=sigma)
    ref_torch = torch.logsumexp(pi.log() + mvn.log_prob(t.unsqueeze(1)), -1)
    # brute force: log N = -(1/2)[D log 2 pi + log det S + (t - mu)^T S^-1 (t - mu)]
    S = sigma.double().numpy()
    diff = (t.unsqueeze(1) - mu).double().numpy()
    maha = np.einsum("nki,nkij,nkj->nk", diff, np.linalg.inv(S), diff)
    log_n = -0.5 * (2 * math.log(2 * math.pi) + np.log(np.linalg.det(S)) + maha)
    ref_brute = np.log((pi.double().numpy() * np.exp(log_n)).sum(-1))
    got = m.log_prob(x=x, t=t)
    assert_close(got, ref_torch, rtol=1e-5, atol=1e-5)
    assert_close(got, ref_brute, rtol=1e-5, atol=1e-5)
    # the density integrates to 1 over t (a 2-D quadrature at one x)
    axis = torch.linspace(-8, 8, 401)
    tt = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    dens = m.log_prob(x=x[:1].expand(len(tt), 2), t=tt).double().exp()
    assert float(dens.sum() * (axis[1] - axis[0]) ** 2) == pytest.approx(1.0, abs=1e-4)


def test_full_covariance_sampling_and_mode():
    m = random_full_mdn(seed=2, k=2)
    x = torch.tensor([[0.3, -0.5]])
    pi, mu, _ = m.mixture_parameters(x)
    sigma = m.covariances(x)
    draws = m.sample(x, n_samples=40_000, seed=0)[:, 0].double()
    mean = (pi[0, :, None] * mu[0]).sum(0).double()
    second = (pi[0, :, None, None] * (sigma[0] + mu[0, :, :, None] * mu[0, :, None, :])).sum(0)
    cov = second.double() - torch.outer(mean, mean)
    se = (cov.diagonal() / len(draws)).sqrt()
    assert torch.all((draws.mean(0) - mean).abs() < 4 * se)
    assert_close(torch.cov(draws.T), cov, atol=0.05 * float(cov.abs().max()), rtol=0)
    mode = m.mode(x)
    axis = torch.linspace(-6, 6, 241)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    dens = m.log_prob(x=x.expand(len(grid), 2), t=grid)
    assert float(m.log_prob(x=x, t=mode)) >= float(dens.max()) - 1e-4


def test_full_covariance_learns_a_correlated_target():
    """t | x ~ N((x, x), [[.09, .081], [.081, .0898]]) (correlation 0.9): one full Gaussian
    reaches the true conditional's held-out NLL, a diagonal one pays about
    -(1/2) log(1 - 0.9^2) = 0.83 nats per point. Measured (network and fit seeds 0-4, one
    thread): full 0.023-0.026 above the truth, diagonal 0.823-0.826 above full; the test
    requires 0.1 and 0.5."""

    def data(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, 1, generator=g) * 2 - 1
        e = torch.randn(n, 2, generator=g)
        t = torch.cat([x + 0.3 * e[:, :1], x + 0.27 * e[:, :1] + 0.13 * e[:, 1:]], 1)
        return x, t

    x, t = data(300, 0)
    xv, tv = data(2000, 1)
    cov = torch.tensor([[0.09, 0.081], [0.081, 0.0898]])
    truth = -torch.distributions.MultivariateNormal(xv.expand(-1, 2), cov).log_prob(tv).mean()
    fits = {}
    for kind in ("full", "diagonal"):
        m = MixtureDensityNetwork(1, 2, 1, hidden=(8,), covariance=kind, seed=0)
        fits[kind] = m.fit(x, t, steps=250, lr=2e-2).nll(xv, tv)
    assert fits["full"] < float(truth) + 0.1, (fits, float(truth))
    assert fits["diagonal"] > fits["full"] + 0.5, fits


# ------------------------------------------------------------------ the contract
def test_condition_first_and_the_old_order():
    m = MixtureDensityNetwork(2, 1, 2, hidden=8)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(4, 2, generator=g), torch.randn(4, 1, generator=g)
    expected = m.log_prob(x=x, t=t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(m.log_prob(x, t), expected)  # new order: no warning
    with pytest.warns(DeprecationWarning, match=r"log_prob\(t, x\) is deprecated"):
        assert torch.equal(m.log_prob(t, x), expected)  # old order, told by the shapes
    with pytest.warns(DeprecationWarning, match=r"nll\(t, x\)"):
        assert m.nll(t, x) == pytest.approx(float(-expected.mean()))
    square = MixtureDensityNetwork(1, 1, 2, hidden=8)
    with pytest.warns(DeprecationWarning, match="cannot be told"):
        assert torch.equal(square.log_prob(t, t + 1), square.log_prob(x=t, t=t + 1))
    with pytest.raises(ConfigurationError, match="condition first"):
        m.log_prob(x, t, t)


def test_fit_does_not_depend_on_what_came_before():
    """The same seeds give the same fit whatever global state earlier code left: other
    random streams, foreign parameters in Pyro's store, another default dtype; with 2 torch
    threads instead of 1 the fit differs by rounding only."""
    x, t = inverse_sine(120, seed=2, device="cpu")

    def fit() -> MixtureDensityNetwork:
        return MixtureDensityNetwork(1, 1, 2, hidden=8, seed=1).fit(x, t, steps=30, seed=3)

    reference = fit()
    with forked():
        torch.manual_seed(123)
        np.random.seed(7)  # noqa: NPY002
        random.seed(5)
        pyro.param("someone_elses", torch.ones(3))
        old_dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            again = fit()
        finally:
            torch.set_default_dtype(old_dtype)
    for a, b in zip(reference.parameters(), again.parameters()):
        assert a.dtype == torch.float32 and torch.equal(a, b)
    assert again.fit_result_.objective == reference.fit_result_.objective
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = fit()
    finally:
        torch.set_num_threads(threads)
    assert_close(two.fit_result_.objective, reference.fit_result_.objective, rtol=1e-4, atol=1e-5)
    # a fit leaves the caller's random stream where it was
    before = torch.get_rng_state()
    fit()
    assert torch.equal(torch.get_rng_state(), before)


def test_graph_parameters_and_the_record():
    m = MixtureDensityNetwork(3, 2, 4, hidden=(5,))
    g = m.graph()
    assert g.parents("z") == ("network", "x") and g.node("z").discrete
    assert not g.d_separated("x", "t", given=["z"])  # x -> t directly too
    assert m.n_parameters == (3 + 1) * 5 + (5 + 1) * 4 * (1 + 2 + 2)
    full = MixtureDensityNetwork(3, 2, 4, hidden=(5,), covariance="full")
    assert full.n_parameters == (3 + 1) * 5 + (5 + 1) * 4 * (1 + 2 + 3)
    x, t = inverse_sine(50, seed=0, device="cpu")
    one = MixtureDensityNetwork(1, 1, 2, hidden=4).fit(x, t, steps=5, batch_size=10)
    assert one.fit_result_.method == "svi" and one.fit_result_.n_iter == 5
    with pytest.warns(DeprecationWarning, match="fit_result_"):
        assert one.history.losses == [-v for v in one.fit_result_.objective]


def test_bad_input():
    m = MixtureDensityNetwork(2, 1, 3, hidden=8)
    with pytest.raises(ShapeError, match=r"\(N, 2\)"):
        m.log_prob(x=torch.zeros(4, 3), t=torch.zeros(4, 1))
    with pytest.raises(ShapeError, match="rows"):
        m.log_prob(x=torch.zeros(4, 2), t=torch.zeros(3, 1))
    with pytest.raises(NonFiniteError):
        m.fit(torch.tensor([[0.0, math.nan]]), torch.zeros(1, 1), steps=1)
    with pytest.raises(ConfigurationError, match="complex"):
        m.fit(torch.zeros(3, 2, dtype=torch.complex64), torch.zeros(3, 1), steps=1)
    with pytest.raises(ConfigurationError, match="n_components"):
        MixtureDensityNetwork(1, 1, 0)
    with pytest.raises(ConfigurationError, match="activation"):
        MixtureDensityNetwork(1, 1, 2, activation="sigmoidal")
    with pytest.raises(ConfigurationError, match="min_scale"):
        MixtureDensityNetwork(1, 1, 2, min_scale=0.0)
    with pytest.raises(ConfigurationError, match="covariance"):
        MixtureDensityNetwork(1, 1, 2, covariance="spherical")
