"""KDE (eq. 14) and the empirical distribution (eq. 13)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from common import assert_close
from scipy.special import logsumexp
from scipy.stats import gaussian_kde

from pyrobn import KDE
from pyrobn.density import EmpiricalDistribution
from pyrobn.errors import ConfigurationError, NonFiniteError, ShapeError, SizeLimitError


def numpy_kde_log_prob(queries: np.ndarray, data: np.ndarray, h: float) -> np.ndarray:
    """eq. 14 written out directly: log (1/K) sum_k N(x | x^k, h^2 I)."""
    diff = queries[:, None, :] - data[None, :, :]
    log_k = -0.5 * (diff**2).sum(-1) / h**2 - 0.5 * data.shape[1] * np.log(2 * np.pi * h**2)
    return logsumexp(log_k, axis=1) - np.log(len(data))


@pytest.mark.parametrize("d", [1, 2, 5])
def test_log_prob_equals_direct_numpy(d, device):
    rng = np.random.default_rng(d)
    data = rng.normal(size=(300, d)) * 3 + 10
    queries = rng.normal(size=(200, d)) * 4 + 10
    for h in (0.05, 0.7, "scott"):
        kde = KDE(torch.as_tensor(data, device=device), bandwidth=h)
        got = kde.log_prob(torch.as_tensor(queries, device=device)).cpu().numpy()
        ref = numpy_kde_log_prob(queries, data, kde.bandwidth)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)


def test_chunking_gives_the_same_answer(monkeypatch):
    import pyrobn.density as density

    rng = np.random.default_rng(0)
    data, queries = rng.normal(size=(500, 2)), rng.normal(size=(300, 2))
    full = KDE(data, 0.3).log_prob(queries)
    monkeypatch.setattr(density, "_CHUNK_ENTRIES", 1000)
    chunked = KDE(data, 0.3).log_prob(queries)
    assert_close(full, chunked, atol=1e-12, rtol=0)


def test_density_integrates_to_one():
    data = torch.tensor([0.1, 0.35, 0.4, 0.8, 0.9], dtype=torch.float64)  # Figura 6's setting
    kde = KDE(data, 0.1)
    x = torch.linspace(-2, 3, 20001, dtype=torch.float64)
    assert float(kde.log_prob(x).exp().sum() * (x[1] - x[0])) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("d", [1, 3])
def test_rules_of_thumb_equal_their_formulas(d):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(400, d)) * np.arange(1, d + 1)
    n = len(data)
    sigma = math.sqrt(data.var(0, ddof=1).mean())
    assert KDE(data, "scott").bandwidth == pytest.approx(sigma * n ** (-1 / (d + 4)), rel=1e-12)
    assert KDE(data, "silverman").bandwidth == pytest.approx(
        sigma * (n * (d + 2) / 4) ** (-1 / (d + 4)), rel=1e-12
    )
    if d == 1:  # scipy's gaussian_kde: kernel sd = factor * sd(data)
        for rule in ("scott", "silverman"):
            ref = gaussian_kde(data[:, 0], bw_method=rule)
            assert KDE(data, rule).bandwidth == pytest.approx(math.sqrt(ref.covariance[0, 0]))


@pytest.mark.parametrize("rule", ["scott", "silverman", "cv"])
def test_bandwidths_scale_with_the_data(rule):
    """Unlike scikit-learn's string bandwidths (#25623, #26658): scale x20 -> h x20."""
    data = np.random.default_rng(2).normal(size=(300, 2))
    h1, h20 = KDE(data, rule).bandwidth, KDE(20 * data, rule).bandwidth
    assert h20 / h1 == pytest.approx(20.0, rel=1e-3 if rule == "cv" else 1e-12)


def test_cv_picks_the_held_out_likelihood_maximiser():
    rng = np.random.default_rng(3)
    data = np.concatenate([rng.normal(-2, 0.3, 300), rng.normal(2, 0.3, 300)])[:, None]
    kde = KDE(data, "cv")

    d2 = (data - data.T) ** 2
    np.fill_diagonal(d2, np.inf)

    def loo(h):
        lk = logsumexp(-0.5 * d2 / h**2, axis=1) - np.log(len(data) - 1)
        return (lk - 0.5 * np.log(2 * np.pi * h**2)).mean()

    grid = np.linspace(0.3, 3, 55) * kde.bandwidth
    assert loo(kde.bandwidth) >= max(loo(h) for h in grid) - 1e-6
    # bimodal data: Scott's rule over-smooths, CV picks a smaller h
    assert kde.bandwidth < KDE(data, "scott").bandwidth


def test_sample_statistics():
    data = torch.tensor([[0.0, 0.0], [4.0, 1.0]], dtype=torch.float64)
    kde = KDE(data, 0.5)
    x = kde.sample(40_000, seed=0)
    assert x.shape == (40_000, 2)
    # mean = data mean; variance per axis = data variance (ddof 0) + h^2
    se = x.std(0) / math.sqrt(len(x))
    assert torch.all((x.mean(0) - data.mean(0)).abs() < 4 * se)
    var_expected = data.var(0, unbiased=False) + 0.25
    assert_close(x.var(0), var_expected, rtol=0.03)
    before = torch.get_rng_state()
    assert torch.equal(kde.sample(10, seed=1), kde.sample(10, seed=1))
    assert torch.equal(torch.get_rng_state(), before)  # a local generator


def test_kde_graph_is_a_uniform_mixture_over_the_data():
    kde = KDE(torch.tensor([[0.0, 1.0], [2.0, 0.5], [1.0, 1.0]], dtype=torch.float64), 0.4)
    g = kde.graph()
    assert g.parents("x") == ("k", "data", "h") and g.node("k").discrete
    assert "k ~ U{1..3}" in g.node("k").label
    # eq. 14 as the mixture of Figura 2: (1/K) sum_k N(x | x^k, h^2 I)
    from pyrobn import GaussianMixture

    gm = GaussianMixture(3, dim=2, means=kde.data, scales=[[0.4, 0.4]] * 3)
    q = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert_close(kde.log_prob(q), gm.log_prob(q), atol=1e-12)


def test_empirical_distribution():
    data = torch.tensor([[0.0], [1.0], [1.0], [2.0]], dtype=torch.float64)
    emp = EmpiricalDistribution(data)
    lp = emp.log_prob(torch.tensor([[1.0], [2.0], [0.5]], dtype=torch.float64))
    assert_close(lp[:2].exp(), torch.tensor([0.5, 0.25], dtype=torch.float64))
    assert lp[2] == -math.inf
    assert float(emp.entropy()) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    draws = emp.sample(20_000, seed=0)
    assert float((draws == 1.0).double().mean()) == pytest.approx(
        0.5, abs=4 * math.sqrt(0.25 / 20_000)
    )


def test_bad_input():
    good = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(NonFiniteError, match=r"index \(3, 1\)"):
        bad = good.copy()
        bad[3, 1] = np.nan
        KDE(bad)
    for h in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ConfigurationError, match="bandwidth"):
            KDE(good, h)
    with pytest.raises(ConfigurationError, match="'scott', 'silverman', 'cv'"):
        KDE(good, "wide")
    with pytest.raises(ShapeError, match=r"\(N, 2\)"):
        KDE(good).log_prob(np.zeros((4, 3)))
    with pytest.raises(ShapeError):
        KDE(np.zeros((2, 2, 2)))
    with pytest.raises(ShapeError, match="at least 2"):
        KDE(np.zeros((1, 2)), "scott")
    with pytest.raises(ConfigurationError, match="zero spread"):
        KDE(np.ones((5, 2)), "silverman")
    with pytest.raises(NonFiniteError):
        KDE(good).log_prob(np.array([[0.0, math.inf]]))
    with pytest.raises(ConfigurationError, match="complex"):
        KDE(good + 1j)
    with pytest.raises(SizeLimitError, match="sample"):
        KDE(good).sample(10**12)
    with pytest.raises(ConfigurationError, match="n must be"):
        EmpiricalDistribution(good).sample(2.5)
