"""GaussianMixture: the notes' learned prior weight (2.4.4), MAP, the full mixture vs sklearn,
the estimator contract (fit returns the model, one EM driver, deprecated names), errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyro
import pytest
import torch
from common import assert_close
from scipy.optimize import brentq
from scipy.stats import norm
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from pyrobn import GaussianMixture
from pyrobn.datasets import course_mixture, gaussian_blobs
from pyrobn.datasets.mixture import COURSE_MIXTURE, course_mixture_log_prob
from pyrobn.errors import (
    CheckpointError,
    ConfigurationError,
    InvalidDistributionError,
    NonFiniteError,
    ShapeError,
    SizeLimitError,
)
from pyrobn.infer.em import converged

P = COURSE_MIXTURE


def weight_mle_two_components(log_p0: torch.Tensor, log_p1: torch.Tensor) -> float:
    """The exact maximiser r* in [0, 1] of (1/N) sum_n log[(1 - r) p0(x_n) + r p1(x_n)].

    The mean log-likelihood is concave in r; its derivative
    (1/N) sum_n (p1 - p0) / ((1 - r) p0 + r p1) vanishes at r* (``brentq``), or r* is 0 or 1
    when the derivative does not change sign. ``log_p0``/``log_p1``: component log-densities.
    """
    ratio = np.exp(log_p1.detach().cpu().double().numpy() - log_p0.detach().cpu().double().numpy())

    def slope(r: float) -> float:
        return float(np.mean((ratio - 1.0) / (1.0 - r + r * ratio)))

    if slope(0.0) <= 0:
        return 0.0
    if slope(1.0) >= 0:
        return 1.0
    return float(brentq(slope, 0.0, 1.0, xtol=1e-14, rtol=1e-14))


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
    assert_close(gm.log_prob(x), course_mixture_log_prob(x, 0.8), atol=1e-12, rtol=0)


def test_learned_r_equals_exact_maximiser(device):
    """The notes' train_loop (SGD on the normalised NLL, theta_0 = 0.1) reaches r* to 1e-3."""
    x = course_mixture(1000, seed=0, device=device)
    r_star = exact_r(x.cpu().numpy())
    gm = notes_mixture(1 / (1 + math.exp(-0.1))).to(device)
    assert gm.fit(x, steps=80, lr=10.0, optimizer="sgd", init="keep") is gm
    r = float(gm.weights[1].detach())
    assert abs(r - r_star) < 1e-3
    assert abs(r_star - 0.8) < 0.05
    # the objective is minus the normalised NLL of eq. 45, and it went up
    result = gm.fit_result_
    assert result.method == "svi" and result.objective_name == "mean_log_likelihood"
    assert -result.objective[0] == pytest.approx(
        -float(course_mixture_log_prob(x, 1 / (1 + math.exp(-0.1))).mean())
    )
    assert result.objective[-1] > result.objective[0]
    # the root solve on the model's own component densities agrees with scipy's
    lp = gm.joint_log_probs(x) - gm.weights.log()
    assert weight_mle_two_components(lp[:, 0], lp[:, 1]) == pytest.approx(r_star, abs=1e-10)


def test_map_with_dirichlet_prior_through_autodelta():
    """MAP weights = the fixed point w_k = (N_k + a_k - 1)/(N + sum a - K); SVI and EM agree."""
    x = course_mixture(300, seed=2)
    alpha = [6.0, 2.0]
    svi = notes_mixture(concentration=alpha)
    svi.fit(x, steps=150, lr=0.1, init="keep")
    assert "AutoDelta" in str(type(svi.map_guide).__name__)
    # the guide's parameters live under the model's own name in Pyro's param store
    store = pyro.get_param_store()
    assert [k for k in store.keys() if "map_guide" in k]
    assert all(k.startswith(f"{svi._pyro_name}.") for k in store.keys() if "map_guide" in k)
    em = notes_mixture(concentration=alpha)
    em.fit(x, method="em", max_iter=5000, tol=1e-15, init="keep")
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
    # the objective is the mean log-posterior (1/N)[log p(D | w) + log Dir(w | alpha)]
    r = float(em.weights[1])
    log_post = np.log((1 - r) * p0 + r * p1).sum() + float(
        torch.distributions.Dirichlet(torch.tensor(alpha)).log_prob(torch.tensor([1 - r, r]))
    )
    assert em.fit_result_.objective_name == "mean_log_posterior"
    assert em.fit_result_.final_objective == pytest.approx(log_post / len(xs), rel=1e-6)


def test_concentration_one_is_flat_and_map_equals_mle():
    """One meaning of concentration: MAP adds alpha - 1 pseudo-counts, so alpha = 1 is the MLE."""
    x = course_mixture(400, seed=4)
    flat = notes_mixture(concentration=1.0).fit(x, method="em", max_iter=2000, tol=1e-14)
    mle = notes_mixture().fit(x, method="em", max_iter=2000, tol=1e-14)
    assert float(flat.weights[1]) == pytest.approx(exact_r(x.numpy()), abs=1e-7)
    assert_close(flat.weights, mle.weights, atol=1e-7)
    # alpha = 2 adds one pseudo-count to each component: EM's fixed point says so
    two = notes_mixture(concentration=2.0).fit(x, method="em", max_iter=2000, tol=1e-14)
    resp = two.predict_proba(x)
    assert_close(two.weights, (resp.sum(0) + 1) / (len(x) + 2), atol=1e-7)


def test_predict_proba_is_bayes_rule():
    gm = notes_mixture(0.8)
    x = torch.tensor([-3.0, 0.0, 1.0, 5.0], dtype=torch.float64)
    resp = gm.predict_proba(x)
    p0 = 0.2 * norm.pdf(x.numpy(), -1, 1)
    p1 = 0.8 * norm.pdf(x.numpy(), 3, 2)
    assert_close(resp[:, 1], p1 / (p0 + p1), atol=1e-12, rtol=0)
    assert_close(resp.sum(-1), torch.ones(4, dtype=torch.float64))
    assert gm.predict(x).tolist() == (p1 > p0).astype(int).tolist()
    with pytest.warns(DeprecationWarning, match="predict_proba"):
        assert torch.equal(gm.responsibilities(x), resp)


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
        assert_close(torch.cov(xk.T), gm.covariances[k], atol=0.1, rtol=0)
    # seeded draws repeat and leave the caller's random stream alone
    before = torch.get_rng_state()
    assert torch.equal(gm.sample(5, seed=3), gm.sample(5, seed=3))
    assert torch.equal(torch.get_rng_state(), before)


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
    assert_close(gm.log_prob(x), ref, atol=1e-12, rtol=0)
    n_params = 1 + 4 + 6
    assert gm.n_parameters == n_params
    assert gm.bic(x) == pytest.approx(-2 * ref.sum() + n_params * math.log(50))
    # the batched triangular solve is torch's MultivariateNormal density
    comp = torch.distributions.MultivariateNormal(gm.means, scale_tril=gm.scale_tril)
    xt = torch.as_tensor(x)
    assert_close(gm.joint_log_probs(x) - gm.weights.log(), comp.log_prob(xt.unsqueeze(1)))


def test_full_mixture_held_out_within_one_percent_of_sklearn():
    train, test = gaussian_blobs(1500, 0), gaussian_blobs(1500, 1)
    sk = SkGaussianMixture(3, tol=1e-6, max_iter=1000, n_init=3, random_state=0).fit(train)
    gm = GaussianMixture(3, dim=2, learn="all")
    gm.fit(train, method="em", max_iter=1000, tol=1e-9, restarts=3, seed=0)
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
    em.fit(train, method="em", max_iter=2000, tol=1e-12, reg_covar=0.0)
    svi = GaussianMixture(2, learn="all")
    svi.fit(train, method="svi", steps=350, lr=0.2)
    assert svi.score(train) == pytest.approx(em.score(train), abs=1e-4)


def test_em_goes_through_run_em_with_one_convergence_rule():
    """EM never lowers the objective, stops by the package's relative rule, records each
    restart, and its last entry is the objective of the parameters it returns."""
    train = gaussian_blobs(400, 3)
    gm = GaussianMixture(3, dim=2, learn="all").fit(train, method="em", tol=1e-7, restarts=3)
    result = gm.fit_result_
    assert result.method == "em" and len(result.restarts) == 3
    for trace in result.restarts:
        gains = np.diff(trace)
        assert (gains >= -1e-12 * np.abs(trace[1:])).all()
    trace = result.objective
    # the loop stopped at the first iteration the rule accepted (the last entry is final())
    assert result.converged and converged(trace[-3], trace[-2], 1e-7)
    assert not any(converged(a, b, 1e-7) for a, b in itertools.pairwise(trace[:-2]))
    assert trace[-1] == pytest.approx(gm.score(train), rel=1e-12)
    capped = GaussianMixture(3, dim=2, learn="all").fit(train, method="em", max_iter=3, tol=0)
    assert not capped.fit_result_.converged and capped.fit_result_.n_iter == 3 + 1


def test_restarts_keep_the_best():
    train = gaussian_blobs(200, 1)  # five components for three blobs: several local optima
    best = GaussianMixture(5, dim=2, learn="all")
    best.fit(train, method="em", max_iter=300, tol=1e-7, restarts=4, seed=0)
    finals = [trace[-1] for trace in best.fit_result_.restarts]
    assert len(set(np.round(finals, 6))) > 1  # the restarts did reach different optima
    assert best.fit_result_.best_restart == int(np.argmax(finals))
    assert best.score(train) == pytest.approx(max(finals), abs=1e-10)
    # the SVI path keeps its best restart too (chosen by the exact final objective)
    svi = GaussianMixture(3, dim=2, learn="all")
    svi.fit(train, steps=40, lr=0.1, restarts=3, seed=0)
    assert len(svi.fit_result_.restarts) == 3
    # the same seed gives the same fit; the caller's random streams are untouched
    before = torch.get_rng_state()
    again = GaussianMixture(5, dim=2, learn="all")
    again.fit(train, method="em", max_iter=300, tol=1e-7, restarts=4, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    assert again.score(train) == best.score(train)


def test_bic_prefers_the_true_number_of_components():
    train = gaussian_blobs(800, 4)
    bics = []
    for k in (1, 2, 3, 4):
        g = GaussianMixture(k, dim=2, learn="all")
        g.fit(train, method="em", max_iter=300, tol=1e-6, restarts=2)
        bics.append(g.bic(train))
    assert int(np.argmin(bics)) + 1 == 3


def test_save_load_round_trip(tmp_path):
    gm = notes_mixture(0.3)
    gm.fit(course_mixture(200, seed=0), steps=20, lr=1.0, optimizer="sgd", init="keep")
    gm.save(tmp_path / "gm.pt")
    back = GaussianMixture.load(tmp_path / "gm.pt")
    x = torch.linspace(-5, 5, 11, dtype=torch.float64)
    assert torch.equal(back.log_prob(x), gm.log_prob(x))
    full = GaussianMixture(2, dim=2, learn="all", concentration=[2.0, 3.0])
    full.fit(gaussian_blobs(100, 0), method="em", max_iter=5)
    full.save(tmp_path / "full.pt")
    again = GaussianMixture.load(tmp_path / "full.pt")
    assert torch.equal(again.covariances, full.covariances)
    assert torch.equal(again.concentration, full.concentration)
    # a loaded state is validated: a NaN mean is refused
    state = torch.load(tmp_path / "full.pt", weights_only=True)
    state["state_dict"]["loc"][0, 0] = math.nan
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN"):
        GaussianMixture.load(tmp_path / "nan.pt")


def test_deprecated_names_still_work_and_warn():
    x = course_mixture(200, seed=3)
    with pytest.warns(DeprecationWarning, match="concentration"):
        old = notes_mixture(prior=[3.0, 2.0])
    assert old.concentration.tolist() == [3.0, 2.0]
    new = notes_mixture(concentration=[3.0, 2.0])
    with pytest.warns(DeprecationWarning, match="max_iter"):
        old.fit(x, method="em", steps=50, tol=1e-12)
    new.fit(x, method="em", max_iter=50, tol=1e-12)
    assert torch.equal(old.weights, new.weights)
    with pytest.warns(DeprecationWarning, match="fit_result_"):
        assert old.history.losses[0] == -old.fit_result_.objective[0]


def test_graph_is_figura_2():
    gm = GaussianMixture(3, dim=2, learn="all")
    g = gm.graph()
    assert g.parents("z") == ("weights",) and g.parents("x") == ("z", "means", "covariances")
    assert g.node("z").discrete and g.node("z").role == "latent"
    assert g.node("x").role == "observed"
    assert g.plates["data"] == (["z", "x"], "N")
    # d-separation: x depends on the weights only through z
    assert g.d_separated("x", "weights", given=["z"]) and not g.d_separated("x", "weights")
    assert gm.n_parameters == 2 + 3 * 2 + 3 * 3
    assert notes_mixture().n_parameters == 1  # the notes' r
    assert notes_mixture(concentration=2.0).graph().node("weights").role == "latent"


def test_fewer_distinct_points_than_components_is_a_clear_error():
    x = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 2.0], [2.0, 2.0], [0.0, 1.0]])
    with pytest.raises(ConfigurationError, match=r"2 distinct point.*n_components = 3"):
        GaussianMixture(3, dim=2, learn="all").fit(x, method="em")
    with pytest.raises(ConfigurationError, match="1 distinct point"):
        GaussianMixture(2, learn="all").fit(np.ones(10), method="svi", steps=2)
    # the weights alone need no distinct points: the notes' model fits any data
    notes_mixture().fit(np.ones(10), method="em", max_iter=3)


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
        GaussianMixture(2, concentration=[1.0, -1.0])
    with pytest.raises(ConfigurationError, match="learn"):
        GaussianMixture(2, learn=("means",), concentration=2.0)
    with pytest.raises(ConfigurationError, match="n_components"):
        GaussianMixture(0)
    with pytest.raises(SizeLimitError, match="GaussianMixture"):
        GaussianMixture(10**9)
    with pytest.raises(SizeLimitError, match="sample"):
        GaussianMixture(2).sample(10**12)
    # a non-symmetric covariance is refused, not read through its lower triangle
    with pytest.raises(ConfigurationError, match=r"covariances\[1\] is not symmetric.*\(0, 1\)"):
        GaussianMixture(2, dim=2, covariances=[np.eye(2), [[2.0, 0.5], [0.0, 1.0]]])
    # complex numbers are refused, not cast to their real part
    with pytest.raises(ConfigurationError, match="complex"):
        GaussianMixture(2, means=np.array([0, 1 + 1j]))
    with pytest.raises(ConfigurationError, match="complex"):
        notes_mixture().fit(np.array([0.0, 1j]))
    gm = GaussianMixture(2, dim=2, learn="all")
    with pytest.raises(ShapeError, match=r"\(N, 2\)"):
        gm.log_prob(np.zeros((3, 3)))
    with pytest.raises(NonFiniteError, match=r"index \(1, 0\)"):
        gm.fit(np.array([[0.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(ConfigurationError, match="method"):
        gm.fit(np.zeros((4, 2)), method="gibbs")
    with pytest.raises(ConfigurationError, match="max_iter"):
        gm.fit(np.zeros((4, 2)), method="svi", max_iter=3)
