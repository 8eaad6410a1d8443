"""pyrobn.info: eq. 43-48 on tables and Gaussians, closed forms vs Monte Carlo, Figura 16."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from common import assert_close
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
    assert_close(info.entropy(p), [math.log(2), 0.0], rtol=1e-5, atol=1e-8)
    assert_close(info.kl_divergence(p, q), [math.log(2)] * 2, rtol=1e-5, atol=1e-8)
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
    assert_close(ce, -log_lik / 500, rtol=1e-5, atol=1e-12)  # eq. 45
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


# ------------------------------------------------- information and bases (eq. 40-42)
@SETTINGS
@given(st.floats(1e-6, 1.0), st.floats(1e-6, 1.0))
def test_information_of_independent_events_adds_up(p_a, p_b):
    """eq. 40-41: I(A n B) = I(A) + I(B) when Prob(A n B) = Prob(A) Prob(B); eq. 42."""
    both = info.information(p_a * p_b)
    assert float(both) == pytest.approx(float(info.information(p_a) + info.information(p_b)))
    assert float(info.information(p_a)) >= 0


def test_information_in_bits_and_nats():
    assert info.information(0.5, base=2).shape == ()
    assert float(info.information(0.5, base=2)) == 1.0
    assert float(info.information(0.125, base=2)) == pytest.approx(3.0, abs=1e-15)
    assert float(info.information(1.0)) == 0.0  # a sure event carries no information
    assert math.isinf(float(info.information(0.0)))
    p = torch.tensor([0.1, 0.2, 0.7], dtype=torch.float64)
    assert_close(info.information(p, base=2), -torch.log2(p), rtol=1e-15)


def test_base_rescales_every_quantity_by_one_over_log_b():
    p, q = _random_table(3, 5), _random_table(4, 5)
    for fn, args in [
        (info.entropy, (p,)),
        (info.cross_entropy, (p, q)),
        (info.kl_divergence, (p, q)),
        (info.js_divergence, (p, q)),
    ]:
        assert_close(fn(*args, base=2), fn(*args) / math.log(2), rtol=1e-14, msg=fn.__name__)
    n, m = Normal(0.0, 1.0), Normal(1.0, 2.0)
    assert_close(info.kl_divergence(n, m, base=10), info.kl_divergence(n, m) / math.log(10))
    mc = info.entropy(StudentT(4.0), method="mc", num_samples=2000, seed=1)
    mc2 = info.entropy(StudentT(4.0), method="mc", num_samples=2000, seed=1, base=2)
    assert_close(mc2.value, mc.value / math.log(2), rtol=1e-6)
    assert_close(mc2.stderr, mc.stderr / math.log(2), rtol=1e-6)
    # the uniform distribution on 2^k states holds k bits
    for k in range(1, 6):
        uniform = torch.full((2**k,), 2.0**-k, dtype=torch.float64)
        assert float(info.entropy(uniform, base=2)) == pytest.approx(k, abs=1e-12)


# ------------------------------------------------- maximum entropy (2.4.3.1)
@SETTINGS
@given(st.integers(0, 10_000), st.integers(2, 30))
def test_uniform_has_the_largest_entropy_on_a_finite_set(seed, n):
    """log n - H(p) = KL(p || uniform) >= 0: the uniform table is the maximum (and only it)."""
    p = _random_table(seed, n)
    uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
    gap = math.log(n) - float(info.entropy(p))
    assert gap == pytest.approx(float(info.kl_divergence(p, uniform)), abs=1e-12)
    assert gap > 0
    assert float(info.entropy(uniform)) == pytest.approx(math.log(n), abs=1e-12)


UNIT_VARIANCE = {
    "laplace": Laplace(0.0, 2.0**-0.5),
    "uniform": torch.distributions.Uniform(-(3.0**0.5), 3.0**0.5),
    "student_t5": StudentT(5.0, 0.0, (3.0 / 5.0) ** 0.5),
    "gumbel": torch.distributions.Gumbel(0.0, 6.0**0.5 / math.pi),
}


@pytest.mark.parametrize("name", list(UNIT_VARIANCE))
def test_the_gaussian_has_the_largest_entropy_for_a_given_variance(name):
    """Among densities on R of variance 1, H <= 1/2 log(2 pi e) = 1.4189, reached by N(0, 1)
    (torch's closed forms: Laplace 1.3466, uniform 1.2425, Student t(5) 1.3721, Gumbel 1.3284)."""
    bound = 0.5 * math.log(2 * math.pi * math.e)
    assert float(info.entropy(Normal(0.0, 1.0))) == pytest.approx(bound, rel=1e-7)
    d = UNIT_VARIANCE[name]
    h = info.entropy(d, num_samples=50_000, seed=0)
    if isinstance(h, info.MonteCarloEstimate):
        assert float(h.value) + 4 * float(h.stderr) < bound, (name, h)
    else:
        assert float(h) < bound, (name, float(h))


def test_unit_variance_family_really_has_unit_variance():
    for name, d in UNIT_VARIANCE.items():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            x = d.sample((400_000,))
        assert float(x.var()) == pytest.approx(1.0, abs=0.02), name


def test_a_two_component_mixture_of_unit_variance_is_below_the_gaussian():
    """A Monte Carlo entropy (no closed form): 1.3806 +- 0.0028, 0.038 (13 standard errors)
    below the bound."""
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.tensor([0.5, 0.5])),
        Normal(torch.tensor([-0.8, 0.8]), torch.tensor([0.6, 0.6])),
    )  # variance 0.36 + 0.64 = 1
    h = info.entropy(mix, num_samples=40_000, seed=0)
    assert isinstance(h, info.MonteCarloEstimate)
    assert float(h.value) + 4 * float(h.stderr) < 0.5 * math.log(2 * math.pi * math.e)


# ------------------------------------------------- Jensen-Shannon
@SETTINGS
@given(st.integers(0, 10_000), st.integers(2, 12), st.sampled_from([2.0, math.e, 10.0]))
def test_js_distance_is_scipys_jensenshannon(seed, n, base):
    from scipy.spatial.distance import jensenshannon

    p, q = _random_table(seed, n), _random_table(seed + 1, n)
    expected = jensenshannon(p.numpy(), q.numpy(), base=base)
    assert float(info.js_distance(p, q, base=base)) == pytest.approx(expected, abs=1e-12)
    assert float(info.js_divergence(p, q, base=base)) == pytest.approx(expected**2, abs=1e-12)


@SETTINGS
@given(st.integers(0, 10_000), st.integers(2, 8))
def test_js_is_a_bounded_symmetric_divergence_and_its_root_a_metric(seed, n):
    p, q, r = _random_table(seed, n), _random_table(seed + 1, n), _random_table(seed + 2, n)
    js = float(info.js_divergence(p, q))
    assert js == pytest.approx(float(info.js_divergence(q, p)), abs=1e-15)
    assert 0 < js <= math.log(2)
    assert float(info.js_divergence(p, p)) == pytest.approx(0.0, abs=1e-15)
    # the notes' definition: 1/2 KL(p || m) + 1/2 KL(q || m)
    m = 0.5 * (p + q)
    by_kl = 0.5 * (info.kl_divergence(p, m) + info.kl_divergence(q, m))
    assert js == pytest.approx(float(by_kl), abs=1e-14)
    d = info.js_distance
    assert float(d(p, r)) <= float(d(p, q)) + float(d(q, r)) + 1e-12


def test_js_of_disjoint_tables_is_one_bit_and_batches_work():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    assert_close(info.js_divergence(p, q, base=2), [1.0, 0.0], atol=1e-15)


def test_js_of_distributions_by_monte_carlo_agrees_with_quadrature():
    f64 = torch.float64
    p, q = Normal(torch.tensor(0.0, dtype=f64), 1.0), Normal(torch.tensor(1.5, dtype=f64), 0.7)
    x = torch.linspace(-20, 20, 400_001, dtype=f64)
    lp, lq = p.log_prob(x), q.log_prob(x)
    lm = torch.logaddexp(lp, lq) - math.log(2)
    dx = x[1] - x[0]
    exact = 0.5 * float((lp.exp() * (lp - lm)).sum() * dx + (lq.exp() * (lq - lm)).sum() * dx)
    # margin: |error| / stderr at most 1.44 over seeds 0-9, 1 and 2 threads (bound 4)
    mc = info.js_divergence(p, q, num_samples=40_000, seed=0)
    assert isinstance(mc, info.MonteCarloEstimate)
    assert abs(float(mc.value) - exact) < 4 * float(mc.stderr)
    distance = info.js_distance(p, q, num_samples=40_000, seed=0)
    assert float(distance.value) == pytest.approx(math.sqrt(float(mc.value)), rel=1e-12)
    assert abs(float(distance.value) - math.sqrt(exact)) < 4 * float(distance.stderr)


# ------------------------------------------------- torch's closed forms, independently
def _mvn_kl_oracle(p: MultivariateNormal, q: MultivariateNormal) -> float:
    """0.5 [tr(Sq^-1 Sp) + (mq - mp)^T Sq^-1 (mq - mp) - D + log det Sq - log det Sp]."""
    inv_q = torch.linalg.inv(q.covariance_matrix)
    d = (q.loc - p.loc).unsqueeze(-1)
    return float(
        0.5
        * (
            torch.trace(inv_q @ p.covariance_matrix)
            + (d.mT @ inv_q @ d).squeeze()
            - p.loc.numel()
            + torch.logdet(q.covariance_matrix)
            - torch.logdet(p.covariance_matrix)
        )
    )


@SETTINGS
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_gaussian_kl_and_entropy_against_the_formulas(seed, d):
    p, q = _random_mvn(seed, d), _random_mvn(seed + 7, d)
    assert float(info.kl_divergence(p, q)) == pytest.approx(_mvn_kl_oracle(p, q), rel=1e-9)
    h = 0.5 * d * math.log(2 * math.pi * math.e) + 0.5 * float(torch.logdet(p.covariance_matrix))
    assert float(info.entropy(p)) == pytest.approx(h, rel=1e-12)


def test_a_normal_beside_a_one_dimensional_mvn():
    f64 = torch.float64
    n = Normal(torch.tensor(0.3, dtype=f64), 1.5)
    m = MultivariateNormal(torch.tensor([-1.0], dtype=f64), torch.tensor([[0.49]], dtype=f64))
    expected = float(info.kl_divergence(n, Normal(torch.tensor(-1.0, dtype=f64), 0.7)))
    assert float(info.kl_divergence(n, m)) == pytest.approx(expected, rel=1e-12)


def test_deprecated_gaussian_helpers_warn_and_agree():
    p, q = _random_mvn(1, 3), _random_mvn(2, 3)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        kl = info.gaussian_kl(p.loc, p.scale_tril, q.loc, q.scale_tril)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        h = info.gaussian_entropy(p.scale_tril)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        ce = info.gaussian_cross_entropy(p.loc, p.scale_tril, q.loc, q.scale_tril)
    assert_close(kl, info.kl_divergence(p, q), rtol=1e-12)
    assert_close(h, info.entropy(p), rtol=1e-12)
    assert_close(ce, info.cross_entropy(p, q), rtol=1e-12)


def test_lists_and_arrays_are_tables_and_mixing_kinds_is_refused():
    assert float(info.entropy([0.5, 0.5])) == pytest.approx(math.log(2))
    assert float(info.kl_divergence(np.array([0.5, 0.5]), [0.9, 0.1])) == pytest.approx(
        0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    )
    with pytest.raises(ConfigurationError, match="both be tables or both be distributions"):
        info.kl_divergence(torch.tensor([0.5, 0.5]), Normal(0.0, 1.0))
    with pytest.raises(ShapeError, match="event shape"):
        info.kl_divergence(Normal(0.0, 1.0), _random_mvn(0, 2))
