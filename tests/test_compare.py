"""compare_guides on models with a known exact posterior (notes 2.3; lecture: ELBO, KL)."""

from __future__ import annotations

import functools
import gc
import math
import random

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from common import assert_close
from pyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoNormal

import pyrobn
from pyrobn.errors import ConfigurationError, UnknownVariableError
from pyrobn.infer import compare_guides
from pyrobn.infer.compare import GridDensity, gaussian_kl, guide_factory, hdi
from pyrobn.infer.params import owned_params

# one worker runs the whole file, so the module-scoped comparison is computed once
pytestmark = pytest.mark.xdist_group("compare_guides")


def correlated_regression(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g, dtype=torch.float64)
    X[:, 1] = 0.95 * X[:, 0] + 0.31 * X[:, 1]  # feature correlation ~0.95
    y = X @ torch.tensor([1.0, -0.5], dtype=torch.float64)
    y = y + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


@pytest.fixture(scope="module")
def regression_comparison():
    X, y = correlated_regression()
    blr = pyrobn.BayesianLinearRegression(2, noise_scale=0.5, lam=1.0)
    exact = blr.posterior(X, y)
    guides = {
        "delta": "delta",
        "normal": "normal",
        "mvn": "AutoMultivariateNormal",
        "laplace": "laplace",
        "nuts": "nuts",
    }
    comparison = compare_guides(
        blr,
        guides,
        X,
        y,
        steps=1000,
        num_particles=16,
        lr=0.05,
        final_lr=0.001,
        num_samples=400,
        warmup_steps=200,
        reference={"theta": exact},
    )
    return comparison, blr, X, y, exact


def test_mvn_reaches_the_exact_posterior(regression_comparison):
    comparison, *_ = regression_comparison
    result = comparison.results["mvn"]
    assert result.kl_method["theta"] == "exact"
    assert result.kl["theta"] < 0.01


def test_autonormal_underestimates_correlated_sds(regression_comparison):
    comparison, _, _, _, exact = regression_comparison
    table = comparison.table.loc["normal"]
    # posterior correlation of the two coefficients is strongly negative
    cov = exact.covariance_matrix
    assert cov[0, 1] / (cov[0, 0] * cov[1, 1]).sqrt() < -0.8
    assert (table["sd_ratio"] < 0.6).all()
    # its own Gaussian is exact-to-read: sd^2 = 1 / precision diagonal (the mean-field optimum)
    _, q_cov = comparison.results["normal"].gaussian["theta"]
    optimum = 1 / torch.linalg.inv(cov).diagonal()
    torch.testing.assert_close(q_cov.diagonal().double(), optimum, rtol=0.15, atol=0)
    assert comparison.results["normal"].kl["theta"] > 10 * comparison.results["mvn"].kl["theta"]


def test_nuts_matches_moments_within_monte_carlo_error(regression_comparison):
    comparison, _, _, _, exact = regression_comparison
    idata = comparison.idata["nuts"]
    ess = az.ess(idata, var_names=["theta"])["theta"].values
    table = comparison.table.loc["nuts"]
    ref_sd = exact.covariance_matrix.diagonal().sqrt().numpy()
    mean_se = ref_sd / np.sqrt(ess)
    assert (np.abs(table["mean_error"].to_numpy()) < 4 * mean_se).all()
    sd_se = ref_sd / np.sqrt(2 * ess)
    assert (np.abs(table["sd"].to_numpy() - ref_sd) < 4 * sd_se).all()


def test_delta_lands_on_the_mode_and_laplace_is_exact_for_a_gaussian(regression_comparison):
    comparison, blr, X, y, exact = regression_comparison
    mode = blr.map(X, y)
    delta = comparison.results["delta"].draws["theta"]
    assert delta.shape == (400, 2)
    torch.testing.assert_close(delta[0].double(), mode, atol=1e-3, rtol=0)
    assert comparison.results["delta"].kl["theta"] == math.inf
    # Laplace: N(mode, H^-1) is the exact posterior of a Gaussian-linear model
    loc, cov = comparison.results["laplace"].gaussian["theta"]
    torch.testing.assert_close(loc.double(), mode, atol=1e-3, rtol=0)
    torch.testing.assert_close(cov.double(), exact.covariance_matrix, atol=1e-4, rtol=1e-3)
    # and its ELBO is then the log evidence (KL = 0), which bounds every other ELBO
    evidence = float(blr.log_evidence(X, y))
    assert abs(comparison.results["laplace"].elbo - evidence) < 0.05
    assert comparison.results["normal"].elbo < evidence


def test_inference_data_and_pointwise_log_likelihood(regression_comparison):
    comparison, _, X, y, _ = regression_comparison
    for name, idata in comparison.idata.items():
        assert idata.posterior["theta"].shape[-1] == 2, name
        log_lik = idata.log_likelihood["y"].values
        assert log_lik.shape[-1] == X.shape[0]
        draws = comparison.results[name].draws["theta"].double()
        direct = dist.Normal(draws @ X.T, 0.5).log_prob(y).numpy()
        np.testing.assert_allclose(log_lik.reshape(direct.shape), direct, atol=1e-8)
    loo = az.loo(comparison.idata["mvn"])
    assert np.isfinite(loo.elpd_loo)
    assert set(comparison.loo().index) == set(comparison.results)
    figure = comparison.plot_forest()
    assert figure.axes


def test_table_has_the_promised_columns(regression_comparison):
    comparison, *_ = regression_comparison
    columns = {"elbo", "wall_time", "mean", "sd", "hdi_low", "hdi_high", "kl", "mean_error"}
    assert columns <= set(comparison.table.columns)
    assert list(comparison.summary().index.get_level_values("guide")) == list(comparison.results)
    assert np.isnan(comparison.table.loc["nuts"]["elbo"]).all()


def mixture_weight_model(x):
    """The notes' mixture (eq. 50): r ~ Beta(2, 2), z ~ Bernoulli(r) enumerated."""
    r = pyro.sample("r", dist.Beta(x.new_tensor(2.0), x.new_tensor(2.0)))
    locs, scales = x.new_tensor([-1.0, 3.0]), x.new_tensor([1.0, 2.0])
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Bernoulli(r)).long()
        pyro.sample("x", dist.Normal(locs[z], scales[z]), obs=x)


def mixture_grid_posterior(x):
    grid = torch.linspace(1e-4, 1 - 1e-4, 4001, dtype=torch.float64)
    components = dist.Normal(x.new_tensor([-1.0, 3.0]), x.new_tensor([1.0, 2.0])).log_prob(
        x[:, None]
    )
    log_lik = torch.logaddexp(
        (1 - grid).log()[:, None] + components[:, 0], grid.log()[:, None] + components[:, 1]
    ).sum(-1)
    return GridDensity(grid, dist.Beta(2.0, 2.0).log_prob(grid) + log_lik), components


def test_discrete_sites_are_hidden_and_summed_out():
    x = pyrobn.datasets.course_mixture(150, seed=2, device="cpu")
    exact, components = mixture_grid_posterior(x)
    comparison = compare_guides(
        mixture_weight_model,
        {"normal": AutoNormal, "lowrank": functools.partial(AutoLowRankMultivariateNormal, rank=1)},
        x,
        steps=400,
        num_particles=4,
        lr=0.05,
        num_samples=300,
        reference={"r": exact},
    )
    for name in ("normal", "lowrank"):
        row = comparison.table.loc[(name, "r", "r")]
        assert abs(row["mean_error"]) < 0.01, name
        assert abs(row["sd_ratio"] - 1) < 0.2, name
        assert row["kl"] < 0.05, name
        # pointwise log p(x_n | r) = log((1 - r) p0(x_n) + r p1(x_n)), z summed out
        r = comparison.results[name].draws["r"].double()[:, None]
        direct = torch.logaddexp((1 - r).log() + components[:, 0], r.log() + components[:, 1])
        log_lik = comparison.idata[name].log_likelihood["x"].values.reshape(direct.shape)
        np.testing.assert_allclose(log_lik, direct.numpy(), atol=1e-8)
    with pytest.raises(ConfigurationError, match=r"discrete latent sites \['z'\]"):
        compare_guides(mixture_weight_model, {"normal": "normal"}, x, hide_discrete=False)


def test_hand_written_guide_and_factory_are_accepted():
    X, y = correlated_regression(n=20)
    blr = pyrobn.BayesianLinearRegression(2, noise_scale=0.5, lam=1.0)
    comparison = compare_guides(
        blr,
        {"hand": blr.guide, "factory": guide_factory(lambda model: AutoNormal(model))},
        X,
        y,
        steps=50,
        num_samples=20,
        elbo_particles=5,
    )
    assert comparison.results["hand"].method == "hand-written"
    assert comparison.results["factory"].method == "AutoNormal"


def test_bad_input_raises_pyrobn_errors():
    X, y = correlated_regression(n=20)
    blr = pyrobn.BayesianLinearRegression(2)
    with pytest.raises(ConfigurationError, match=r"'bogus'.*known names"):
        compare_guides(blr, {"b": "bogus"}, X, y)
    with pytest.raises(ConfigurationError, match="instance"):
        compare_guides(blr, {"n": AutoNormal(blr.model)}, X, y)
    with pytest.raises(ConfigurationError, match="empty"):
        compare_guides(blr, {}, X, y)
    with pytest.raises(ConfigurationError, match="steps"):
        compare_guides(blr, {"n": "normal"}, X, y, steps=0)
    with pytest.raises(UnknownVariableError, match="'beta'"):
        compare_guides(blr, {"n": "normal"}, X, y, steps=1, reference={"beta": blr.posterior(X, y)})
    with pytest.raises(pyrobn.errors.ShapeError):
        compare_guides(blr, {"n": "normal"}, X[:, :1], y, steps=1)


def test_hdi_matches_arviz():
    rng = np.random.default_rng(0)
    draws = np.stack([rng.normal(size=500), rng.gamma(2.0, size=500)], -1)
    with pytest.warns(DeprecationWarning, match="arviz.hdi"):
        ours = hdi(draws, 0.9)
    for j in range(2):
        np.testing.assert_allclose(ours[j], az.hdi(draws[:, j], hdi_prob=0.9), atol=0)


def test_table_hdi_is_arviz_hdi(regression_comparison):
    comparison, *_ = regression_comparison
    for name, result in comparison.results.items():
        draws = result.draws["theta"].double().numpy()
        rows = comparison.table.loc[name]
        for j in range(2):
            expected = az.hdi(draws[:, j], hdi_prob=0.94)
            np.testing.assert_allclose(
                rows[["hdi_low", "hdi_high"]].to_numpy()[j], expected, atol=0, err_msg=name
            )


def test_grid_density_moments_and_sampling():
    grid = torch.linspace(0, 1, 20_001, dtype=torch.float64)[1:-1]
    beta = torch.distributions.Beta(torch.tensor(3.0, dtype=torch.float64), 5.0)
    density = GridDensity(grid, beta.log_prob(grid))
    torch.testing.assert_close(density.mean, beta.mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(density.variance, beta.variance, atol=1e-6, rtol=0)
    points = torch.tensor([0.1, 0.37, 0.8], dtype=torch.float64)
    torch.testing.assert_close(density.log_prob(points), beta.log_prob(points), atol=1e-5, rtol=0)
    torch.manual_seed(0)
    draws = density.sample((20_000,))
    se = float(beta.stddev) / math.sqrt(20_000)
    assert abs(float(draws.mean() - beta.mean)) < 4 * se


def test_gaussian_kl_matches_torch():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 3, generator=g, dtype=torch.float64), torch.randn(3, 3, generator=g)
    cov_q, cov_p = a @ a.T + torch.eye(3), (b @ b.T).double() + torch.eye(3)
    m_q, m_p = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    expected = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(m_q, cov_q),
        torch.distributions.MultivariateNormal(m_p, cov_p),
    )
    with pytest.warns(DeprecationWarning, match="kl_divergence"):
        value = gaussian_kl(m_q, cov_q, m_p, cov_p)
    assert math.isclose(value, float(expected), rel_tol=1e-10)


def _exact_gaussian_kl(loc_q, cov_q, loc_p, cov_p) -> float:
    """KL(N(mq, Sq) || N(mp, Sp)) = 1/2 [tr(Sp^-1 Sq) + d^T Sp^-1 d - k + ln |Sp| / |Sq|],
    written out as an oracle for the table's KL (torch's registered formula)."""
    inv_p = torch.linalg.inv(cov_p)
    d = (loc_p - loc_q).unsqueeze(-1)
    return float(
        0.5
        * (
            torch.trace(inv_p @ cov_q)
            + (d.mT @ inv_p @ d).squeeze()
            - loc_q.numel()
            + torch.logdet(cov_p)
            - torch.logdet(cov_q)
        )
    )


def test_table_kl_is_the_gaussian_kl_of_the_guides_own_gaussian(regression_comparison):
    comparison, _, _, _, exact = regression_comparison
    for name in ("normal", "mvn", "laplace"):
        loc, cov = comparison.results[name].gaussian["theta"]
        expected = _exact_gaussian_kl(
            loc.double(), cov.double(), exact.mean, exact.covariance_matrix
        )
        assert_close(comparison.results[name].kl["theta"], expected, rtol=1e-8, atol=1e-10)


def test_importance_weights_bound_and_estimate_the_evidence(regression_comparison):
    """Pyro's importance weights: ELBO = mean log w <= log mean w (Jensen, on the same
    weights), and the Laplace guide, the exact posterior here, has constant weights equal
    to the log evidence."""
    comparison, blr, X, y, _ = regression_comparison
    evidence = float(blr.log_evidence(X, y))
    for name in ("normal", "mvn", "laplace"):
        result = comparison.results[name]
        assert result.elbo <= result.log_evidence_is + 1e-9, name
    laplace = comparison.results["laplace"]
    assert abs(laplace.log_evidence_is - evidence) < 1e-6
    # margin: |IS - log evidence| of AutoMultivariateNormal 0.0007-0.0074 over seeds 0-4, 1 and
    # 2 threads (and its KL to the exact posterior 0.0006-0.0055)
    assert abs(comparison.results["mvn"].log_evidence_is - evidence) < 0.05
    assert all(math.isfinite(comparison.results[n].pareto_k) for n in ("normal", "mvn"))
    assert math.isnan(comparison.results["delta"].log_evidence_is)
    assert math.isnan(comparison.results["nuts"].pareto_k)


def _noise_model(y):
    """A model with a parameter of its own (type-II maximum likelihood of the noise)."""
    scale = pyro.param("noise_of_the_user", torch.tensor(1.0), constraint=dist.constraints.positive)
    mu = pyro.sample("mu", dist.Normal(y.new_tensor(0.0), 10.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, scale), obs=y)


def test_a_comparison_touches_no_parameter_it_did_not_create():
    X, y = correlated_regression(n=20)
    blr = pyrobn.BayesianLinearRegression(2, noise_scale=0.5, lam=1.0)
    users = pyro.param("users_own", torch.tensor(7.0))
    # the name an AutoNormal gets by default: the comparison's AutoNormal must not use it
    theirs = pyro.param("AutoNormal.locs.theta", torch.tensor([3.0, 3.0]))
    hand_before = {n: p.detach().clone() for n, p in blr.named_parameters()}
    names_before = set(pyro.get_param_store().keys())
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())  # noqa: NPY002
    comparison = compare_guides(
        blr,
        {"normal": "normal", "mvn": "mvn", "hand": blr.guide, "laplace": "laplace"},
        X,
        y,
        steps=30,
        num_samples=20,
        elbo_particles=5,
    )
    assert pyro.param("users_own") is users and float(users) == 7.0
    assert pyro.param("AutoNormal.locs.theta") is theirs
    assert torch.equal(theirs, torch.tensor([3.0, 3.0]))
    for name, value in blr.named_parameters():  # the hand-written guide's, put back
        assert torch.equal(value, hand_before[name]), name
    assert random.getstate() == states[0]
    numpy_state = np.random.get_state()  # noqa: NPY002
    assert all(np.array_equal(a, b) for a, b in zip(numpy_state, states[1]))
    assert torch.equal(torch.get_rng_state(), states[2])
    prefixes = [comparison.results[n].prefix for n in ("normal", "mvn")]
    assert len(set(prefixes)) == 2 and all(owned_params(p) for p in prefixes)
    assert comparison.results["hand"].prefix is None
    del comparison
    gc.collect()
    assert set(pyro.get_param_store().keys()) == names_before  # the guides' went with them


def test_a_models_own_parameter_is_trained_per_guide_and_given_back():
    y = torch.randn(30, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    first = compare_guides(_noise_model, {"normal": "normal"}, y, steps=200, num_samples=20)
    assert "noise_of_the_user" not in pyro.get_param_store()  # created by it, removed
    users = pyro.param(
        "noise_of_the_user", torch.tensor(1.0), constraint=dist.constraints.positive
    ).unconstrained()
    second = compare_guides(_noise_model, {"normal": "normal"}, y, steps=200, num_samples=20)
    assert pyro.param("noise_of_the_user").unconstrained() is users and float(users) == 0.0
    # the same seed and the same starting values give the same run
    assert first.results["normal"].elbo == second.results["normal"].elbo
    assert torch.equal(first.results["normal"].draws["mu"], second.results["normal"].draws["mu"])
    del pyro.get_param_store()["noise_of_the_user"]


def test_the_elbo_plus_the_kl_is_the_log_evidence(regression_comparison):
    """The lecture's identity log p(x) = ELBO(q) + KL(q || p(theta | x)), for each Gaussian
    guide: the ELBO a Monte Carlo estimate (within 4 standard errors), the KL exact."""
    comparison, blr, X, y, _ = regression_comparison
    evidence = float(blr.log_evidence(X, y))
    for name in ("normal", "mvn", "laplace"):
        result = comparison.results[name]
        gap = abs(result.elbo + result.kl["theta"] - evidence)
        assert gap <= 4 * result.elbo_stderr + 1e-9, (name, gap, result.elbo_stderr)


def test_marginals_figure_names_a_bad_site_or_index(regression_comparison):
    from pyrobn.errors import OutOfSupportError
    from pyrobn.plots.compare import marginals

    comparison, *_ = regression_comparison
    with pytest.raises(UnknownVariableError, match="'beta'"):
        marginals(comparison, "beta")
    for index in (2, -1, True, 0.5):
        with pytest.raises(OutOfSupportError, match="index"):
            marginals(comparison, "theta", index=index)
    assert marginals(comparison, "theta", index=1).axes
