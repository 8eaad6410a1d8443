"""Closed-form maximum-likelihood (and MAP) estimates worked out in the notes (2.4.1).

Each function takes data as a tensor/array and returns tensors on the data's device.
Complex numbers, strings and ragged lists are refused with a :mod:`pyrobn.errors` error.

>>> mu, cov = gaussian([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
>>> mu.tolist(), cov.tolist()
([1.0, 1.0], [[1.0, 0.0], [0.0, 1.0]])
"""

from __future__ import annotations

from typing import Any

import torch

from pyrobn.density import positive_number
from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.validation import check_finite, check_integers_in_range, to_real_tensor

__all__ = [
    "bernoulli",
    "gaussian",
    "gaussian_mean",
    "gaussian_variance",
    "linear_regression",
    "ridge",
]


def _as_data(x: Any, name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    t = to_real_tensor(x, name, dtype=dtype)
    if t.numel() == 0:
        raise ShapeError(f"{name} is empty")
    return check_finite(t, name)


def gaussian_mean(x: Any) -> torch.Tensor:
    """MLE of a Gaussian mean, mu = (1/K) sum_k x^k (eq. 34), over the first axis."""
    return _as_data(x, "x").mean(0)


def gaussian_variance(x: Any, mean: torch.Tensor | None = None) -> torch.Tensor:
    """MLE of a Gaussian variance, (1/K) sum_k (x^k - mu)^2 (the biased empirical variance)."""
    t = _as_data(x, "x")
    mu = t.mean(0) if mean is None else mean
    return ((t - mu) ** 2).mean(0)


def gaussian(x: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """MLE of a multivariate Gaussian N(x | mu, Sigma) with a full covariance (lecture:
    "Modelos simples", theta = {mu, Sigma}): for K points x^k in R^D (rows of ``x``),

        mu = (1/K) sum_k x^k,    Sigma = (1/K) sum_k (x^k - mu)(x^k - mu)^T,

    the stationary point of log p(D | mu, Sigma) = -(K/2) [D log 2 pi + log|Sigma|]
    - (1/2) sum_k (x^k - mu)^T Sigma^-1 (x^k - mu) (the biased sample covariance, eq. 34
    in every coordinate). A vector is read as K points in 1-D.

    Returns:
        (mu (D,), Sigma (D, D)), float64 on the data's device.

    Raises:
        ConfigurationError: Sigma is singular (the points lie on an affine subspace, for
            example K <= D): the likelihood is then unbounded and there is no MLE.
    """
    t = _as_data(x, "x")
    if t.dim() == 1:
        t = t.unsqueeze(-1)
    if t.dim() != 2:
        raise ShapeError(f"x must be a (K, D) matrix of K points, got shape {tuple(t.shape)}")
    mu = t.mean(0)
    centred = t - mu
    cov = centred.T @ centred / t.shape[0]
    _, info = torch.linalg.cholesky_ex(cov)
    if int(info) != 0:
        raise ConfigurationError(
            f"the {t.shape[0]} points in {t.shape[1]}-D lie on a lower-dimensional affine "
            "subspace: the MLE covariance is singular and the likelihood unbounded "
            "(use more points, or a diagonal or regularised covariance)"
        )
    return mu, cov


def bernoulli(x: Any) -> torch.Tensor:
    """MLE of a Bernoulli parameter, r = (1/K) sum_k x^k (eq. 37): the fraction of ones."""
    t = _as_data(x, "x")
    check_integers_in_range(t, 0, 2, "x (Bernoulli data)")
    return t.mean(0)


def _design(X: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    X_t = _as_data(X, "X")
    y_t = _as_data(y, "y", dtype=X_t.dtype).to(X_t.device)
    if X_t.dim() != 2:
        raise ShapeError(f"X must be a (K, D) matrix, got shape {tuple(X_t.shape)}")
    if y_t.dim() != 1 or y_t.shape[0] != X_t.shape[0]:
        raise ShapeError(
            f"y must be a vector of length K = {X_t.shape[0]} (rows of X), got {tuple(y_t.shape)}"
        )
    return X_t, y_t


def linear_regression(X: Any, y: Any) -> torch.Tensor:
    """MLE of y = theta^T x + eps, eps ~ N(0, s^2): theta = X^+ y (notes 2.4.1.3).

    ``X^+ = (X^T X)^-1 X^T`` is the Moore-Penrose pseudo-inverse (computed by a
    least-squares solve, which also handles rank-deficient X).
    """
    X_t, y_t = _design(X, y)
    return torch.linalg.lstsq(
        X_t, y_t.unsqueeze(-1), driver="gelsd" if X_t.device.type == "cpu" else None
    ).solution.squeeze(-1)


def ridge(X: Any, y: Any, lam: float, noise_scale: float = 1.0) -> torch.Tensor:
    """MAP of the linear model under theta ~ N(0, lam^-1 I) (notes 2.3.1.1, eq. 27).

    theta = (X^T X + s^2 lam I)^-1 X^T y, with s the noise scale: the ridge regressor.
    """
    lam = positive_number(lam, "lam")
    noise_scale = positive_number(noise_scale, "noise_scale")
    X_t, y_t = _design(X, y)
    d = X_t.shape[1]
    A = X_t.T @ X_t + noise_scale**2 * lam * torch.eye(d, dtype=X_t.dtype, device=X_t.device)
    return torch.linalg.solve(A, X_t.T @ y_t)
