"""pyrobn.info: eq. 43-48 on tables and Gaussians, closed forms vs Monte Carlo, Figura 16."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Laplace, MultivariateNormal, Normal, StudentT

from pyrobn import info
from pyrobn.errors import ConfigurationError, InvalidDistributionError, ShapeError

SETTINGS = settings(max_examples=40, deadline=None)


def _random_table(seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, generator=g, dtype=torch.float64) + 1e-3
    return w / w.sum()


def _random_mvn(seed: int, d: int) -> MultivariateNormal:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T + 0.3 * torch.eye(d, dtype=torch.float64)
    return MultivariateNormal(torch.randn(d, generator=g, dtype=torch.float64), cov)


@SETTINGS
@given(st.integers(0, 10_000), st.integers(2, 12))
def test_tables_ce_equals_h_plus_kl_and_gibbs(seed, n):
    p, q = _random_table(seed, n), _random_table(seed + 1, n)
    h, ce, kl = info.entropy(p), info.cross_entropy(p, q), info.kl_divergence(p, q)
    assert float(ce) == pytest.approx(float(h + kl), abs=1e-12)  # eq. 46
    assert float(kl) >= 0  # Gibbs
    assert float(info.kl_divergence(p, p)) == pytest.approx(0, abs=1e-14)
    pn, qn = p.numpy(), q.numpy()
    assert float(h) == pytest.approx(-(pn * np.log(pn)).sum(), abs=1e-12)
    assert float(kl) == pytest.approx((pn * np.log(pn / qn)).sum(), abs=1e-12)


def test_table_conventions_and_batches():
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    q = torch.tensor([[0.25, 0.25, 0.5], [0.5, 0.5, 0.0]], dtype=torch.float64)
    assert torch.allclose(info.entropy(p), torch.tensor([math.log(2), 0.0], dtype=torch.float64))
    assert torch.allclose(info.kl_divergence(p, q), torch.tensor([math.log(2)] * 2).double())
    assert math.isinf(float(info.kl_divergence(q[:1], p[:1])))  # q_i = 0 < p_i
    # Bernoulli entropy (notes, after eq. 43) is largest at r = 1/2
    r = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    h = info.entropy(torch.stack([1 - r, r], -1))
    assert float(r[h.argmax()]) == pytest.approx(0.5)


@SETTINGS
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_gaussians_closed_forms(seed, d):
    p, q = _random_mvn(seed, d), _random_mvn(seed + 7, d)
    h, ce, kl = info.entropy(p), info.cross_entropy(p, q), info.kl_divergence(p, q)
    assert float(ce) == pytest.approx(float(h + kl), rel=1e-10, abs=1e-10)
    assert float(kl) >= 0
    assert float(kl) == pytest.approx(float(torch.distributions.kl_divergence(p, q)), rel=1e-9)
    assert float(h) == pytest.approx(float(p.entropy()), rel=1e-12)


def test_univariate_normal_closed_form():
    f64 = torch.float64
    p, q = Normal(torch.tensor(0.3, dtype=f64), 1.5), Normal(torch.tensor(-1.0, dtype=f64), 0.7)
    expected = math.log(0.7 / 1.5) + (1.5**2 + 1.3**2) / (2 * 0.7**2) - 0.5
    assert float(info.kl_divergence(p, q)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "p,q",
    [
        (Normal(0.0, 1.0), Normal(1.0, 2.0)),
        (_random_mvn(1, 3), _random_mvn(2, 3)),
        (Laplace(0.0, 1.0), Laplace(0.5, 2.0)),
    ],
    ids=["normal", "mvn", "laplace"],
)
def test_closed_forms_agree_with_monte_carlo_within_4_se(p, q):
    for fn in (info.entropy, info.cross_entropy, info.kl_divergence):
        args = (p,) if fn is info.entropy else (p, q)
        exact = float(fn(*args))
        mc = fn(*args, method="mc", num_samples=40_000, seed=3)
        assert isinstance(mc, info.MonteCarloEstimate)
        assert abs(float(mc.value) - exact) < 4 * float(mc.stderr), (fn.__name__, mc, exact)


def test_monte_carlo_for_a_pair_without_closed_form():
    p, q = StudentT(4.0, 0.0, 1.0), Normal(0.0, 1.5)
    auto = info.kl_divergence(p, q, num_samples=40_000, seed=0)
    assert isinstance(auto, info.MonteCarloEstimate) and float(auto.value) > 0
    # quadrature reference
    x = torch.linspace(-60, 60, 400_001, dtype=torch.float64)
    lp = StudentT(torch.tensor(4.0).double(), 0.0, 1.0).log_prob(x)
    lq = Normal(torch.tensor(0.0).double(), 1.5).log_prob(x)
    ref = float((lp.exp() * (lp - lq)).sum() * (x[1] - x[0]))
    assert abs(float(auto.value) - ref) < 4 * float(auto.stderr)
    with pytest.raises(ConfigurationError, match="method='mc'"):
        info.kl_divergence(p, q, method="exact")


def test_mle_is_min_cross_entropy_is_min_kl():
    """eq. 45 and 48: on the empirical distribution of data, argmax log-lik = argmin CE."""
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 4, (500,), generator=g)
    p_d = torch.bincount(data, minlength=4).double() / 500
    r = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    # a one-parameter family q_r = Binomial(3, r) over {0, 1, 2, 3}
    q = torch.distributions.Binomial(3, r.unsqueeze(-1)).log_prob(torch.arange(4.0)).exp()
    log_lik = torch.distributions.Binomial(3, r.unsqueeze(-1)).log_prob(data.double()).sum(-1)
    ce = info.cross_entropy(p_d.expand_as(q), q)
    assert torch.allclose(ce, -log_lik / 500, atol=1e-12)  # eq. 45
    kl = info.kl_divergence(p_d.expand_as(q), q)
    assert int(log_lik.argmax()) == int(ce.argmin()) == int(kl.argmin())  # eq. 48


def test_kl_asymmetry_of_figura_16():
    """A bimodal p: the forward-KL Gaussian covers both modes, the reverse one locks on one."""
    weights, means, sd = (0.5, 0.5), (-3.0, 3.0), 0.7

    def log_p(x):
        comps = torch.stack(
            [Normal(m, sd).log_prob(x) + math.log(w) for w, m in zip(weights, means)]
        )
        return torch.logsumexp(comps, 0)

    m_f, s_f = info.fit_gaussian_by_kl(log_p, "forward", init=(1.0, 1.0))
    m_r, s_r = info.fit_gaussian_by_kl(log_p, "reverse", init=(1.0, 1.0))
    # forward KL = moment matching: mean 0, variance sd^2 + 9
    assert m_f == pytest.approx(0.0, abs=1e-4)
    assert s_f == pytest.approx(math.sqrt(sd**2 + 9), rel=1e-4)
    # reverse KL locks onto the mode nearest its start, with about that mode's width
    assert m_r == pytest.approx(3.0, abs=1e-2)
    assert s_r == pytest.approx(sd, rel=2e-2)
    m_r2, _ = info.fit_gaussian_by_kl(log_p, "reverse", init=(-1.0, 1.0))
    assert m_r2 == pytest.approx(-3.0, abs=1e-2)


def test_bad_input():
    with pytest.raises(InvalidDistributionError, match="sums to"):
        info.entropy(torch.tensor([0.5, 0.6]))
    with pytest.raises(InvalidDistributionError, match="negative"):
        info.kl_divergence(torch.tensor([1.5, -0.5]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ShapeError, match="states"):
        info.cross_entropy(torch.tensor([0.5, 0.5]), torch.tensor([0.2, 0.3, 0.5]))
    with pytest.raises(ConfigurationError):
        info.entropy(Normal(0.0, 1.0), method="sampling")
    with pytest.raises(ConfigurationError, match="direction"):
        info.fit_gaussian_by_kl(lambda x: -(x**2), "sideways")
    with pytest.raises(ConfigurationError, match="num_samples"):
        info.entropy(Normal(0.0, 1.0), method="mc", num_samples=0)
