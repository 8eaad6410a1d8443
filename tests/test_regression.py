"""BayesianLinearRegression: closed forms against independent computations (notes 2.4.1.3)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from common import assert_close

import pyrobn
from pyrobn.errors import ConfigurationError, NonFiniteError, ShapeError


def data(n=40, d=3, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    X[:, 1] = 0.9 * X[:, 0] + 0.44 * X[:, 1]
    y = X @ torch.linspace(-1, 1, d, dtype=torch.float64) + 0.5 * torch.randn(
        n, generator=g, dtype=torch.float64
    )
    return X.to(device), y.to(device)


def conditioned_gaussian(X, y, lam, s):
    """theta | y by Gaussian conditioning in data space (no D x D precision involved):
    cov(theta, y) = X^T / lam, cov(y) = s^2 I + X X^T / lam."""
    n = X.shape[0]
    cov_y = s**2 * torch.eye(n, dtype=X.dtype, device=X.device) + X @ X.T / lam
    gain = torch.linalg.solve(cov_y, X).T / lam  # (D, N)
    mean = gain @ y
    cov = torch.eye(X.shape[1], dtype=X.dtype, device=X.device) / lam - gain @ X / lam
    return mean, cov, cov_y


def test_posterior_matches_gaussian_conditioning(device):
    X, y = data(device=device)
    lam, s = 2.0, 0.5
    blr = pyrobn.BayesianLinearRegression(3, noise_scale=s, lam=lam).to(device)
    posterior = blr.posterior(X, y)
    mean, cov, cov_y = conditioned_gaussian(X, y, lam, s)
    assert posterior.mean.device == X.device
    assert_close(posterior.mean, mean, atol=1e-10, rtol=0)
    assert_close(posterior.covariance_matrix, cov, atol=1e-10, rtol=0)
    # the posterior mean is the MAP, i.e. ridge (eq. 27)
    assert_close(blr.map(X, y), mean, atol=1e-10, rtol=0)
    # the evidence: y ~ N(0, s^2 I + X X^T / lam)
    evidence = dist.MultivariateNormal(torch.zeros_like(y), covariance_matrix=cov_y).log_prob(y)
    assert_close(blr.log_evidence(X, y), evidence, atol=1e-9, rtol=0)


def test_predictive_matches_joint_conditioning():
    X, y = data()
    X_new, _ = data(n=5, seed=1)
    lam, s = 2.0, 0.5
    blr = pyrobn.BayesianLinearRegression(3, noise_scale=s, lam=lam)
    predictive = blr.predictive(X_new, X, y)
    # joint of (y, y*) under the prior, then condition y* on y
    both = torch.cat([X, X_new])
    joint = s**2 * torch.eye(both.shape[0], dtype=X.dtype) + both @ both.T / lam
    n = X.shape[0]
    gain = torch.linalg.solve(joint[:n, :n], joint[:n, n:]).T
    mean = gain @ y
    var = (joint[n:, n:] - gain @ joint[:n, n:]).diagonal()
    assert_close(predictive.mean, mean, atol=1e-10, rtol=0)
    assert_close(predictive.variance, var, atol=1e-10, rtol=0)


def test_flat_prior_posterior_and_estimators():
    X, y = data()
    s = 0.5
    blr = pyrobn.BayesianLinearRegression(3, noise_scale=s, prior="flat")
    pinv = torch.linalg.pinv(X) @ y
    assert_close(blr.mle(X, y), pinv, atol=1e-10, rtol=0)
    posterior = blr.posterior(X, y)
    assert_close(posterior.mean, pinv, atol=1e-10, rtol=0)
    assert_close(posterior.covariance_matrix, s**2 * torch.linalg.inv(X.T @ X), atol=1e-10, rtol=0)
    # the flat prior's log density is exactly 0 (MAP = MLE, eq. 28)
    trace = pyro.poutine.trace(blr.model).get_trace(X, y)
    assert float(trace.nodes["theta"]["fn"].log_prob(trace.nodes["theta"]["value"])) == 0.0


def test_model_log_joint_is_prior_plus_gaussian_likelihood():
    X, y = data()
    lam, s = 3.0, 0.7
    for prior, log_prior in [
        ("normal", lambda t: dist.Normal(torch.zeros_like(t), lam**-0.5).log_prob(t).sum()),
        ("laplace", lambda t: dist.Laplace(torch.zeros_like(t), 1 / lam).log_prob(t).sum()),
    ]:
        blr = pyrobn.BayesianLinearRegression(3, noise_scale=s, prior=prior, lam=lam)
        theta = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
        conditioned = pyro.poutine.condition(blr.model, data={"theta": theta})
        trace = pyro.poutine.trace(conditioned).get_trace(X, y)
        expected = log_prior(theta) + dist.Normal(X @ theta, s).log_prob(y).sum()
        assert_close(trace.log_prob_sum(), expected, atol=1e-10, rtol=0)


def test_model_broadcasts_a_batch_of_draws():
    X, y = data()
    blr = pyrobn.BayesianLinearRegression(3)
    draws = torch.randn(7, 1, 3, dtype=torch.float64)
    with pyro.plate("draws", 7, dim=-2):
        trace = pyro.poutine.trace(
            pyro.poutine.condition(blr.model, data={"theta": draws})
        ).get_trace(X, y)
    expected = dist.Normal((X * draws).sum(-1), 1.0).log_prob(y)
    assert_close(trace.nodes["y"]["fn"].log_prob(y), expected)


def test_guide_has_the_posterior_family_and_fit_moves_it_towards_the_posterior():
    X, y = data()
    blr = pyrobn.BayesianLinearRegression(3, noise_scale=0.5, lam=2.0)
    assert blr.fit(X, y, steps=300, optim=pyro.optim.Adam({"lr": 0.05})) is blr
    result = blr.fit_result_
    assert result.method == "svi" and result.objective_name == "elbo" and result.n_iter == 300
    exact = blr.posterior(X, y)
    assert (blr.loc.detach() - exact.mean).abs().max() < 0.1
    assert result.objective[-1] > result.objective[0]
    # lr= is the same run as the optimiser it names; minibatches go through batch_size
    again = pyrobn.BayesianLinearRegression(3, noise_scale=0.5, lam=2.0)
    again.fit(X, y, steps=300, lr=0.05)
    assert again.fit_result_.objective == result.objective
    mini = pyrobn.BayesianLinearRegression(3, noise_scale=0.5, lam=2.0)
    mini.fit(X, y, steps=5, batch_size=10)
    trace = pyro.poutine.trace(mini.model).get_trace(X, y, 10)
    assert trace.nodes["y"]["value"].shape == (10,)


def test_graph_parameters_and_the_old_minibatch_name():
    blr = pyrobn.BayesianLinearRegression(4, prior="laplace")
    g = blr.graph()
    assert set(g.parents("y")) == {"theta", "x", "s"} and g.node("theta").role == "latent"
    assert g.d_separated("theta", "x") and not g.d_separated("theta", "x", given=["y"])
    assert blr.n_parameters == 4
    X, y = data(d=4)
    with pytest.warns(DeprecationWarning, match="batch_size"):
        trace = pyro.poutine.trace(blr.model).get_trace(X, y, subsample_size=8)
    assert trace.nodes["y"]["value"].shape == (8,)


def test_save_load_round_trip(tmp_path):
    X, y = data()
    blr = pyrobn.BayesianLinearRegression(3, noise_scale=0.5, lam=2.0, prior="laplace")
    blr.fit(X, y, steps=5)
    path = tmp_path / "blr.pt"
    blr.save(path)
    loaded = pyrobn.BayesianLinearRegression.load(path)
    assert loaded.config == blr.config
    assert_close(loaded.loc, blr.loc, atol=0, rtol=0)
    assert_close(loaded.scale_tril, blr.scale_tril, atol=0, rtol=0)
    assert_close(loaded.map(X, y), blr.map(X, y), atol=0, rtol=0)


def test_bad_input_is_refused_with_the_fault_named():
    X, y = data()
    with pytest.raises(ConfigurationError, match="n_features"):
        pyrobn.BayesianLinearRegression(0)
    with pytest.raises(ConfigurationError, match="noise_scale"):
        pyrobn.BayesianLinearRegression(3, noise_scale=-1.0)
    with pytest.raises(ConfigurationError, match="prior"):
        pyrobn.BayesianLinearRegression(3, prior="horseshoe")
    with pytest.raises(ConfigurationError, match="lam"):
        pyrobn.BayesianLinearRegression(3, lam=0.0)
    blr = pyrobn.BayesianLinearRegression(3)
    with pytest.raises(ShapeError, match=r"\(N, 3\).*\(40, 2\)"):
        blr.posterior(X[:, :2], y)
    with pytest.raises(ShapeError, match=r"\(40,\).*\(39,\)"):
        blr.map(X, y[:-1])
    with pytest.raises(ShapeError, match=r"\(40,\).*\(40, 1\)"):
        blr.model(X, y[:, None])
    bad = y.clone()
    bad[4] = float("nan")
    with pytest.raises(NonFiniteError, match="index \\(4,\\)"):
        blr.mle(X, bad)
    with pytest.raises(ConfigurationError, match="complex"):
        blr.map(X.numpy() + 0j, y)
    with pytest.raises(ConfigurationError, match="Laplace"):
        pyrobn.BayesianLinearRegression(3, prior="laplace").posterior(X, y)
    singular = torch.cat([X[:, :1], X[:, :1], X[:, 2:]], dim=1)
    with pytest.raises(ConfigurationError, match="singular"):
        pyrobn.BayesianLinearRegression(3, prior="flat").posterior(singular, y)
