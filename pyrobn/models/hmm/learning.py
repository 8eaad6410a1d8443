"""Learning the tables of :class:`~pyrobn.models.hmm.HiddenMarkovModel`: ``fit``.

MAP with Dirichlet(concentration) priors on every probability row: closed-form counts when
every state is known; Baum-Welch EM through :func:`pyrobn.infer.em.run_em` (E-step:
forward-backward with the known states clamped; M-step: the Dirichlet mode of the expected
counts, Gaussian tables by weighted maximum likelihood); or SVI with ``TraceEnum_ELBO`` and
an ``AutoDelta`` guide through :func:`pyrobn.infer.map.map_estimate`. And
:func:`permutation_match`, which lines learned states up with true ones.
"""

from __future__ import annotations

import numbers
import warnings
from typing import TYPE_CHECKING, Any

import pyro
import torch
from pyro.infer import TraceEnum_ELBO

from pyrobn.errors import ConfigurationError, ConvergenceWarning
from pyrobn.infer import hmm_ops
from pyrobn.infer.em import run_em
from pyrobn.infer.params import unique_name
from pyrobn.infer.result import FitResult
from pyrobn.models.hmm.data import Batch
from pyrobn.validation import check_int, check_positive

if TYPE_CHECKING:
    from pyrobn.models.hmm import HiddenMarkovModel

__all__ = ["Learning", "permutation_match"]

_METHODS = ("auto", "counts", "em", "svi")


class Learning:
    """The :class:`~pyrobn.models.hmm.HiddenMarkovModel` methods that learn its tables."""

    # ------------------------------------------------------------------ learning
    def fit(
        self,
        observations: Any,
        states: Any = None,
        lengths: Any = None,
        mask: Any = None,
        *,
        method: str = "auto",
        max_iter: int = 100,
        tol: float = 1e-6,
        restarts: int = 1,
        steps: int = 500,
        lr: float = 0.05,
        progress: bool = False,
        seed: int | None = None,
        n_iter: int | None = None,
    ) -> HiddenMarkovModel:
        """Learn the tables by MAP with Dirichlet(concentration) priors; returns the model.

        * every state known (``states`` without -1): closed-form counts (supervised),
          ``method="counts"``;
        * no or some states known (-1 = unknown): ``method="em"`` (default), Baum-Welch on
          the fast kernels through :func:`pyrobn.infer.em.run_em` (E-step: forward-backward
          with the known states clamped; M-step: normalised expected counts + α − 1), at most
          ``max_iter`` iterations, stopping when the objective gains less than
          ``tol * max(1, |objective|)``, best of ``restarts`` starting points (the first is
          the current parameters, the others random tables drawn from ``seed``); or
          ``method="svi"``: ``TraceEnum_ELBO`` with an ``AutoDelta`` guide through
          :func:`pyrobn.infer.map.map_estimate` (``steps`` Adam steps of rate ``lr``).

        NaN observations are summed out in every method. ``fit_result_`` records the
        objective: log p(x, known states | tables) + log p(tables) per EM iteration (the
        Dirichlet log-densities, left out when α = 1 where they are constant; Gaussian
        means and variances are fitted by maximum likelihood), its value after counting,
        or the ELBO of the point-mass guide per SVI step (the log joint, with the Normal
        and inverse-gamma priors of the Pyro model on Gaussian tables). ``n_iter`` is the
        deprecated name of ``max_iter``.
        """
        if n_iter is not None:
            warnings.warn(
                "HiddenMarkovModel.fit(n_iter=) is deprecated; use max_iter=",
                DeprecationWarning,
                stacklevel=2,
            )
            max_iter = n_iter
        if not isinstance(method, str) or method not in _METHODS:
            raise ConfigurationError(f"method must be one of {_METHODS}; got {method!r}")
        max_iter = check_int(max_iter, "max_iter")
        restarts = check_int(restarts, "restarts")
        steps = check_int(steps, "steps")
        check_positive(lr, "lr")
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ConfigurationError(f"tol must be a finite number >= 0, got {tol!r}")
        if seed is not None:
            seed = check_int(seed, "seed", low=0)
        with hmm_ops.kernel_threads(self.init_probs.device):
            batch = self._as_batch(observations, lengths, mask, states)
            self._check_work(batch, "marginals")
        real = batch.mask
        if real is None:
            real = torch.ones(batch.shape, dtype=torch.bool, device=batch.values.device)
        fully_labelled = batch.labels is not None and bool((batch.labels[real] >= 0).all())
        if method == "counts" and not fully_labelled:
            raise ConfigurationError("method='counts' needs every state given (no -1)")
        if method == "auto":
            method = "counts" if fully_labelled else "em"
        with self._fitting(seed):
            if method == "counts":
                result = self._fit_counts(batch, real)
            elif method == "em":
                with hmm_ops.kernel_threads(self.init_probs.device):
                    result = self._fit_em(batch, max_iter, tol, restarts, seed)
            else:
                result = self._fit_svi(batch, steps, lr, progress)
        return self._set_result(result)

    @property
    def _objective_name(self) -> str:
        return "log_likelihood" if self.concentration == 1.0 else "log_posterior"

    def _assign(self, params: dict[str, torch.Tensor]) -> None:
        for name, value in params.items():
            getattr(self, name).copy_(value)
        self.__dict__["_autoguide"] = None

    def _fit_counts(self, batch: Batch, real: torch.Tensor) -> FitResult:
        weights = torch.nn.functional.one_hot(batch.labels.clamp(min=0), self.n_states)
        weights = (weights * real[..., None]).to(self.dtype)
        first = weights[:, 0]
        pairs = weights[:, :-1, :, None] * weights[:, 1:, None, :]
        new = self._m_step(batch, first.sum(0), pairs.sum((0, 1)), weights, self.params)
        self._assign(new)
        value = float(self._log_joint(batch, new))
        return FitResult("counts", [value], objective_name=self._objective_name)

    def _random_start(self, batch: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Random tables for an EM restart: flat-Dirichlet rows; Gaussian means drawn
        around the data's mean (one standard deviation), variances the data's."""
        k, device, dtype = self.n_states, self.init_probs.device, self.dtype

        def rows(*shape: int) -> torch.Tensor:
            draws = -torch.rand(*shape, generator=g, dtype=dtype).log()
            return (draws / draws.sum(-1, keepdim=True)).to(device)

        start = {"init_probs": rows(k), "trans_probs": rows(k, k)}
        if self.emission == "categorical":
            start["emission_probs"] = rows(k, self.n_symbols)
        else:
            w = batch.observed_mask().to(dtype)
            count = w.sum((0, 1)).clamp(min=1.0)
            mean = (w * batch.values).sum((0, 1)) / count
            var = (w * (batch.values - mean) ** 2).sum((0, 1)) / count
            var = var.clamp(min=self.min_variance)
            noise = torch.randn(k, self.n_features, generator=g, dtype=dtype).to(device)
            start["means"] = mean + var.sqrt() * noise
            start["variances"] = var.expand(k, -1).clone()
        return start

    def _fit_em(
        self, batch: Batch, max_iter: int, tol: float, restarts: int, seed: int | None
    ) -> FitResult:
        """Baum-Welch through :func:`run_em`; the model keeps its tables should it fail."""

        def init(restart: int, g: torch.Generator) -> dict[str, torch.Tensor]:
            return self.params if restart == 0 else self._random_start(batch, g)

        def step(params: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
            b, offset = self._factors(batch, params)
            gamma, log_prob, xi = hmm_ops.forward_backward(
                b, params["init_probs"], params["trans_probs"], batch.mask, offset, transitions=True
            )
            self._check_possible(log_prob)
            value = float(log_prob.sum() + self._log_prior(params))
            return self._m_step(batch, gamma[:, 0].sum(0), xi, gamma, params), value

        state, result = run_em(
            init,
            step,
            max_iter=max_iter,
            tol=tol,
            restarts=restarts,
            seed=seed,
            objective_name=self._objective_name,
            final=lambda params: float(self._log_joint(batch, params)),
        )
        self._assign(state)
        return result

    def _m_step(
        self,
        batch: Batch,
        first: torch.Tensor,
        pairs: torch.Tensor,
        gamma: torch.Tensor,
        previous: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """MAP tables from expected counts: (counts + α − 1) normalised (the Dirichlet
        mode); Gaussian means and variances by weighted maximum likelihood (a state with
        no weight keeps its previous ones)."""
        extra = self.concentration - 1.0

        def normalise(counts: torch.Tensor) -> torch.Tensor:
            counts = (counts + extra).clamp(min=0)
            total = counts.sum(-1, keepdim=True)
            uniform = torch.full_like(counts, 1.0 / counts.shape[-1])
            return torch.where(total > 0, counts / total.clamp(min=1e-300), uniform)

        new = {"init_probs": normalise(first), "trans_probs": normalise(pairs)}
        if self.emission == "categorical":
            w = gamma * batch.observed_mask()[..., None]
            counts = torch.zeros(
                self.n_symbols, self.n_states, dtype=self.dtype, device=w.device
            ).index_add_(0, batch.values.reshape(-1), w.reshape(-1, self.n_states))
            new["emission_probs"] = normalise(counts.T)
        else:
            w = gamma[..., None] * batch.observed_mask()[:, :, None, :]  # (N, T, K, D)
            x = batch.values[:, :, None, :]
            total = w.sum((0, 1))
            safe = total.clamp(min=1e-300)
            means = (w * x).sum((0, 1)) / safe
            var = (w * (x - means) ** 2).sum((0, 1)) / safe
            keep = total > 0
            new["means"] = torch.where(keep, means, previous["means"])
            new["variances"] = torch.where(
                keep, var.clamp(min=self.min_variance), previous["variances"]
            )
        return new

    def _log_prior(self, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """log p(tables) of the Dirichlet priors (0 when α = 1: a constant left out)."""
        params = self.params if params is None else params
        total = torch.zeros((), dtype=self.dtype, device=self.init_probs.device)
        if self.concentration == 1.0:
            return total
        for name, prior in self._priors().items():
            if name.endswith("probs"):  # EM fits Gaussian tables by maximum likelihood
                total = total + prior.log_prob(params[name].clamp(min=1e-300)).sum()
        return total

    def _log_joint(
        self, batch: Batch, params: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The EM objective: log p(x, known states | tables) + log p(tables)."""
        p = self.params if params is None else params
        b, offset = self._factors(batch, p)
        log_p = hmm_ops.forward_log_prob(b, p["init_probs"], p["trans_probs"], batch.mask, offset)
        return log_p.sum() + self._log_prior(p)

    def _fit_svi(self, batch: Batch, steps: int, lr: float, progress: bool) -> FitResult:
        """MAP by SVI: :func:`pyrobn.infer.map.map_estimate` on :meth:`model` (the states
        summed out by ``TraceEnum_ELBO``), its ``AutoDelta`` under the model's name."""
        from pyrobn.infer.map import map_estimate

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            estimate = map_estimate(
                self._model,
                batch,
                steps=steps,
                lr=lr,
                init=self.params,
                loss=TraceEnum_ELBO(max_plate_nesting=self.max_plate_nesting),
                optim=pyro.optim.Adam({"lr": lr}),
                seed=None,  # the fit's own seeded block (self._fitting) is already in place
                progress=progress,
                polish=0,
                prefix=unique_name(self._guide_prefix("map")),
            )
        for w in caught:  # point at the caller's fit, not at this module
            if issubclass(w.category, ConvergenceWarning):
                warnings.warn(
                    f"HiddenMarkovModel.fit(method='svi'): {w.message} "
                    "(fit_result_.converged is False)",
                    ConvergenceWarning,
                    stacklevel=3,
                )
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.set_params(**{name: estimate.values[name] for name in self._table_names()})
        self.__dict__["_autoguide"] = estimate.guide
        return FitResult.from_history(
            estimate.history,
            method="svi",
            objective_name="log_joint",
            converged=bool(estimate.converged),
        )

    @property
    def history_(self) -> list[float]:
        """Deprecated: use ``fit_result_``. The EM/count objective per iteration, or the
        SVI losses (−ELBO) per step, as before."""
        warnings.warn(
            "HiddenMarkovModel.history_ is deprecated; use fit_result_ (objective per "
            "iteration, higher is better, for every method)",
            DeprecationWarning,
            stacklevel=2,
        )
        result = self.fit_result_
        if result is None:
            return []
        if result.method == "svi" and result.history is not None:
            return list(result.history.losses)
        return list(result.objective)


def permutation_match(true_emission: torch.Tensor, learned_emission: torch.Tensor) -> torch.Tensor:
    """The relabelling p (learned state p[k] plays true state k) that minimises the summed
    distance between emission parameters (Hungarian algorithm): HMMs are identifiable only
    up to a permutation of their states."""
    from scipy.optimize import linear_sum_assignment

    k = true_emission.shape[0]
    cost = torch.cdist(true_emission.reshape(k, -1), learned_emission.reshape(k, -1))
    _, cols = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(cols, device=true_emission.device)
