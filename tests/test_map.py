"""MAP through AutoDelta and weight-decay priors (notes 2.3.1, eq. 25-28; 2.4.1.3)."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Lasso

import pyrobn
from pyrobn.errors import ConfigurationError, ConvergenceWarning
from pyrobn.infer import map_estimate, weight_decay_prior
from pyrobn.infer.map import prior_init_values
from pyrobn.models.regression import lasso_map


def regression_data(n=80, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    X[:, 1] = 0.8 * X[:, 0] + 0.6 * X[:, 1]
    theta = torch.tensor([1.0, -0.7, 0.05], dtype=torch.float64)
    y = X @ theta + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return X.to(device), y.to(device)


def weight_decay_fit(X, y, weight_decay, steps=3000):
    """A plain torch.optim fit of the mean NLL (1/N) sum (y - x theta)^2 / 2s^2 (s = 0.5)."""
    theta = torch.zeros(X.shape[1], dtype=X.dtype, requires_grad=True)
    optim = torch.optim.SGD([theta], lr=0.2, momentum=0.9, weight_decay=weight_decay)
    for _ in range(steps):
        optim.zero_grad()
        loss = ((y - X @ theta) ** 2 / (2 * 0.5**2)).mean()
        loss.backward()
        optim.step()
    return theta.detach()


def test_normal_prior_map_is_ridge_and_weight_decay(device):
    X, y = regression_data(device=device)
    lam, s, n = 30.0, 0.5, X.shape[0]
    blr = pyrobn.BayesianLinearRegression(3, noise_scale=s, prior="normal", lam=lam).to(device)
    point = map_estimate(blr, X, y, steps=600, lr=0.1, final_lr=1e-5)["theta"]
    ridge = torch.linalg.solve(
        X.T @ X + s**2 * lam * torch.eye(3, dtype=X.dtype, device=device), X.T @ y
    )
    assert point.device == X.device
    torch.testing.assert_close(point, ridge, atol=1e-4, rtol=0)
    torch.testing.assert_close(pyrobn.mle.ridge(X, y, lam, s), ridge, atol=1e-10, rtol=0)
    # weight_decay = lam / N on the mean negative log-likelihood (docstring of pyrobn.infer.map)
    decayed = weight_decay_fit(X.cpu(), y.cpu(), weight_decay=lam / n)
    torch.testing.assert_close(decayed, ridge.cpu(), atol=1e-4, rtol=0)
    # the scaling matters: s^2 lam / N (right for the loss 0.5 * MSE) is wrong for this loss
    wrong = weight_decay_fit(X.cpu(), y.cpu(), weight_decay=s**2 * lam / n)
    assert (wrong - ridge.cpu()).abs().max() > 1e-2


def test_flat_prior_map_is_mle_is_pseudo_inverse():
    X, y = regression_data()
    blr = pyrobn.BayesianLinearRegression(3, noise_scale=0.5, prior="flat")
    point = map_estimate(blr, X, y, steps=600, lr=0.1, final_lr=1e-5)["theta"]
    pinv = torch.linalg.pinv(X) @ y
    torch.testing.assert_close(point, pinv, atol=1e-4, rtol=0)
    torch.testing.assert_close(blr.mle(X, y), pinv, atol=1e-10, rtol=0)
    torch.testing.assert_close(blr.map(X, y), pinv, atol=1e-10, rtol=0)


def test_laplace_prior_map_is_sklearn_lasso():
    X, y = regression_data()
    lam, s, n = 60.0, 0.5, X.shape[0]
    blr = pyrobn.BayesianLinearRegression(3, noise_scale=s, prior="laplace", lam=lam)
    point = map_estimate(blr, X, y, steps=600, lr=0.1, final_lr=1e-5)["theta"]
    alpha = s**2 * lam / n
    lasso = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=100_000)
    coef = torch.from_numpy(lasso.fit(X.numpy(), y.numpy()).coef_)
    assert (coef == 0).any(), "the chosen lam should zero a coefficient (a real LASSO case)"
    torch.testing.assert_close(point, coef, atol=1e-3, rtol=0)
    torch.testing.assert_close(blr.map(X, y), coef, atol=1e-6, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    lam=st.floats(0.5, 200.0),
    s=st.floats(0.2, 2.0),
    n=st.integers(10, 60),
)
def test_fista_lasso_matches_sklearn_random_cases(seed, lam, s, n):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.5, 0.0, -0.3, 0.1], dtype=torch.float64) + s * torch.randn(
        n, generator=g, dtype=torch.float64
    )
    lasso = Lasso(alpha=s**2 * lam / n, fit_intercept=False, tol=1e-14, max_iter=1_000_000)
    coef = lasso.fit(X.numpy(), y.numpy()).coef_
    np.testing.assert_allclose(lasso_map(X, y, lam, s).numpy(), coef, atol=1e-6)


def test_weight_decay_prior_on_a_plain_linear_module_gives_ridge():
    X, y = regression_data()
    lam, s = 30.0, 0.5
    torch.manual_seed(0)
    net = weight_decay_prior(torch.nn.Linear(3, 1, bias=False).double(), lam=lam)

    def model(X, y):
        mean = net(X).squeeze(-1)
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Normal(mean, s), obs=y)

    point = map_estimate(model, X, y, steps=600, lr=0.1, final_lr=1e-5)
    assert set(point.values) == {"weight"}
    torch.testing.assert_close(
        point["weight"].squeeze(0), pyrobn.mle.ridge(X, y, lam, s), atol=1e-4, rtol=0
    )
    # running the network at theta_MAP
    with torch.no_grad():
        fitted = point.condition(lambda: net(X))()
    torch.testing.assert_close(fitted.squeeze(-1), X @ point["weight"].squeeze(0))


@pytest.mark.parametrize("kind", ["normal", "laplace"])
def test_weight_decay_prior_makes_every_parameter_a_site_with_that_prior(kind):
    lam = 4.0
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    weight_decay_prior(net, lam=lam, kind=kind, exclude=lambda name: name == "2.bias")
    assert [name for name, _ in net.named_parameters()] == ["2.bias"]
    trace = pyro.poutine.trace(lambda: net(torch.zeros(5, 2))).get_trace()
    sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample"}
    assert set(sites) == {"0.weight", "0.bias", "2.weight"}
    for name, site in sites.items():
        value = site["value"]
        assert value.shape == before[name].shape
        if kind == "normal":
            expected = torch.distributions.Normal(0.0, lam**-0.5).log_prob(value).sum()
        else:
            expected = torch.distributions.Laplace(0.0, 1 / lam).log_prob(value).sum()
        torch.testing.assert_close(site["fn"].log_prob(value), expected)
    # the starting values are the module's former parameters, and follow .to(dtype)
    init = prior_init_values(net)
    for name in sites:
        torch.testing.assert_close(init[name], before[name])
    net.double()
    trace = pyro.poutine.trace(lambda: net(torch.zeros(5, 2, dtype=torch.float64))).get_trace()
    assert trace.nodes["0.weight"]["value"].dtype == torch.float64


def test_map_estimate_sums_out_discrete_sites():
    """MAP of the notes' mixture weight r (eq. 50) with z enumerated = the grid argmax."""
    x = pyrobn.datasets.course_mixture(300, seed=3, device="cpu")
    locs = torch.tensor([-1.0, 3.0], dtype=x.dtype)
    scales = torch.tensor([1.0, 2.0], dtype=x.dtype)

    def model(x):
        r = pyro.sample("r", dist.Beta(x.new_tensor(2.0), x.new_tensor(2.0)))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(r)).long()
            pyro.sample("x", dist.Normal(locs[z], scales[z]), obs=x)

    point = map_estimate(model, x, steps=400, lr=0.1, final_lr=1e-4, init={"r": x.new_tensor(0.5)})
    assert set(point.values) == {"r"}
    grid = torch.linspace(0.5, 0.99, 49_001, dtype=x.dtype)
    components = dist.Normal(locs, scales).log_prob(x[:, None])
    log_lik = torch.logaddexp(
        (1 - grid).log()[:, None] + components[:, 0], grid.log()[:, None] + components[:, 1]
    ).sum(-1)
    log_post = dist.Beta(2.0, 2.0).log_prob(grid) + log_lik
    # Adam on a stochastic-free but curved 1-D objective: 1e-3 is 1/40 of the posterior sd
    assert math.isclose(float(point["r"]), float(grid[log_post.argmax()]), abs_tol=1e-3)


@pytest.mark.parametrize("lam", [0.0, -1.0, math.nan, math.inf])
def test_non_positive_lam_is_refused(lam):
    with pytest.raises(ConfigurationError, match="lam"):
        weight_decay_prior(torch.nn.Linear(2, 1), lam=lam)
    with pytest.raises(ConfigurationError, match="lam"):
        pyrobn.BayesianLinearRegression(2, lam=lam)


def test_bad_options_are_refused():
    with pytest.raises(ConfigurationError, match="kind"):
        weight_decay_prior(torch.nn.Linear(2, 1), lam=1.0, kind="cauchy")
    with pytest.raises(ConfigurationError, match="Module"):
        weight_decay_prior("not a module", lam=1.0)
    X, y = regression_data()
    blr = pyrobn.BayesianLinearRegression(3)
    with pytest.raises(ConfigurationError, match="steps"):
        map_estimate(blr, X, y, steps=0)
    with pytest.raises(ConfigurationError, match="lr"):
        map_estimate(blr, X, y, lr=-0.1)


def _normal_mean_model(y: torch.Tensor) -> None:
    mu = pyro.sample("mu", dist.Normal(y.new_tensor(0.0), y.new_tensor(100.0)))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_map_converges_far_from_the_prior_and_says_so():
    y = torch.full((50,), 5.0, dtype=torch.float64)
    point = map_estimate(_normal_mean_model, y)
    exact = 50 * 5.0 / (50 + 1 / 100**2)  # conjugate posterior mode
    assert abs(float(point["mu"]) - exact) < 1e-6
    assert point.converged is True and point.gradient_norm < 1e-4


def test_map_warns_when_its_criterion_is_not_met():
    y = torch.full((50,), 5.0, dtype=torch.float64)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        point = map_estimate(_normal_mean_model, y, steps=5, polish=0)
    assert point.converged is False


def test_two_calls_keep_their_parameters_apart():
    y = torch.full((20,), 5.0, dtype=torch.float64)
    pyro.param("users_own", torch.tensor(7.0))
    first = map_estimate(_normal_mean_model, y, steps=50)
    value = first["mu"].clone()
    second = map_estimate(_normal_mean_model, 2 * y, steps=50)
    assert torch.equal(first["mu"], value)  # not overwritten in place
    assert abs(float(second["mu"]) - 10.0) < 1e-3
    assert float(pyro.param("users_own")) == 7.0
    # each started from the prior, not from the other's optimum
    assert second.history.losses[0] != first.history.losses[-1]
