"""pyrobn.mle: the closed forms of the notes (2.4.1) and of the lecture (the full-covariance
Gaussian) against numpy, sklearn and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from common import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge

from pyrobn import mle
from pyrobn.errors import ConfigurationError, NonFiniteError, OutOfSupportError, ShapeError


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 200), st.integers(1, 4))
def test_gaussian_mle_is_the_stationary_point(seed, n, d):
    x = torch.as_tensor(np.random.default_rng(seed).normal(size=(n, d)) * 2 + 1)
    mu, var = mle.gaussian_mean(x), mle.gaussian_variance(x)
    np.testing.assert_allclose(mu.numpy(), x.numpy().mean(0), atol=1e-12)
    np.testing.assert_allclose(var.numpy(), x.numpy().var(0), atol=1e-12)  # ddof 0
    # d/dmu and d/dvar of the Gaussian log-likelihood vanish at the MLE
    m = mu.clone().requires_grad_()
    v = var.clone().requires_grad_()
    ll = torch.distributions.Normal(m, v.sqrt()).log_prob(x).sum()
    gm, gv = torch.autograd.grad(ll, (m, v))
    assert_close(gm, torch.zeros_like(gm), atol=1e-8 * n)
    assert_close(gv, torch.zeros_like(gv), atol=1e-8 * n)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(2, 60))
def test_full_covariance_gaussian_mle_is_the_maximiser(seed, d, extra):
    """mle.gaussian (lecture "Modelos simples", theta = {mu, Sigma}): the closed form equals
    the sample mean and the biased covariance, the gradient of log N(D | mu, Sigma) in
    (mu, Sigma) vanishes there, and random perturbations only lower the log-likelihood."""
    rng = np.random.default_rng(seed)
    n = d + extra
    mix = rng.normal(size=(d, d)) + 2 * np.eye(d)
    x = torch.as_tensor(rng.normal(size=(n, d)) @ mix + rng.normal(size=d))
    mu, cov = mle.gaussian(x)
    assert_close(mu, x.numpy().mean(0), atol=1e-12)
    assert_close(cov, np.cov(x.numpy().T, bias=True).reshape(d, d), atol=1e-10, rtol=1e-10)
    m = mu.clone().requires_grad_()
    s = cov.clone().requires_grad_()
    ll = torch.distributions.MultivariateNormal(m, covariance_matrix=s).log_prob(x).sum()
    gm, gs = torch.autograd.grad(ll, (m, s))
    scale = float(torch.linalg.matrix_norm(torch.linalg.inv(cov))) * n
    assert float(gm.abs().max()) < 1e-8 * scale and float(gs.abs().max()) < 1e-8 * scale

    def loglik(mean, covariance):
        return float(
            torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance)
            .log_prob(x)
            .sum()
        )

    best = loglik(mu, cov)
    for _ in range(5):
        e = torch.as_tensor(rng.normal(size=(d, d))) * 0.1
        shift = torch.as_tensor(rng.normal(size=d)) * 0.1
        assert loglik(mu + shift, cov) < best
        assert loglik(mu, cov + e @ e.T) < best
        shrunk = cov - 0.5 * torch.linalg.eigvalsh(cov)[0] * torch.eye(d, dtype=cov.dtype)
        assert loglik(mu, shrunk) < best


def test_full_covariance_needs_points_in_general_position():
    mu, cov = mle.gaussian([1.0, 2.0, 4.0])  # a vector: points in 1-D
    assert_close(mu, [7 / 3])
    assert_close(cov, [[np.var([1.0, 2.0, 4.0])]])
    with pytest.raises(ConfigurationError, match="singular"):
        mle.gaussian(np.tile([1.0, 2.0], (5, 1)))
    with pytest.raises(ConfigurationError, match="singular"):
        mle.gaussian(np.random.default_rng(0).normal(size=(2, 3)))  # K <= D
    with pytest.raises(ConfigurationError, match="complex"):
        mle.gaussian(np.ones((4, 2)) * 1j)
    with pytest.raises(ShapeError, match="matrix"):
        mle.gaussian(np.ones((2, 2, 2)))


def test_bernoulli_eq_37():
    x = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1])
    assert float(mle.bernoulli(x)) == pytest.approx(6 / 8)
    r = torch.linspace(0.01, 0.99, 981, dtype=torch.float64)
    ll = torch.distributions.Bernoulli(r.unsqueeze(-1)).log_prob(x.double()).sum(-1)
    assert float(r[ll.argmax()]) == pytest.approx(0.75, abs=1e-3)
    with pytest.raises(OutOfSupportError, match="index"):
        mle.bernoulli(torch.tensor([0, 1, 2]))


def test_linear_regression_is_the_pseudo_inverse():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=100)
    theta = mle.linear_regression(X, y).numpy()
    np.testing.assert_allclose(theta, np.linalg.pinv(X) @ y, atol=1e-10)
    # rank-deficient X: the minimum-norm least-squares solution, as pinv
    Xd = np.column_stack([X[:, 0], X[:, 0], X[:, 1]])
    np.testing.assert_allclose(
        mle.linear_regression(Xd, y).numpy(), np.linalg.pinv(Xd) @ y, atol=1e-8
    )


@pytest.mark.parametrize("lam,s", [(0.5, 1.0), (3.0, 0.2)])
def test_ridge_is_map_under_gaussian_prior(lam, s):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(60, 3)), rng.normal(size=60)
    theta = mle.ridge(X, y, lam, noise_scale=s).numpy()
    ref = Ridge(alpha=s**2 * lam, fit_intercept=False, solver="cholesky", tol=1e-12).fit(X, y)
    np.testing.assert_allclose(theta, ref.coef_, atol=1e-10)
    # gradient of the log posterior vanishes: -(1/s^2) X^T (X theta - y) - lam theta = 0
    grad = -(X.T @ (X @ theta - y)) / s**2 - lam * theta
    np.testing.assert_allclose(grad, 0, atol=1e-9)


def test_bad_input():
    with pytest.raises(NonFiniteError):
        mle.gaussian_mean([1.0, np.nan])
    with pytest.raises(ShapeError, match="empty"):
        mle.gaussian_variance([])
    with pytest.raises(ShapeError, match="length"):
        mle.linear_regression(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ShapeError, match="matrix"):
        mle.linear_regression(np.zeros(5), np.zeros(5))
    with pytest.raises(ConfigurationError, match="lam"):
        mle.ridge(np.zeros((5, 2)), np.zeros(5), lam=0.0)
    with pytest.raises(ConfigurationError, match="noise_scale"):
        mle.ridge(np.zeros((5, 2)), np.zeros(5), lam=1.0, noise_scale=-1.0)
