"""Bayesian linear regression (notes 2.4.1.3 with the priors of 2.3.1).

Model: theta ~ p(theta), y^k | x^k, theta ~ N(theta^T x^k, s^2), k = 1..N, with the prior

* ``"normal"``:  N(0, lam^-1 I)       MAP = ridge, (X^T X + s^2 lam I)^-1 X^T y (eq. 27);
* ``"laplace"``: Laplace(0, 1/lam)    MAP = LASSO at alpha = s^2 lam / N (scikit-learn);
* ``"flat"``:    p(theta) ∝ 1          MAP = MLE = X^+ y, the pseudo-inverse (eq. 28, 2.4.1.3).

With the Gaussian (or flat, X of full column rank) prior the posterior is Gaussian and
exact: precision A = X^T X / s^2 + lam I, mean m = A^-1 X^T y / s^2, covariance A^-1,
and the posterior predictive at x is N(m^T x, x^T A^-1 x + s^2).

>>> blr = BayesianLinearRegression(2, noise_scale=0.5, lam=2.0)
>>> X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
>>> y = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
>>> [round(v, 4) for v in blr.map(X, y).tolist()]      # (X^T X + s^2 lam I)^-1 X^T y
[0.6667, -0.6667]
>>> blr.graph().parents("y"), blr.n_parameters
(('theta', 'x', 's'), 2)
"""

from __future__ import annotations

import math
import time
import warnings
from typing import TYPE_CHECKING, Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroParam, pyro_method
from pyro.optim import Adam, PyroOptim

from pyrobn import mle
from pyrobn.density import positive_number
from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.infer.map import parameter_prior
from pyrobn.infer.result import FitResult
from pyrobn.infer.svi import fit_svi
from pyrobn.models.base import PyrobnModule
from pyrobn.validation import check_finite, check_int, to_real_tensor

if TYPE_CHECKING:
    from pyrobn.graph import ModelGraph

__all__ = ["PRIORS", "BayesianLinearRegression", "lasso_map"]

PRIORS = ("normal", "laplace", "flat")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def lasso_map(
    X: torch.Tensor,
    y: torch.Tensor,
    lam: float,
    noise_scale: float,
    *,
    tol: float = 1e-13,
    max_iter: int = 200_000,
) -> torch.Tensor:
    """argmin (1/2s^2) ||y - X theta||^2 + lam ||theta||_1 by FISTA (accelerated proximal gradient).

    The MAP of the linear model under the Laplace(0, 1/lam) prior; equal to scikit-learn's
    ``Lasso(alpha = s^2 lam / N, fit_intercept=False)``. Each step is a gradient step on the
    smooth part followed by soft thresholding (the l1 proximal map), step size 1/L with L
    the largest eigenvalue of X^T X / s^2. Iterates until the largest change < ``tol``.
    """
    gram = X.T @ X / noise_scale**2
    xty = X.T @ y / noise_scale**2
    lipschitz = float(torch.linalg.eigvalsh(gram)[-1])
    step = 1.0 / lipschitz
    theta = torch.zeros_like(xty)
    momentum_point, t = theta, 1.0
    for _ in range(max_iter):
        gradient = gram @ momentum_point - xty
        z = momentum_point - step * gradient
        updated = torch.sign(z) * torch.clamp(z.abs() - step * lam, min=0.0)
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        momentum_point = updated + ((t - 1.0) / t_next) * (updated - theta)
        change = float((updated - theta).abs().max())
        theta, t = updated, t_next
        if change < tol:
            break
    return theta


class BayesianLinearRegression(PyrobnModule):
    """y = theta^T x + eps, eps ~ N(0, s^2), with a Normal, Laplace or flat prior on theta.

    ``model(X, y)`` / ``guide(X, y)`` are a Pyro pair (site ``"theta"``, observed site ``"y"``
    in the plate ``"data"``); the guide is a full-covariance Gaussian N(loc, L L^T), the
    family of the exact posterior. Closed forms: :meth:`mle` (pseudo-inverse, eq. 28),
    :meth:`map` (ridge / LASSO / MLE), :meth:`posterior` and :meth:`predictive` (exact,
    Gaussian or flat prior), :meth:`log_evidence` (log p(y | X), Gaussian prior).

    Example::

        blr = pyrobn.BayesianLinearRegression(3, noise_scale=0.5, prior="normal", lam=2.0)
        blr.map(X, y)                      # (X^T X + s^2 lam I)^-1 X^T y
        blr.posterior(X, y).covariance_matrix
        blr.fit(X, y, steps=2000)          # the guide approaches the exact posterior
        blr.fit_result_.objective          # the ELBO per step
    """

    max_plate_nesting = 1

    def __init__(
        self,
        n_features: int,
        noise_scale: float = 1.0,
        prior: str = "normal",
        lam: float = 1.0,
        dtype: str = "float64",
    ) -> None:
        n_features = check_int(n_features, "n_features")
        noise_scale = positive_number(noise_scale, "noise_scale")
        if not isinstance(prior, str) or prior not in PRIORS:
            raise ConfigurationError(f"prior must be one of {PRIORS}, got {prior!r}")
        lam = positive_number(lam, "lam (prior precision)")
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise ConfigurationError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}")
        super().__init__(
            n_features=n_features, noise_scale=noise_scale, prior=prior, lam=lam, dtype=dtype
        )
        self.n_features = n_features
        self.noise_scale = float(noise_scale)
        self.prior = prior
        self.lam = float(lam)
        torch_dtype = _DTYPES[dtype]
        self.loc = PyroParam(torch.zeros(n_features, dtype=torch_dtype))
        self.scale_tril = PyroParam(
            0.1 * torch.eye(n_features, dtype=torch_dtype), constraint=constraints.lower_cholesky
        )

    # ------------------------------------------------------------------ data checks
    def _check_shapes(self, X: torch.Tensor, y: torch.Tensor | None) -> None:
        if X.dim() != 2 or X.shape[1] != self.n_features:
            raise ShapeError(
                f"X must have shape (N, {self.n_features}) (n_features = {self.n_features}), "
                f"got {tuple(X.shape)}"
            )
        if y is not None and (y.dim() != 1 or y.shape[0] != X.shape[0]):
            raise ShapeError(
                f"y must have shape ({X.shape[0]},) to match the {X.shape[0]} rows of X, "
                f"got {tuple(y.shape)}"
            )

    def data(self, X: Any, y: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``X`` (and ``y``) as checked tensors on the model's device and dtype."""
        dtype = self.loc.dtype
        X_t = check_finite(to_real_tensor(X, "X", dtype=dtype, device=self.device), "X")
        y_t = (
            None
            if y is None
            else check_finite(to_real_tensor(y, "y", dtype=dtype, device=X_t.device), "y")
        )
        self._check_shapes(X_t, y_t)
        return X_t, y_t

    # ------------------------------------------------------------------ model / guide
    def prior_distribution(self, X: torch.Tensor) -> dist.Distribution:
        """p(theta) on X's device and dtype.

        The flat prior p(theta) ∝ 1 is a masked N(0, I): its log density is exactly 0
        (so MAP = MLE, eq. 28), while draws (used only to initialise guides) stay finite.
        """
        reference = X.new_zeros(self.n_features)
        if self.prior == "flat":
            return dist.Normal(reference, 1.0).to_event(1).mask(False)
        return parameter_prior(reference, self.lam, self.prior)

    @pyro_method
    def model(
        self,
        X: torch.Tensor,
        y: torch.Tensor | None = None,
        batch_size: int | None = None,
        *,
        subsample_size: int | None = None,
    ) -> torch.Tensor:
        """theta ~ p(theta); y^k ~ N(theta^T x^k, s^2) in the plate ``"data"``
        (``batch_size`` rows a step when given; ``subsample_size`` is its old name)."""
        self._check_shapes(X, y)
        batch_size = _batch_alias(batch_size, subsample_size)
        theta = pyro.sample("theta", self.prior_distribution(X))
        with pyro.plate("data", X.shape[0], subsample_size=batch_size, dim=-1) as index:
            # (X * theta).sum(-1) also broadcasts a batch of draws, theta of shape (S, 1, D)
            mean = (X[index] * theta).sum(-1)
            observed = None if y is None else y[index]
            return pyro.sample("y", dist.Normal(mean, self.noise_scale), obs=observed)

    @pyro_method
    def guide(
        self,
        X: torch.Tensor,
        y: torch.Tensor | None = None,
        batch_size: int | None = None,
        *,
        subsample_size: int | None = None,
    ) -> torch.Tensor:
        """q(theta) = N(loc, L L^T), full covariance (the exact posterior's family)."""
        return pyro.sample("theta", dist.MultivariateNormal(self.loc, scale_tril=self.scale_tril))

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        steps: int = 2000,
        lr: float = 0.01,
        batch_size: int | None = None,
        optim: PyroOptim | None = None,
        seed: int | None = 0,
        progress: bool = False,
        **kwargs: Any,
    ) -> BayesianLinearRegression:
        """Fit the guide by SVI (:func:`pyrobn.infer.fit_svi`, Adam at ``lr`` unless ``optim``
        is given) on minibatches of ``batch_size`` rows; returns the model.

        The record is ``fit_result_`` (the ELBO per step). ``seed`` seeds the run without
        touching the caller's random streams.
        """
        if y is None:
            raise ConfigurationError("fit needs the targets y")
        X_t, y_t = self.data(X, y)
        lr = positive_number(lr, "lr")
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size")
        started = time.perf_counter()
        with self._fitting(seed):
            history = fit_svi(
                self.model,
                self.guide,
                X_t,
                y_t,
                batch_size,
                steps=steps,
                optim=optim if optim is not None else Adam({"lr": lr}),
                progress=progress,
                description=self._pyro_name,
                **kwargs,
            )
        return self._set_result(FitResult.from_history(history), started)

    # ------------------------------------------------------------------ structure
    def graph(self) -> ModelGraph:
        """The Bayesian network of the model (notes 2.4.1.3, 2.3.1): theta -> y <- x.

        theta (latent, prior N(0, 1/lam), Laplace or flat) and each row's x (observed)
        are the parents of y (observed) in the plate over the N rows; s is fixed.
        """
        from pyrobn.graph import GraphNode, ModelGraph

        prior = {"normal": "N(0, 1/λ)", "laplace": "Laplace(0, 1/λ)", "flat": "flat"}[self.prior]
        return ModelGraph(
            [
                GraphNode("theta", "latent", label=f"θ ~ {prior}"),
                GraphNode("s", "parameter", label="s"),
                GraphNode("x", "observed", label="x"),
                GraphNode("y", "observed", label="y"),
            ],
            [("theta", "y"), ("x", "y"), ("s", "y")],
            plates={"data": (["x", "y"], "N")},
            title="Bayesian linear regression",
        )

    @property
    def n_parameters(self) -> int:
        """The D regression weights theta (the noise scale s is fixed)."""
        return self.n_features

    # ------------------------------------------------------------------ closed forms
    def mle(self, X: Any, y: Any) -> torch.Tensor:
        """theta_MLE = X^+ y, the pseudo-inverse solution (notes 2.4.1.3, eq. 28)."""
        X_t, y_t = self.data(X, y)
        return mle.linear_regression(X_t, y_t)

    def map(self, X: Any, y: Any) -> torch.Tensor:
        """theta_MAP (eq. 25-26): ridge (Normal), LASSO by FISTA (Laplace), or the MLE (flat)."""
        X_t, y_t = self.data(X, y)
        if self.prior == "normal":
            return mle.ridge(X_t, y_t, self.lam, self.noise_scale)
        if self.prior == "laplace":
            return lasso_map(X_t, y_t, self.lam, self.noise_scale)
        return mle.linear_regression(X_t, y_t)

    def _precision(self, X: torch.Tensor) -> torch.Tensor:
        if self.prior == "laplace":
            raise ConfigurationError(
                "the posterior under the Laplace prior has no closed form; use "
                "pyrobn.infer.compare_guides (NUTS) or fit a guide"
            )
        precision = X.T @ X / self.noise_scale**2
        if self.prior == "normal":
            precision = precision + self.lam * torch.eye(
                self.n_features, dtype=X.dtype, device=X.device
            )
        elif torch.linalg.matrix_rank(precision) < self.n_features:
            raise ConfigurationError(
                "the flat-prior posterior is improper: X^T X is singular "
                f"(rank {int(torch.linalg.matrix_rank(precision))} < {self.n_features})"
            )
        return precision

    def posterior(self, X: Any, y: Any) -> dist.MultivariateNormal:
        """The exact posterior N(m, A^-1), A = X^T X / s^2 + lam I, m = A^-1 X^T y / s^2."""
        X_t, y_t = self.data(X, y)
        precision = self._precision(X_t)
        mean = torch.linalg.solve(precision, X_t.T @ y_t) / self.noise_scale**2
        return dist.MultivariateNormal(mean, precision_matrix=precision)

    def predictive(self, X_new: Any, X: Any, y: Any) -> dist.Normal:
        """p(y* | x*, D) = N(m^T x*, x*^T A^-1 x* + s^2) for every row x* of ``X_new``."""
        posterior = self.posterior(X, y)
        X_new_t, _ = self.data(X_new)
        mean = X_new_t @ posterior.mean
        variance = ((X_new_t @ posterior.covariance_matrix) * X_new_t).sum(-1)
        return dist.Normal(mean, (variance + self.noise_scale**2).sqrt())

    def log_evidence(self, X: Any, y: Any) -> torch.Tensor:
        """log p(y | X) = log N(y; 0, s^2 I + X X^T / lam), computed through the D x D precision.

        = -N/2 log(2 pi s^2) + D/2 log lam - 1/2 log|A| - ||y - X m||^2 / 2s^2 - lam ||m||^2 / 2.
        """
        if self.prior != "normal":
            raise ConfigurationError(
                f"log_evidence is defined for the proper Gaussian prior, not {self.prior!r}"
            )
        X_t, y_t = self.data(X, y)
        precision = self._precision(X_t)
        mean = torch.linalg.solve(precision, X_t.T @ y_t) / self.noise_scale**2
        n = X_t.shape[0]
        residual = y_t - X_t @ mean
        return (
            -0.5 * n * math.log(2 * math.pi * self.noise_scale**2)
            + 0.5 * self.n_features * math.log(self.lam)
            - 0.5 * torch.linalg.slogdet(precision).logabsdet
            - 0.5 * (residual @ residual) / self.noise_scale**2
            - 0.5 * self.lam * (mean @ mean)
        )


def _batch_alias(batch_size: int | None, subsample_size: int | None) -> int | None:
    """``batch_size``, or the deprecated ``subsample_size`` (with a DeprecationWarning)."""
    if subsample_size is None:
        return batch_size
    warnings.warn(
        "subsample_size is deprecated: use batch_size (the package's one name for a minibatch)",
        DeprecationWarning,
        stacklevel=3,
    )
    if batch_size is not None and batch_size != subsample_size:
        raise ConfigurationError("give batch_size or subsample_size (deprecated), not both")
    return subsample_size
