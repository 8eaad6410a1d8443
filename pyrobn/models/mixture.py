"""Gaussian mixtures: p(x) = sum_k p(z = k) N(x | mu_k, Sigma_k) (notes 2.1.3.1 eq. 9, 2.4.4).

The latent component z is a discrete site enumerated exactly by Pyro
(``TraceEnum_ELBO``, ``infer={"enumerate": "parallel"}``), so the ELBO the model and its
(empty) guide give is the exact log-likelihood. The notes' worked example (2.4.4,
eq. 49-50) is the case with fixed Gaussians N(-1, 1), N(3, 2^2) and a learned prior weight
r = sigmoid(theta) = p(z = 1), found by gradient ascent on the mean log-likelihood
(1/|D|) log p_theta(D) (``Mixture`` / ``PriorEstimator`` / ``train_loop``, Figura 18).

>>> gm = GaussianMixture(2, learn=("weights",), means=[-1.0, 3.0], scales=[1.0, 2.0])
>>> gm.fit(x, steps=200, lr=10.0, optimizer="sgd")   # the notes' train_loop
>>> gm.weights                                        # tensor([0.2, 0.8])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta, init_to_value
from pyro.nn import pyro_method
from pyro.ops.indexing import Vindex

from pyrobn.density import as_points
from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.infer.svi import History, fit_svi
from pyrobn.models.base import PyrobnModule
from pyrobn.validation import check_distribution, check_int, check_positive

_PARTS = ("weights", "means", "scales")


def _tril_to_unconstrained(tril: torch.Tensor) -> torch.Tensor:
    """Inverse of the lower-Cholesky transform: strict lower part kept, log of the diagonal."""
    return tril.tril(-1) + torch.diag_embed(tril.diagonal(dim1=-2, dim2=-1).log())


def _unconstrained_to_tril(u: torch.Tensor) -> torch.Tensor:
    """L = strict_lower(u) + diag(exp(diag u)): a valid Cholesky factor for any u."""
    return u.tril(-1) + torch.diag_embed(u.diagonal(dim1=-2, dim2=-1).exp())


def _parse_learn(learn: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(learn, str):
        learn = _PARTS if learn == "all" else (learn,)
    parts = tuple(learn)
    unknown = [p for p in parts if p not in _PARTS]
    if unknown:
        raise ConfigurationError(
            f"learn must be 'all' or a subset of {_PARTS}; unknown part(s) {unknown}"
        )
    return tuple(p for p in _PARTS if p in parts)


def component_log_probs(
    x: torch.Tensor, loc: torch.Tensor, scale_tril: torch.Tensor
) -> torch.Tensor:
    """log N(x_n | mu_k, L_k L_k^T) for x (N, D), loc (K, D), scale_tril (K, D, D): (N, K)."""
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
        prior: ``None`` for maximum likelihood, or a Dirichlet concentration alpha
            (a number or K numbers, all > 0) for MAP of the weights: p(w) = Dir(w | alpha),
            fitted through an ``AutoDelta`` guide (``fit(..., method="svi")``) or by EM.
        weights, means, scales, covariances: initial (or fixed) values: weights (K,)
            a distribution; means (K, D) (a vector (K,) when D = 1); scales (K,) or
            (K, D) standard deviations (diagonal Sigma_k); or covariances (K, D, D).
            Defaults: uniform weights, means 0, unit scales (``fit`` re-initialises the
            learned ones from the data when ``init="data"``).

    The weights are parameterised as w = softmax(0, theta_1, ..., theta_{K-1}); for K = 2
    that is r = w_1 = sigmoid(theta_1), the notes' ``PriorEstimator``.
    """

    max_plate_nesting = 1

    def __init__(
        self,
        n_components: int,
        dim: int = 1,
        learn: str | Sequence[str] = ("weights",),
        prior: float | Sequence[float] | None = None,
        *,
        weights: Any = None,
        means: Any = None,
        scales: Any = None,
        covariances: Any = None,
    ) -> None:
        check_int(n_components, "n_components")
        check_int(dim, "dim")
        parts = _parse_learn(learn)
        prior_list = None
        if prior is not None:
            alpha = torch.as_tensor(prior, dtype=torch.float64)
            if alpha.dim() > 1 or (alpha.dim() == 1 and alpha.numel() != n_components):
                raise ShapeError(
                    f"prior (Dirichlet concentration) must be a number or {n_components} "
                    f"numbers, got shape {tuple(alpha.shape)}"
                )
            check_positive(alpha, "prior (Dirichlet concentration)")
            prior_list = alpha.expand(n_components).tolist()
        k, d = n_components, dim
        as_list = lambda v: None if v is None else np.asarray(v, dtype=float).tolist()  # noqa: E731
        super().__init__(
            n_components=k,
            dim=d,
            learn=list(parts),
            prior=prior_list,
            weights=as_list(weights),
            means=as_list(means),
            scales=as_list(scales),
            covariances=as_list(covariances),
        )
        self.n_components, self.dim, self.learn = k, d, parts
        f64 = torch.float64
        w = (
            torch.full((k,), 1.0 / k, dtype=f64)
            if weights is None
            else torch.as_tensor(weights, dtype=f64)
        )
        if w.shape != (k,):
            raise ShapeError(f"weights must have shape ({k},), got {tuple(w.shape)}")
        check_distribution(w, "weights")
        if bool((w <= 0).any()):
            raise ConfigurationError(f"initial weights must be > 0, got {w.tolist()}")
        mu = torch.zeros(k, d, dtype=f64) if means is None else torch.as_tensor(means, dtype=f64)
        if mu.dim() == 1 and d == 1:
            mu = mu.unsqueeze(-1)
        if mu.shape != (k, d):
            raise ShapeError(f"means must have shape ({k}, {d}), got {tuple(mu.shape)}")
        as_points(mu, "means")
        tril = self._initial_tril(k, d, scales, covariances)
        self._set("weight_logits", (w.log() - w[0].log())[1:], "weights" in parts)
        self._set("loc", mu, "means" in parts)
        self._set("tril_raw", _tril_to_unconstrained(tril), "scales" in parts)
        if prior_list is not None:
            self.register_buffer("concentration", torch.tensor(prior_list, dtype=f64))
        else:
            self.concentration = None
        self._map_guide: AutoDelta | None = None
        self.history: History | None = None

    @staticmethod
    def _initial_tril(k: int, d: int, scales: Any, covariances: Any) -> torch.Tensor:
        f64 = torch.float64
        if scales is not None and covariances is not None:
            raise ConfigurationError("give scales or covariances, not both")
        if covariances is not None:
            cov = torch.as_tensor(covariances, dtype=f64)
            if cov.shape != (k, d, d):
                raise ShapeError(f"covariances must have shape ({k}, {d}, {d}), got {cov.shape}")
            tril, info = torch.linalg.cholesky_ex(cov)
            if bool((info != 0).any()):
                bad = int((info != 0).nonzero()[0])
                raise ConfigurationError(f"covariances[{bad}] is not positive definite")
            return tril
        s = torch.ones(k, d, dtype=f64) if scales is None else torch.as_tensor(scales, dtype=f64)
        if s.dim() == 1:
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

    def _assign(self, weights=None, loc=None, tril=None) -> None:
        """Write new values (constrained space) into the learned tensors, in place."""
        with torch.no_grad():
            if weights is not None:
                logw = weights.clamp_min(1e-300).log()
                self.weight_logits.copy_((logw - logw[0])[1:])
            if loc is not None:
                self.loc.copy_(loc)
            if tril is not None:
                self.tril_raw.copy_(_tril_to_unconstrained(tril))

    # ---------------------------------------------------------------- model/guide
    def _data(self, x: Any, name: str = "x") -> torch.Tensor:
        return as_points(x, name, dim=self.dim, dtype=self.loc.dtype, device=self.loc.device)

    @pyro_method
    def model(self, x: torch.Tensor, batch_size: int | None = None) -> None:
        """z_n ~ Categorical(w), x_n | z_n ~ N(mu_z, Sigma_z), scaled by 1/N (mean log-lik).

        With a prior, w ~ Dirichlet(alpha) is a sample site (MAP through ``AutoDelta``).
        The 1/N scale makes the loss the notes' normalised NLL -(1/|D|) log p(D) (2.4.4).
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
                pyro.sample(
                    "x",
                    dist.MultivariateNormal(Vindex(loc)[z], scale_tril=Vindex(tril)[z]),
                    obs=x[idx],
                )

    @pyro_method
    def guide(self, x: torch.Tensor, batch_size: int | None = None) -> None:
        """Empty for maximum likelihood (z is summed out exactly); ``AutoDelta`` for MAP."""
        if self.concentration is not None:
            self.map_guide(x, batch_size)

    @property
    def map_guide(self) -> AutoDelta:
        """The ``AutoDelta`` guide on the weights (MAP), named after this model."""
        if self._map_guide is None:
            guide = AutoDelta(
                poutine.block(self.model, expose=["weights"]),
                init_loc_fn=init_to_value(values={"weights": self.weights.detach()}),
            )
            guide._pyro_name = f"{self._pyro_name}.AutoDelta"
            self.__dict__["_map_guide"] = guide  # not a submodule: state_dict stays fixed
        return self._map_guide

    def _reset_map_guide(self) -> None:
        """Forget the AutoDelta guide and its parameters in Pyro's param store."""
        store = pyro.get_param_store()
        for name in [k for k in store.keys() if k.startswith(f"{self._pyro_name}.AutoDelta")]:
            del store[name]
        self.__dict__["_map_guide"] = None

    # -------------------------------------------------------------------- queries
    def joint_log_probs(self, x: Any) -> torch.Tensor:
        """log p(x_n, z = k) = log w_k + log N(x_n | mu_k, Sigma_k), shape (N, K)."""
        xt = self._data(x)
        with torch.no_grad():
            return self.weights.log() + component_log_probs(xt, self.loc, self.scale_tril)

    def log_prob(self, x: Any) -> torch.Tensor:
        """log p(x_n) = logsumexp_k [log w_k + log N(x_n | mu_k, Sigma_k)] (eq. 9, 49), (N,)."""
        return torch.logsumexp(self.joint_log_probs(x), -1)

    def score(self, x: Any) -> float:
        """Mean log-likelihood (1/N) sum_n log p(x_n) = -CE(p_D, p_theta) (eq. 45)."""
        return float(self.log_prob(x).mean())

    def responsibilities(self, x: Any) -> torch.Tensor:
        """p(z = k | x_n) = w_k N(x_n | k) / p(x_n) (Bayes' rule), shape (N, K)."""
        return torch.softmax(self.joint_log_probs(x), -1)

    def sample(
        self, n: int, seed: int | None = None, *, return_labels: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling: z ~ Categorical(w), then x ~ N(mu_z, Sigma_z); x (n, D)."""
        check_positive(n, "n")
        dev = self.loc.device
        g = torch.Generator(device=dev)
        g.manual_seed(seed if seed is not None else int(torch.randint(2**31, (1,))))
        with torch.no_grad():
            z = torch.multinomial(self.weights, int(n), replacement=True, generator=g)
            eps = torch.randn(int(n), self.dim, 1, generator=g, dtype=self.loc.dtype, device=dev)
            x = self.loc[z] + (self.scale_tril[z] @ eps).squeeze(-1)
        return (x, z) if return_labels else x

    def n_parameters(self) -> int:
        """Free parameters learned: K - 1 weights, K D means, K D (D + 1) / 2 covariance entries."""
        k, d = self.n_components, self.dim
        sizes = {"weights": k - 1, "means": k * d, "scales": k * d * (d + 1) // 2}
        return sum(sizes[p] for p in self.learn)

    def bic(self, x: Any) -> float:
        """BIC = -2 log p(D) + (free parameters) log N (lower is better)."""
        xt = self._data(x)
        return float(-2.0 * self.log_prob(xt).sum() + self.n_parameters() * math.log(len(xt)))

    # ------------------------------------------------------------------- fitting
    def _init_from_data(self, x: torch.Tensor, g: torch.Generator) -> None:
        """k-means++ then k-means for the means, data covariance / K^(2/D), uniform weights."""
        n, d = x.shape
        k = self.n_components
        if "means" in self.learn:
            centres = [x[int(torch.randint(n, (1,), generator=g))]]
            for _ in range(1, k):
                d2 = torch.cdist(x, torch.stack(centres)).min(-1).values ** 2
                probs = (d2 / d2.sum()).cpu()
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

    def fit(
        self,
        x: Any,
        *,
        method: str = "svi",
        steps: int = 1000,
        lr: float = 0.1,
        optimizer: str = "adam",
        restarts: int = 1,
        init: str = "data",
        batch_size: int | None = None,
        tol: float = 1e-8,
        reg_covar: float = 1e-6,
        seed: int = 0,
        progress: bool = False,
        callback: Any = None,
    ) -> History:
        """Fit the learned parts by maximum likelihood (or MAP with ``prior``).

        Args:
            method: ``"svi"``: :func:`fit_svi` with ``TraceEnum_ELBO`` on the normalised
                log-likelihood (z enumerated), ``optimizer`` ``"adam"`` or ``"sgd"`` (the
                notes' ``train_loop``) at learning rate ``lr`` for ``steps`` steps;
                ``"em"``: expectation-maximisation with closed-form M-steps
                (w_k = N_k / N, or (N_k + alpha_k - 1) / (N + sum alpha - K) under the
                prior; mu_k, Sigma_k the responsibility-weighted moments, Sigma_k + reg_covar I)
                until the mean log-likelihood changes by less than ``tol``.
            restarts: independent initialisations (``init="data"`` draws them from the
                data, seeded by ``seed + i``); the one with the best objective is kept.
            init: ``"data"`` (k-means++ means, data covariance) or ``"keep"`` (start from
                the current values: the notes' example).

        Returns:
            the :class:`History` of the kept restart (loss = -(1/N) log p(D) per step for
            SVI, per iteration for EM); also stored as ``self.history``.
        """
        xt = self._data(x)
        if method not in ("svi", "em"):
            raise ConfigurationError(f"method must be 'svi' or 'em', got {method!r}")
        if optimizer not in ("adam", "sgd"):
            raise ConfigurationError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        if init not in ("data", "keep"):
            raise ConfigurationError(f"init must be 'data' or 'keep', got {init!r}")
        check_int(restarts, "restarts")
        check_positive(lr, "lr")
        if not self.learn:
            raise ConfigurationError("nothing to fit: learn is empty")
        best: tuple[float, History, dict[str, torch.Tensor]] | None = None
        start_state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        for i in range(restarts):
            self.load_state_dict(start_state)
            self._reset_map_guide()
            if init == "data":
                g = torch.Generator().manual_seed(seed + i)
                self._init_from_data(xt, g)
            if method == "em":
                history = self._fit_em(xt, steps, tol, reg_covar)
            else:
                history = self._fit_svi(
                    xt, steps, lr, optimizer, batch_size, seed + i, progress, callback
                )
            objective = self._objective(xt)
            if best is None or objective > best[0]:
                state = {k: v.detach().clone() for k, v in self.state_dict().items()}
                best = (objective, history, state)
        assert best is not None
        self.load_state_dict(best[2])
        self.history = best[1]
        return best[1]

    def _objective(self, x: torch.Tensor) -> float:
        """(1/N) [log p(D | theta) + log p(w)]: what training maximises."""
        return self._objective_from(self.score(x), len(x))

    def _fit_svi(self, x, steps, lr, optimizer, batch_size, seed, progress, callback) -> History:
        optim_cls = pyro.optim.SGD if optimizer == "sgd" else pyro.optim.Adam
        history = fit_svi(
            self.model,
            self.guide,
            x,
            batch_size,
            loss=TraceEnum_ELBO(max_plate_nesting=self.max_plate_nesting),
            optim=optim_cls({"lr": lr}),
            steps=steps,
            progress=progress,
            seed=seed,
            callback=callback,
            description=self._pyro_name,
        )
        if self.concentration is not None:  # copy the MAP point into the model
            with torch.no_grad():
                self._assign(weights=self.map_guide.median(x, batch_size)["weights"])
        return history

    def _fit_em(self, x: torch.Tensor, steps: int, tol: float, reg_covar: float) -> History:
        """EM: E-step responsibilities, closed-form M-step for the learned parts."""
        import time

        history = History()
        t0 = time.perf_counter()
        n, d = x.shape
        k = self.n_components
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        previous = -math.inf
        with torch.no_grad():
            for _ in range(steps):
                joint = self.weights.log() + component_log_probs(x, self.loc, self.scale_tril)
                log_px = torch.logsumexp(joint, -1, keepdim=True)
                objective = self._objective_from(float(log_px.mean()), n)
                history.losses.append(-objective)
                if abs(objective - previous) < tol:
                    break
                previous = objective
                resp = (joint - log_px).exp()  # (N, K)
                nk = resp.sum(0) + 10 * torch.finfo(x.dtype).tiny
                if "weights" in self.learn:
                    if self.concentration is not None:
                        alpha = self.concentration
                        w = (nk + alpha - 1).clamp_min(0) / (n + alpha.sum() - k)
                    else:
                        w = nk / n
                    self._assign(weights=w / w.sum())
                if "means" in self.learn:
                    self._assign(loc=(resp.T @ x) / nk.unsqueeze(-1))
                if "scales" in self.learn:
                    diff = (x.unsqueeze(0) - self.loc.unsqueeze(1)).detach()  # (K, N, D)
                    weighted = diff * resp.T.unsqueeze(-1)
                    cov = (weighted.transpose(1, 2) @ diff) / nk.view(k, 1, 1)  # one bmm
                    tril = torch.linalg.cholesky(cov + reg_covar * eye)
                    self._assign(tril=tril)
        history.wall_time = time.perf_counter() - t0
        history.steps = len(history.losses)
        return history

    def _objective_from(self, mean_log_lik: float, n: int) -> float:
        if self.concentration is None:
            return mean_log_lik
        with torch.no_grad():
            log_prior = float(dist.Dirichlet(self.concentration).log_prob(self.weights))
        return mean_log_lik + log_prior / n

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(K={self.n_components}, D={self.dim}, learn={self.learn}, "
            f"weights={[round(w, 4) for w in self.weights.tolist()]})"
        )


def weight_mle_two_components(x: Any, log_p0: torch.Tensor, log_p1: torch.Tensor) -> float:
    """The exact maximiser r* in [0, 1] of (1/N) sum_n log[(1 - r) p0(x_n) + r p1(x_n)].

    The mean log-likelihood is concave in r; its derivative
    (1/N) sum_n (p1 - p0) / ((1 - r) p0 + r p1) is found to vanish by a 1-D root solve
    (``scipy.optimize.brentq``); r* is 0 or 1 when the derivative does not change sign.
    ``x`` is unused except for its length check; ``log_p0``/``log_p1`` are the component
    log-densities at the data, shape (N,).
    """
    import numpy as np
    from scipy.optimize import brentq

    a = log_p0.detach().cpu().double().numpy()
    b = log_p1.detach().cpu().double().numpy()
    if a.shape != b.shape or a.ndim != 1 or len(a) != len(x):
        raise ShapeError(f"log_p0 and log_p1 must both have shape ({len(x)},)")
    ratio = np.exp(b - a)  # p1 / p0

    def slope(r: float) -> float:
        return float(np.mean((ratio - 1.0) / (1.0 - r + r * ratio)))

    if slope(0.0) <= 0:
        return 0.0
    if slope(1.0) >= 0:
        return 1.0
    return float(brentq(slope, 0.0, 1.0, xtol=1e-14, rtol=1e-14))
