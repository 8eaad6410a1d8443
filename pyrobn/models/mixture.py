"""Gaussian mixtures: p(x) = sum_k p(z = k) N(x | mu_k, Sigma_k) (notes 2.1.3.1 eq. 9, 2.4.4).

As a Bayesian network (Figura 2) the mixture is z -> x: a latent class z ~ Categorical(w)
and x | z ~ N(mu_z, Sigma_z). The latent component z is a discrete site enumerated exactly
by Pyro (``TraceEnum_ELBO``, ``infer={"enumerate": "parallel"}``), so the ELBO the model
and its (empty) guide give is the exact log-likelihood. The notes' worked example (2.4.4,
eq. 49-50) is the case with fixed Gaussians N(-1, 1), N(3, 2^2) and a learned prior weight
r = sigmoid(theta) = p(z = 1), found by gradient ascent on the mean log-likelihood
(1/|D|) log p_theta(D) (the notes' ``Mixture`` / ``PriorEstimator`` / ``train_loop``,
Figura 18). Fitting goes through the package's two loops: expectation-maximisation through
:func:`pyrobn.infer.em.run_em` (``max_iter``, ``tol``, ``restarts``) and SVI through
:func:`pyrobn.infer.fit_svi` (``steps``, ``lr``, ``batch_size``).

>>> from pyrobn.datasets import course_mixture
>>> x = course_mixture(1000, seed=0, device="cpu")
>>> r0 = 1 / (1 + math.exp(-0.5))        # the notes' PriorEstimator starts at logit 0.5
>>> gm = GaussianMixture(2, means=[-1.0, 3.0], scales=[1.0, 2.0], weights=[1 - r0, r0])
>>> gm = gm.fit(x, steps=500, lr=1.0, optimizer="sgd", init="keep")   # the notes' train_loop
>>> round(float(gm.weights[1]), 4)      # the exact maximiser of the mean log-likelihood
0.8108
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta, init_to_value
from pyro.ops.indexing import Vindex

from pyrobn.density import as_points, positive_number
from pyrobn.errors import ConfigurationError, NonFiniteError, ShapeError
from pyrobn.infer.em import run_em
from pyrobn.infer.params import forget_params
from pyrobn.infer.result import FitResult
from pyrobn.infer.svi import History, fit_svi
from pyrobn.models.base import PyrobnModule
from pyrobn.random import generator
from pyrobn.validation import (
    check_allocation,
    check_distribution,
    check_int,
    check_positive,
    to_real_tensor,
)

if TYPE_CHECKING:
    from pyrobn.graph import ModelGraph

__all__ = ["GaussianMixture", "component_log_probs"]

_PARTS = ("weights", "means", "scales")
_F64 = torch.float64


def _tril_to_unconstrained(tril: torch.Tensor) -> torch.Tensor:
    """Inverse of the lower-Cholesky transform: strict lower part kept, log of the diagonal."""
    return tril.tril(-1) + torch.diag_embed(tril.diagonal(dim1=-2, dim2=-1).log())


def _unconstrained_to_tril(u: torch.Tensor) -> torch.Tensor:
    """L = strict_lower(u) + diag(exp(diag u)): a valid Cholesky factor for any u."""
    return u.tril(-1) + torch.diag_embed(u.diagonal(dim1=-2, dim2=-1).exp())


def _parse_learn(learn: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(learn, str):
        learn = _PARTS if learn == "all" else (learn,)
    try:
        parts = tuple(learn)
    except TypeError:
        raise ConfigurationError(
            f"learn must be 'all' or a subset of {_PARTS}, got {learn!r}"
        ) from None
    unknown = [p for p in parts if p not in _PARTS]
    if unknown:
        raise ConfigurationError(
            f"learn must be 'all' or a subset of {_PARTS}; unknown part(s) {unknown}"
        )
    return tuple(p for p in _PARTS if p in parts)


def _real(value: Any, name: str) -> torch.Tensor:
    """A user-given initial value as a finite float64 tensor (complex and strings refused)."""
    t = to_real_tensor(value, name, dtype=_F64, device="cpu")
    if not bool(torch.isfinite(t).all()):
        raise NonFiniteError(f"{name} holds NaN or inf: {t.tolist()}")
    return t


def component_log_probs(
    x: torch.Tensor, loc: torch.Tensor, scale_tril: torch.Tensor
) -> torch.Tensor:
    """log N(x_n | mu_k, L_k L_k^T) for x (N, D), loc (K, D), scale_tril (K, D, D): (N, K).

    The same density as ``torch.distributions.MultivariateNormal(loc, scale_tril=L)``,
    written as one batched triangular solve over the K components: torch's
    ``log_prob`` broadcasts x against every component and solves N K systems, several
    times slower for the N x K table EM needs at every iteration.

    >>> x = torch.zeros(1, 1, dtype=torch.float64)
    >>> round(float(component_log_probs(x, x, torch.ones(1, 1, 1, dtype=torch.float64))), 4)
    -0.9189
    """
    d = x.shape[-1]
    diff = x.unsqueeze(-2) - loc  # (N, K, D)
    # Solve L_k y = diff_k for every k at once: (K, D, D) against (K, D, N).
    y = torch.linalg.solve_triangular(scale_tril, diff.permute(1, 2, 0), upper=False)
    maha = (y * y).sum(-2).T  # (N, K)
    half_log_det = scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * maha - half_log_det - 0.5 * d * math.log(2 * math.pi)


class GaussianMixture(PyrobnModule):
    """p(x) = sum_k w_k N(x | mu_k, Sigma_k), with z ~ Categorical(w) enumerated exactly.

    Args:
        n_components: K.
        dim: D, the dimension of x.
        learn: what training changes: ``("weights",)`` (the notes' example: fixed
            Gaussians, learned prior), any subset of ``("weights", "means", "scales")``,
            or ``"all"``. The rest stays at its initial value (a buffer).
        concentration: ``None`` for maximum likelihood, or a Dirichlet concentration alpha
            (a number or K numbers, all > 0) for MAP of the weights, p(w) = Dir(w | alpha):
            MAP adds alpha_k - 1 pseudo-counts to component k (alpha = 1 is flat, so MAP =
            MLE), through an ``AutoDelta`` guide (SVI) or in closed form (EM). Needs
            ``"weights"`` in ``learn``. ``prior=`` is its deprecated old name.
        weights, means, scales, covariances: initial (or fixed) values: weights (K,)
            a distribution; means (K, D) (a vector (K,) when D = 1); scales (K,) or
            (K, D) standard deviations (diagonal Sigma_k); or covariances (K, D, D),
            symmetric positive definite. Defaults: uniform weights, means 0, unit scales
            (``fit`` re-initialises the learned ones from the data when ``init="data"``).

    The weights are parameterised as w = softmax(0, theta_1, ..., theta_{K-1}); for K = 2
    that is r = w_1 = sigmoid(theta_1), the notes' ``PriorEstimator``.

    Raises:
        ConfigurationError, ShapeError, InvalidDistributionError, NonFiniteError: bad
            sizes or initial values (a non-symmetric or indefinite covariance, complex
            numbers, weights that are no distribution), naming the argument.
        SizeLimitError: K and D whose parameters would pass the memory budget.
    """

    max_plate_nesting = 1

    def __init__(
        self,
        n_components: int,
        dim: int = 1,
        learn: str | Sequence[str] = ("weights",),
        concentration: float | Sequence[float] | None = None,
        *,
        weights: Any = None,
        means: Any = None,
        scales: Any = None,
        covariances: Any = None,
        prior: float | Sequence[float] | None = None,
    ) -> None:
        k = check_int(n_components, "n_components")
        d = check_int(dim, "dim")
        check_allocation(k * (d * d + d + 1) * 3, _F64, f"GaussianMixture({k}, dim={d})")
        parts = _parse_learn(learn)
        if prior is not None:
            warnings.warn(
                "GaussianMixture(prior=...) is deprecated: the Dirichlet concentration is "
                "called concentration (same meaning: MAP adds alpha - 1 pseudo-counts)",
                DeprecationWarning,
                stacklevel=2,
            )
            if concentration is not None:
                raise ConfigurationError("give concentration or prior (deprecated), not both")
            concentration = prior
        conc_list = self._check_concentration(concentration, k, parts)
        w = torch.full((k,), 1.0 / k, dtype=_F64) if weights is None else _real(weights, "weights")
        if w.shape != (k,):
            raise ShapeError(f"weights must have shape ({k},), got {tuple(w.shape)}")
        check_distribution(w, "weights")
        if bool((w <= 0).any()):
            raise ConfigurationError(f"initial weights must be > 0, got {w.tolist()}")
        mu = torch.zeros(k, d, dtype=_F64) if means is None else _real(means, "means")
        if mu.dim() == 1 and d == 1:
            mu = mu.unsqueeze(-1)
        if mu.shape != (k, d):
            raise ShapeError(f"means must have shape ({k}, {d}), got {tuple(mu.shape)}")
        tril = self._initial_tril(k, d, scales, covariances)
        plain = lambda v, name: None if v is None else _real(v, name).tolist()  # noqa: E731
        super().__init__(
            n_components=k,
            dim=d,
            learn=list(parts),
            concentration=conc_list,
            weights=plain(weights, "weights"),
            means=plain(means, "means"),
            scales=plain(scales, "scales"),
            covariances=plain(covariances, "covariances"),
        )
        self.n_components, self.dim, self.learn = k, d, parts
        self._set("weight_logits", (w.log() - w[0].log())[1:], "weights" in parts)
        self._set("loc", mu, "means" in parts)
        self._set("tril_raw", _tril_to_unconstrained(tril), "scales" in parts)
        self.concentration: torch.Tensor | None
        if conc_list is not None:
            self.register_buffer("concentration", torch.tensor(conc_list, dtype=_F64))
        else:
            self.concentration = None
        self.__dict__["_map_guide"] = None

    @staticmethod
    def _check_concentration(
        concentration: Any, k: int, parts: tuple[str, ...]
    ) -> list[float] | None:
        if concentration is None:
            return None
        if isinstance(concentration, bool):
            raise ConfigurationError(f"concentration must be positive numbers, got {concentration}")
        if isinstance(concentration, numbers.Real):
            alpha = torch.tensor(float(concentration), dtype=_F64)
        else:
            alpha = to_real_tensor(concentration, "concentration", dtype=_F64, device="cpu")
        if alpha.dim() > 1 or (alpha.dim() == 1 and alpha.numel() != k):
            raise ShapeError(
                f"concentration (Dirichlet alpha) must be a number or {k} numbers, "
                f"got shape {tuple(alpha.shape)}"
            )
        check_positive(alpha, "concentration (Dirichlet alpha)")
        if "weights" not in parts:
            raise ConfigurationError(
                "a concentration is a prior on the weights: add 'weights' to learn"
            )
        return alpha.expand(k).tolist()

    @staticmethod
    def _initial_tril(k: int, d: int, scales: Any, covariances: Any) -> torch.Tensor:
        if scales is not None and covariances is not None:
            raise ConfigurationError("give scales or covariances, not both")
        if covariances is not None:
            cov = _real(covariances, "covariances")
            if cov.shape != (k, d, d):
                raise ShapeError(
                    f"covariances must have shape ({k}, {d}, {d}), got {tuple(cov.shape)}"
                )
            asym = (cov - cov.transpose(-1, -2)).abs()
            limit = 1e-12 * cov.abs().amax(dim=(-1, -2)).clamp_min(1.0)
            bad = asym > limit.view(k, 1, 1)
            if bool(bad.any()):
                c, i, j = (int(v) for v in bad.nonzero()[0])
                raise ConfigurationError(
                    f"covariances[{c}] is not symmetric: entry ({i}, {j}) is "
                    f"{float(cov[c, i, j])} but ({j}, {i}) is {float(cov[c, j, i])}"
                )
            tril, info = torch.linalg.cholesky_ex(cov)
            if bool((info != 0).any()):
                bad_k = int((info != 0).nonzero()[0])
                raise ConfigurationError(f"covariances[{bad_k}] is not positive definite")
            return tril
        s = torch.ones(k, d, dtype=_F64) if scales is None else _real(scales, "scales")
        if s.dim() == 1 and s.shape[0] == k:
            s = s.unsqueeze(-1).expand(k, d)
        if s.shape != (k, d):
            raise ShapeError(f"scales must have shape ({k},) or ({k}, {d}), got {tuple(s.shape)}")
        check_positive(s, "scales")
        return torch.diag_embed(s)

    def _set(self, name: str, value: torch.Tensor, learned: bool) -> None:
        if learned:
            setattr(self, name, torch.nn.Parameter(value.clone()))
        else:
            self.register_buffer(name, value.clone())

    # ----------------------------------------------------------------- parameters
    @property
    def weights(self) -> torch.Tensor:
        """w = softmax(0, theta): p(z = k), shape (K,)."""
        logits = self.weight_logits
        return self._public(torch.softmax(torch.cat([logits.new_zeros(1), logits]), -1))

    def _public(self, value: torch.Tensor) -> torch.Tensor:
        """Inside the model (Pyro context) keep the graph; outside, hand out detached values."""
        return value if self._pyro_context.active else value.detach()

    @property
    def means(self) -> torch.Tensor:
        """mu_k, shape (K, D)."""
        return self._public(self.loc)

    @property
    def scale_tril(self) -> torch.Tensor:
        """Cholesky factors L_k of Sigma_k = L_k L_k^T, shape (K, D, D)."""
        return self._public(_unconstrained_to_tril(self.tril_raw))

    @property
    def covariances(self) -> torch.Tensor:
        """Sigma_k, shape (K, D, D)."""
        tril = self.scale_tril
        return tril @ tril.transpose(-1, -2)

    def _state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def _assign(self, weights=None, loc=None, tril=None) -> None:  # type: ignore[no-untyped-def]
        """Write new values (constrained space) into the learned tensors, in place."""
        with torch.no_grad():
            if weights is not None:
                logw = weights.clamp_min(1e-300).log()
                self.weight_logits.copy_((logw - logw[0])[1:])
            if loc is not None:
                self.loc.copy_(loc)
            if tril is not None:
                self.tril_raw.copy_(_tril_to_unconstrained(tril))

    def _check_state(self) -> None:
        """After a load: every tensor finite, the concentration positive."""
        for name, tensor in [*self.named_parameters(), *self.named_buffers()]:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise NonFiniteError(f"{name!r} holds NaN or inf")
        if self.concentration is not None:
            check_positive(self.concentration, "concentration")

    # ---------------------------------------------------------------- model/guide
    def _data(self, x: Any, name: str = "x") -> torch.Tensor:
        return as_points(x, name, dim=self.dim, dtype=self.loc.dtype, device=self.loc.device)

    def model(self, x: torch.Tensor, batch_size: int | None = None) -> None:
        """z_n ~ Categorical(w), x_n | z_n ~ N(mu_z, Sigma_z), scaled by 1/N (mean log-lik).

        With a concentration, w ~ Dirichlet(alpha) is a sample site (MAP through
        ``AutoDelta``). The 1/N scale makes the loss the notes' normalised NLL
        -(1/|D|) log p(D) (2.4.4).
        """
        n = x.shape[0]
        with poutine.scale(scale=1.0 / n):
            if self.concentration is not None:
                w = pyro.sample("weights", dist.Dirichlet(self.concentration))
            else:
                w = self.weights
            loc, tril = self.loc, self.scale_tril
            with pyro.plate("data", n, subsample_size=batch_size, dim=-1) as idx:
                z = pyro.sample("z", dist.Categorical(w), infer={"enumerate": "parallel"})
                # tril is a Cholesky factor by construction (exp on its diagonal): torch's
                # argument check (a min and a tril over every factor) would be the most
                # expensive part of an SVI step
                component = dist.MultivariateNormal(
                    Vindex(loc)[z], scale_tril=Vindex(tril)[z], validate_args=False
                )
                pyro.sample("x", component, obs=x[idx])

    def guide(self, x: torch.Tensor, batch_size: int | None = None) -> None:
        """Empty for maximum likelihood (z is summed out exactly); ``AutoDelta`` for MAP."""
        if self.concentration is not None:
            self.map_guide(x, batch_size)

    @property
    def map_guide(self) -> AutoDelta:
        """The ``AutoDelta`` guide on the weights (MAP), its parameters named under this
        model (``self._guide_prefix("map")``) and released with it."""
        if self._map_guide is None:
            guide = AutoDelta(
                poutine.block(self.model, expose=["weights"]),
                init_loc_fn=init_to_value(values={"weights": self.weights.detach()}),
            )
            guide._pyro_name = self._guide_prefix("map")
            self.__dict__["_map_guide"] = guide  # not a submodule: state_dict stays fixed
        return self._map_guide

    def _reset_map_guide(self) -> None:
        """Forget the AutoDelta guide and its parameters (only those) in Pyro's param store."""
        forget_params(self._guide_prefix("map"))
        self.__dict__["_map_guide"] = None

    # -------------------------------------------------------------------- queries
    def joint_log_probs(self, x: Any) -> torch.Tensor:
        """log p(x_n, z = k) = log w_k + log N(x_n | mu_k, Sigma_k), shape (N, K)."""
        xt = self._data(x)
        check_allocation(
            xt.shape[0] * self.n_components * (self.dim + 2), xt.dtype, "the N x K x D table"
        )
        with torch.no_grad():
            return self.weights.log() + component_log_probs(xt, self.loc, self.scale_tril)

    def log_prob(self, x: Any) -> torch.Tensor:
        """log p(x_n) = logsumexp_k [log w_k + log N(x_n | mu_k, Sigma_k)] (eq. 9, 49), (N,)."""
        return torch.logsumexp(self.joint_log_probs(x), -1)

    def score(self, x: Any) -> float:
        """Mean log-likelihood (1/N) sum_n log p(x_n) = -CE(p_D, p_theta) (eq. 45)."""
        return float(self.log_prob(x).mean())

    def predict_proba(self, x: Any) -> torch.Tensor:
        """p(z = k | x_n) = w_k N(x_n | k) / p(x_n) (Bayes' rule), shape (N, K)."""
        return torch.softmax(self.joint_log_probs(x), -1)

    def predict(self, x: Any) -> torch.Tensor:
        """The most probable component argmax_k p(z = k | x_n), shape (N,)."""
        return self.joint_log_probs(x).argmax(-1)

    def responsibilities(self, x: Any) -> torch.Tensor:
        """Deprecated name of :meth:`predict_proba`."""
        warnings.warn(
            "responsibilities is deprecated: use predict_proba (the package's one name for "
            "the posterior of a discrete latent)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.predict_proba(x)

    def sample(
        self, n: int, seed: int | None = None, *, return_labels: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling: z ~ Categorical(w), then x ~ N(mu_z, Sigma_z); x (n, D).

        ``seed`` seeds a local generator: the caller's random streams are not touched.
        """
        n = check_int(n, "n")
        d = self.dim
        check_allocation(n * (d * d + 2 * d + 1), self.loc.dtype, f"sample({n})")
        dev = self.loc.device
        g = generator(seed, dev)
        with torch.no_grad():
            z = torch.multinomial(self.weights, n, replacement=True, generator=g)
            eps = torch.randn(n, d, 1, generator=g, dtype=self.loc.dtype, device=dev)
            x = self.loc[z] + (self.scale_tril[z] @ eps).squeeze(-1)
        return (x, z) if return_labels else x

    @property
    def n_parameters(self) -> int:
        """Free parameters learned: K - 1 weights, K D means, K D (D + 1) / 2 covariance
        entries (for the parts in ``learn``)."""
        k, d = self.n_components, self.dim
        sizes = {"weights": k - 1, "means": k * d, "scales": k * d * (d + 1) // 2}
        return sum(sizes[p] for p in self.learn)

    def bic(self, x: Any) -> float:
        """BIC = -2 log p(D) + (free parameters) log N (lower is better)."""
        xt = self._data(x)
        return float(-2.0 * self.log_prob(xt).sum() + self.n_parameters * math.log(len(xt)))

    def graph(self) -> ModelGraph:
        """The mixture as a Bayesian network (notes 2.1.3.1, Figura 2): z -> x.

        z (latent, discrete) and x (observed) repeat over the N data rows; the weights w
        are z's parameters (a latent Dirichlet variable under a concentration), the K
        means and covariances are x's.

        >>> GaussianMixture(2).graph().parents("x")
        ('z', 'means', 'covariances')
        """
        from pyrobn.graph import GraphNode, ModelGraph

        weights = (
            GraphNode("weights", "latent", label="w ~ Dir(α)")
            if self.concentration is not None
            else GraphNode("weights", "parameter", label="w")
        )
        return ModelGraph(
            [
                weights,
                GraphNode("means", "parameter", label="μ_k"),
                GraphNode("covariances", "parameter", label="Σ_k"),
                GraphNode("z", "latent", discrete=True, label="z"),
                GraphNode("x", "observed", label="x"),
            ],
            [("weights", "z"), ("z", "x"), ("means", "x"), ("covariances", "x")],
            plates={
                "components": (["means", "covariances"], "K"),
                "data": (["z", "x"], "N"),
            },
            title="Figura 2: a mixture",
        )

    # ------------------------------------------------------------------- fitting
    def _init_from_data(self, x: torch.Tensor, g: torch.Generator) -> None:
        """k-means++ then k-means for the means, data covariance / K^(2/D), uniform weights."""
        n, d = x.shape
        k = self.n_components
        if "means" in self.learn:
            centres = [x[int(torch.randint(n, (1,), generator=g))]]
            for _ in range(1, k):
                d2 = torch.cdist(x, torch.stack(centres)).min(-1).values ** 2
                total = d2.sum()
                if not total > 0:  # every point is a centre already: fewer distinct points
                    self._too_few_points(x)
                probs = (d2 / total).cpu()
                centres.append(x[int(torch.multinomial(probs, 1, generator=g))])
            centres_t = torch.stack(centres)
            previous = None
            for _ in range(100):  # Lloyd (k-means) steps to convergence, as scikit-learn's init
                nearest = torch.cdist(x, centres_t).argmin(-1)
                if previous is not None and torch.equal(nearest, previous):
                    break
                previous = nearest
                counts = torch.bincount(nearest, minlength=k).to(x.dtype).unsqueeze(-1)
                sums = torch.zeros_like(centres_t).index_add_(0, nearest, x)
                centres_t = torch.where(counts > 0, sums / counts.clamp_min(1), centres_t)
            self._assign(loc=centres_t)
        if "scales" in self.learn:
            xc = x - x.mean(0)
            cov = xc.T @ xc / (n * k ** (2.0 / d)) + 1e-6 * torch.eye(
                d, dtype=x.dtype, device=x.device
            )
            self._assign(tril=torch.linalg.cholesky(cov).expand(k, d, d))
        if "weights" in self.learn and self.learn != ("weights",):
            self._assign(weights=torch.full((k,), 1.0 / k, dtype=x.dtype, device=x.device))

    def _too_few_points(self, x: torch.Tensor) -> None:
        """k-means++ needs K distinct points; fewer leave a component with no data. Called
        when k-means++ finds no point left to pick (counting them costs a sort of x)."""
        k = self.n_components
        distinct = int(torch.unique(x, dim=0).shape[0])
        if distinct < k:
            raise ConfigurationError(
                f"x has {distinct} distinct point(s), fewer than n_components = {k}: the "
                f"means cannot be initialised from the data (and at least {k - distinct} "
                "component(s) would have no point of its own); use fewer components, or "
                "init='keep' with means you choose"
            )

    def fit(
        self,
        x: Any,
        *,
        method: str = "svi",
        max_iter: int | None = None,
        tol: float = 1e-6,
        restarts: int = 1,
        steps: int | None = None,
        lr: float = 0.1,
        optimizer: str = "adam",
        batch_size: int | None = None,
        init: str = "data",
        reg_covar: float = 1e-6,
        seed: int | None = 0,
        progress: bool = False,
        callback: Callable[[int, float], None] | None = None,
    ) -> GaussianMixture:
        """Fit the learned parts by maximum likelihood (or MAP under ``concentration``).

        Args:
            method: ``"svi"``: :func:`pyrobn.infer.fit_svi` with ``TraceEnum_ELBO`` on the
                normalised log-likelihood (z enumerated), ``optimizer`` ``"adam"`` or
                ``"sgd"`` (the notes' ``train_loop``) at learning rate ``lr`` for ``steps``
                steps (default 1000) on minibatches of ``batch_size`` rows;
                ``"em"``: expectation-maximisation through :func:`pyrobn.infer.em.run_em`
                with closed-form M-steps (w_k = N_k / N, or (N_k + alpha_k - 1) /
                (N + sum alpha - K) under a concentration; mu_k, Sigma_k the
                responsibility-weighted moments, Sigma_k + reg_covar I), at most
                ``max_iter`` iterations (default 100), until the gain of the objective is
                below ``tol`` relative (the package's one rule,
                :func:`pyrobn.infer.em.converged`).
            restarts: starting points; the one with the best final objective is kept.
                With ``init="data"`` each restart draws its k-means++ start from a local
                generator seeded by ``seed``.
            init: ``"data"`` (k-means++ means, data covariance) or ``"keep"`` (start from
                the current values: the notes' example).
            seed: seeds the fit (a local generator and forked random streams: the
                caller's streams are untouched).
            callback: ``callback(step, loss)`` after every SVI step.

        Returns:
            the model. ``fit_result_`` holds the objective per iteration (EM) or step
            (SVI): the mean log-likelihood (1/N) log p(D) (``"mean_log_likelihood"``), or
            with a concentration the mean log-posterior (1/N) [log p(D | w) + log p(w)].

        Raises:
            ConfigurationError: an unknown method, optimiser or init; fewer distinct points
                than components with ``init="data"``.
            TrainingDiverged: a non-finite objective.
        """
        xt = self._data(x)
        if method not in ("svi", "em"):
            raise ConfigurationError(f"method must be 'svi' or 'em', got {method!r}")
        if optimizer not in ("adam", "sgd"):
            raise ConfigurationError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        if init not in ("data", "keep"):
            raise ConfigurationError(f"init must be 'data' or 'keep', got {init!r}")
        restarts = check_int(restarts, "restarts")
        lr = positive_number(lr, "lr")
        reg_covar = positive_number(reg_covar, "reg_covar", allow_zero=True)
        tol = positive_number(tol, "tol", allow_zero=True)
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size")
        if not self.learn:
            raise ConfigurationError("nothing to fit: learn is empty")
        if method == "em":
            if steps is not None:
                warnings.warn(
                    "fit(method='em', steps=...) is deprecated: EM's iteration cap is max_iter",
                    DeprecationWarning,
                    stacklevel=2,
                )
                if max_iter is None:
                    max_iter = steps
            max_iter = check_int(100 if max_iter is None else max_iter, "max_iter")
        elif max_iter is not None:
            raise ConfigurationError("max_iter is EM's iteration cap; SVI runs `steps` steps")
        if init == "data" and "means" in self.learn and xt.shape[0] < self.n_components:
            self._too_few_points(xt)
        n, k, d = xt.shape[0], self.n_components, self.dim
        check_allocation(n * k * (2 * d + 3), xt.dtype, f"fitting {k} components to {n} rows")
        started = time.perf_counter()
        with self._fitting(seed):
            if method == "em":
                result = self._fit_em(xt, max_iter, tol, restarts, init, reg_covar, seed)
            else:
                result = self._fit_svi(
                    xt,
                    1000 if steps is None else steps,
                    lr,
                    optimizer,
                    batch_size,
                    restarts,
                    init,
                    seed,
                    progress,
                    callback,
                )
        return self._set_result(result, started)

    @property
    def _objective_name(self) -> str:
        return "mean_log_likelihood" if self.concentration is None else "mean_log_posterior"

    def _objective(self, x: torch.Tensor) -> float:
        """(1/N) [log p(D | theta) + log p(w)]: what training maximises."""
        return self._objective_from(self.score(x), len(x))

    def _objective_from(
        self, mean_log_lik: float, n: int, weights: torch.Tensor | None = None
    ) -> float:
        if self.concentration is None:
            return mean_log_lik
        w = self.weights if weights is None else weights
        with torch.no_grad():
            log_prior = float(dist.Dirichlet(self.concentration).log_prob(w))
        return mean_log_lik + log_prior / n

    def _fit_svi(
        self, x, steps, lr, optimizer, batch_size, restarts, init, seed, progress, callback
    ) -> FitResult:  # type: ignore[no-untyped-def]
        """SVI from each restart (fresh AutoDelta guide each time); keeps the best."""
        optim_cls = pyro.optim.SGD if optimizer == "sgd" else pyro.optim.Adam
        start = self._state()
        g = generator(seed)
        best: tuple[float, int, dict[str, torch.Tensor]] | None = None
        traces: list[list[float]] = []
        histories: list[History] = []
        for restart in range(restarts):
            self.load_state_dict(start)
            self._reset_map_guide()
            if init == "data":
                self._init_from_data(x, g)
            history = fit_svi(
                self.model,
                self.guide,
                x,
                batch_size,
                loss=TraceEnum_ELBO(max_plate_nesting=self.max_plate_nesting),
                optim=optim_cls({"lr": lr}),
                steps=steps,
                progress=progress,
                callback=callback,
                description=self._pyro_name,
            )
            if self.concentration is not None:  # copy the MAP point into the model
                with torch.no_grad():
                    self._assign(weights=self.map_guide.median(x, batch_size)["weights"])
            objective = self._objective(x)
            traces.append([-loss for loss in history.losses])
            histories.append(history)
            if best is None or objective > best[0]:
                best = (objective, restart, self._state())
        assert best is not None
        self.load_state_dict(best[2])
        result = FitResult.from_history(histories[best[1]], objective_name=self._objective_name)
        result.restarts, result.best_restart = traces, best[1]
        return result

    def _fit_em(
        self,
        x: torch.Tensor,
        max_iter: int,
        tol: float,
        restarts: int,
        init: str,
        reg_covar: float,
        seed: int | None,
    ) -> FitResult:
        """EM through :func:`run_em`: E-step responsibilities, closed-form M-step.

        The state is the tuple (w, mu, L) of new tensors each M-step makes, so an
        iteration copies nothing; the module takes the best state once, at the end.
        """
        n, d = x.shape
        k = self.n_components
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        start = self._state()
        self._reset_map_guide()
        State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

        def begin(restart: int, g: torch.Generator) -> State:
            self.load_state_dict(start)
            if init == "data":
                self._init_from_data(x, g)
            return self.weights.clone(), self.loc.detach().clone(), self.scale_tril.clone()

        def e_step(state: State) -> tuple[torch.Tensor, torch.Tensor, float]:
            w, loc, tril = state
            joint = w.log() + component_log_probs(x, loc, tril)
            log_px = torch.logsumexp(joint, -1, keepdim=True)
            return joint, log_px, self._objective_from(float(log_px.mean()), n, w)

        def step(state: State) -> tuple[State, float]:
            w, loc, tril = state
            joint, log_px, objective = e_step(state)
            resp = (joint - log_px).exp()  # (N, K)
            nk = resp.sum(0) + 10 * torch.finfo(x.dtype).tiny
            if "weights" in self.learn:
                if self.concentration is not None:
                    alpha = self.concentration
                    w = (nk + alpha - 1).clamp_min(0) / (n + alpha.sum() - k)
                else:
                    w = nk / n
                w = (w / w.sum()).clamp_min(1e-300)
            if "means" in self.learn:
                loc = (resp.T @ x) / nk.unsqueeze(-1)
            if "scales" in self.learn:
                diff = x.unsqueeze(0) - loc.unsqueeze(1)  # (K, N, D)
                weighted = diff * resp.T.unsqueeze(-1)
                cov = (weighted.transpose(1, 2) @ diff) / nk.view(k, 1, 1)  # one bmm
                tril = torch.linalg.cholesky(cov + reg_covar * eye)
            return (w, loc, tril), objective

        with torch.no_grad():
            (w, loc, tril), result = run_em(
                begin,
                step,
                max_iter=max_iter,
                tol=tol,
                restarts=restarts,
                seed=seed,
                objective_name=self._objective_name,
                final=lambda s: e_step(s)[2],
            )
        self.load_state_dict(start)
        self._assign(
            weights=w if "weights" in self.learn else None,
            loc=loc if "means" in self.learn else None,
            tril=tril if "scales" in self.learn else None,
        )
        return result

    @property
    def history(self) -> History | None:
        """Deprecated: the record is ``fit_result_`` (objective = -loss)."""
        warnings.warn(
            "GaussianMixture.history is deprecated: use fit_result_ (a FitResult)",
            DeprecationWarning,
            stacklevel=2,
        )
        r = self.fit_result_
        if r is None:
            return None
        if r.history is not None:
            return r.history
        return History(losses=[-v for v in r.objective], wall_time=r.wall_time, steps=r.n_iter)

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(K={self.n_components}, D={self.dim}, learn={self.learn}, "
            f"weights={[round(w, 4) for w in self.weights.tolist()]})"
        )
