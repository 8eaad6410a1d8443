"""Learning the tables: closed form, EM with missing values, SVI on the model/guide pair."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import torch

from pyrobn.errors import (
    ConfigurationError,
    ShapeError,
    ZeroProbabilityEvidence,
)
from pyrobn.models.bayesnet._types import MISSING

__all__ = ["FitResult", "LearningMixin"]


@dataclass
class FitResult:
    """What :meth:`DiscreteBayesianNetwork.fit` did.

    ``log_likelihood`` is the total log-likelihood Σ_k log p(x^k) (eq. 29, missing
    values summed out) after each EM iteration of the best restart (one entry for the
    closed form); ``restarts`` holds every restart's history.
    """

    method: str
    log_likelihood: list[float]
    restarts: list[list[float]] = field(default_factory=list)
    best_restart: int = 0
    converged: bool = True

    @property
    def final_log_likelihood(self) -> float:
        return self.log_likelihood[-1]


class LearningMixin:
    # ------------------------------------------------------------------ data
    def _data_columns(self, data: Any) -> tuple[dict[int, torch.Tensor], int]:
        """Data as {variable id: LongTensor(N)} (-1 = missing; absent = hidden) and N."""
        if isinstance(data, torch.Tensor | np.ndarray):
            t = torch.as_tensor(data)
            if t.dim() != 2 or t.shape[1] != len(self.variables):
                raise ShapeError(
                    f"data as a matrix must have shape (N, {len(self.variables)}) with columns "
                    f"{list(self.variables)}, got {tuple(t.shape)}"
                )
            data = {n: t[:, i] for i, n in enumerate(self.variables)}
        if not isinstance(data, Mapping) or not data:
            raise ConfigurationError(
                "data must be a non-empty mapping name -> 1-D values, or a matrix"
            )
        cols: dict[int, torch.Tensor] = {}
        rows = None
        for name, value in data.items():
            var = self._var(name)
            col = self._column(var, value, allow_missing=True)
            if rows is not None and col.shape[0] != rows:
                raise ShapeError(f"data column {name!r} has {col.shape[0]} rows, others {rows}")
            rows = col.shape[0]
            cols[var] = col
        if not rows:
            raise ShapeError("data has no rows")
        return cols, rows

    def _evidence_from_columns(
        self, cols: Mapping[int, torch.Tensor]
    ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """Hard evidence for complete columns, a 0/-inf log-likelihood for partly missing
        ones (the missing entries allow every state), nothing for wholly missing ones."""
        hard, soft = {}, {}
        for var, col in cols.items():
            missing = col == MISSING
            if not bool(missing.any()):
                hard[var] = col
            elif not bool(missing.all()):
                states = torch.arange(self.cards[var], device=col.device)
                allowed = (col[:, None] == states) | missing[:, None]
                zero = torch.zeros((), dtype=torch.float64, device=col.device)
                soft[var] = torch.where(allowed, zero, zero - math.inf)
        return hard, soft

    def log_prob(self, data: Any) -> torch.Tensor:
        """log p(x^k) per row (eq. 30), missing entries (-1) and absent columns summed out."""
        cols, _ = self._data_columns(data)
        hard, soft = self._evidence_from_columns(cols)
        return self._engine.log_marginal(self._log_tables(), (), hard, soft)

    # ------------------------------------------------------------------ learning
    def _family_counts(self, cols: Mapping[int, torch.Tensor], var: int) -> torch.Tensor:
        """Counts N(pa, x) of one family from complete data (sufficient statistics, eq. 31)."""
        family = (*self._parent_ids[var], var)
        shape = tuple(self.cards[v] for v in family)
        flat = torch.zeros_like(cols[var])
        for v, size in zip(family, shape):
            flat = flat * size + cols[v]
        counts = torch.bincount(flat, minlength=math.prod(shape))
        return counts.reshape(shape).to(torch.float64)

    def _pseudo_counts(self, prior: Any, var: int) -> torch.Tensor | float:
        if isinstance(prior, Mapping):
            prior = prior.get(self.variables[var], 0.0)
        value = torch.as_tensor(prior, dtype=torch.float64, device=self.device)
        if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
            raise ConfigurationError(f"pseudo-counts must be finite and >= 0, got {prior!r}")
        return value

    @staticmethod
    def _normalise(counts: torch.Tensor) -> torch.Tensor:
        """Rows of counts -> probabilities; a row never seen becomes uniform."""
        total = counts.sum(-1, keepdim=True)
        uniform = torch.full_like(counts, 1.0 / counts.shape[-1])
        return torch.where(total > 0, counts / total.clamp_min(1e-300), uniform)

    def _expected_counts(
        self, tables: list[torch.Tensor], hard: dict, soft: dict, weights: torch.Tensor
    ) -> tuple[float, list[torch.Tensor]]:
        """E-step: Σ_k w_k log p(x^k) and E[N(pa, x)] = Σ_k w_k p(x_n=x, Pa=pa | x^k_obs) for
        every family, the latter as the gradient of the former w.r.t. the log-tables."""
        logs = [t.log().detach().requires_grad_(True) for t in tables]
        log_z = self._engine.log_marginal(logs, (), hard, soft)
        if bool(torch.isneginf(log_z).any()):
            row = int(torch.isneginf(log_z).nonzero()[0])
            raise ZeroProbabilityEvidence(
                f"data row {row} has probability zero under the current tables"
            )
        total = (log_z * weights).sum()
        grads = torch.autograd.grad(total, logs)
        return float(total.detach()), [g.detach() for g in grads]

    def fit(
        self,
        data: Any,
        prior: float | Mapping[str, Any] = 0.0,
        *,
        method: str = "em",
        restarts: int = 5,
        max_iter: int = 500,
        tol: float = 1e-9,
        seed: int | None = 0,
        steps: int = 500,
        lr: float = 0.05,
        subsample_size: int | None = None,
    ) -> FitResult:
        """Learn the CPTs from data (rows of states; -1 or an absent column = missing).

        Complete data: the closed-form MLE of eq. 31, p(x | pa) = N(pa, x) / N(pa), or the
        MAP estimate under a Dirichlet(prior + 1) prior, (N(pa, x) + prior) / (N(pa) + K
        prior) (``prior`` a pseudo-count, per node through a mapping). Rows of a parent
        assignment never seen become uniform.

        Missing values or hidden variables: EM on the marginal likelihood Σ_k log p(x^k_obs)
        with the missing values summed out exactly; the E-step's expected counts are the
        gradient of the log-likelihood w.r.t. the log-tables (one contraction); each
        iteration never lowers the objective. ``restarts`` random starts (Dirichlet(1)
        tables, seeded), the best kept; ``log_likelihood`` holds the value before each
        M-step and after the last (converged when it rises by <= ``tol`` relatively).

        ``method="svi"`` learns the same marginal likelihood through the model/guide pair
        instead: softmax-parametrised tables, ``TraceEnum_ELBO`` (exact: every latent is
        enumerated, so the loss is -log p(data) - log prior) and Adam(``lr``) for ``steps``
        steps via :func:`pyrobn.infer.fit_svi` (minibatches with ``subsample_size``);
        ``log_likelihood`` then holds -loss per step.
        """
        if method not in ("em", "svi"):
            raise ConfigurationError(f"method must be 'em' or 'svi', got {method!r}")
        cols, _ = self._data_columns(data)
        complete = len(cols) == len(self.variables) and all(
            not bool((c == MISSING).any()) for c in cols.values()
        )
        pseudo = [self._pseudo_counts(prior, v) for v in range(len(self.variables))]
        if complete:
            for var in range(len(self.variables)):
                counts = self._family_counts(cols, var) + pseudo[var]
                self._buffers[f"table_{var}"].copy_(self._normalise(counts))
            return FitResult("closed-form", [float(self.log_prob(data).sum())])
        if restarts < 1 or max_iter < 1:
            raise ConfigurationError(
                f"restarts and max_iter must be >= 1, got {restarts}, {max_iter}"
            )
        if method == "svi":
            return self._fit_svi(data, pseudo, restarts, steps, lr, seed, subsample_size)
        distinct, weights = self._distinct_rows(cols)
        hard, soft = self._evidence_from_columns(distinct)
        gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
        best: tuple[float, list[torch.Tensor], list[float], bool] | None = None
        histories = []
        for _ in range(restarts):
            tables = self._random_tables(gen)
            history: list[float] = []
            converged = False
            for _ in range(max_iter):
                ll, counts = self._expected_counts(tables, hard, soft, weights)
                if history and ll - history[-1] <= tol * abs(ll):
                    history.append(ll)
                    converged = True
                    break
                history.append(ll)
                tables = [self._normalise(c + p) for c, p in zip(counts, pseudo)]
            histories.append(history)
            if best is None or history[-1] > best[0]:
                best = (history[-1], tables, history, converged)
        assert best is not None
        with torch.no_grad():
            for var, table in enumerate(best[1]):
                self._buffers[f"table_{var}"].copy_(table)
        return FitResult(
            "em", best[2], histories, best_restart=histories.index(best[2]), converged=best[3]
        )

    @staticmethod
    def _distinct_rows(
        cols: Mapping[int, torch.Tensor],
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """The distinct rows of the data and how often each occurs (float64 weights):
        identical rows contribute identically to the likelihood, so each is contracted once."""
        order = sorted(cols)
        rows, counts = torch.unique(
            torch.stack([cols[v] for v in order], 1), dim=0, return_counts=True
        )
        return {v: rows[:, j] for j, v in enumerate(order)}, counts.to(torch.float64)

    def _random_tables(self, gen: torch.Generator) -> list[torch.Tensor]:
        """Tables with Dirichlet(1) rows (normalised Exponential(1) draws), seeded."""
        return [
            self._normalise(-torch.rand(t.shape, generator=gen, dtype=torch.float64).log()).to(
                self.device
            )
            for t in self._tables()
        ]

    def _fit_svi(
        self,
        data: Any,
        pseudo: list[torch.Tensor],
        restarts: int,
        steps: int,
        lr: float,
        seed: int | None,
        subsample_size: int | None,
    ) -> FitResult:
        """Maximum marginal likelihood (or MAP) through the model/guide pair and fit_svi."""
        from pyro.infer import TraceEnum_ELBO
        from pyro.optim import Adam

        from pyrobn.infer.svi import fit_svi

        store = pyro.get_param_store()
        names = [f"{self._pyro_name}.svi_logits_{i}" for i in range(len(self.variables))]
        gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
        best: tuple[float, list[torch.Tensor], list[float]] | None = None
        histories = []
        for restart in range(restarts):
            start = self._random_tables(gen)
            for name in names:
                if name in store:
                    del store[name]

            def svi_model(data: Any, start: list[torch.Tensor] = start) -> None:
                tables = [
                    torch.softmax(pyro.param(name, init.log()), -1)
                    for name, init in zip(names, start)
                ]
                log_prior = sum((p * t.log()).sum() for p, t in zip(pseudo, tables))
                pyro.factor("dirichlet_prior", torch.as_tensor(log_prior, dtype=torch.float64))
                self._model_body(tables, data, None, subsample_size)

            def svi_guide(data: Any) -> None:
                """Empty: every latent site is enumerated in the model."""

            history = fit_svi(
                svi_model,
                svi_guide,
                data,
                loss=TraceEnum_ELBO(max_plate_nesting=1),
                optim=Adam({"lr": lr}),
                steps=steps,
                progress=False,
                seed=None if seed is None else int(seed) + restart,
                description="bayesnet svi",
            )
            tables = [torch.softmax(store[name].detach(), -1) for name in names]
            for name in names:
                del store[name]
            ll = self._data_log_likelihood(data, tables)
            histories.append([-loss for loss in history.losses])
            if best is None or ll > best[0]:
                best = (ll, tables, histories[-1])
        assert best is not None
        with torch.no_grad():
            for var, table in enumerate(best[1]):
                self._buffers[f"table_{var}"].copy_(table)
        return FitResult(
            "svi", best[2], histories, best_restart=histories.index(best[2]), converged=True
        )

    def _data_log_likelihood(self, data: Any, tables: list[torch.Tensor]) -> float:
        cols, _ = self._data_columns(data)
        hard, soft = self._evidence_from_columns(cols)
        log_tables = [t.log() for t in tables]
        return float(self._engine.log_marginal(log_tables, (), hard, soft).sum())
