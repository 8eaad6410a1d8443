"""Learning the tables: closed form, EM with missing values, SVI on the model/guide pair."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyro
import torch

from pyrobn.errors import (
    ConfigurationError,
    ShapeError,
    UnknownVariableError,
    ZeroProbabilityEvidence,
)
from pyrobn.infer.em import run_em
from pyrobn.infer.result import FitResult
from pyrobn.models.bayesnet._types import MISSING
from pyrobn.random import generator
from pyrobn.validation import check_int

__all__ = ["FitResult", "LearningMixin"]

#: the Dirichlet concentration of "no prior": MAP with α = 1 is maximum likelihood
FLAT = 1.0


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

    def _pseudo_counts(self, concentration: Any, var: int) -> torch.Tensor:
        """α - 1 for the table of ``var`` (a number, a per-node mapping, or a tensor
        broadcasting to the table), checked: α >= 1 (the MAP exists and is unique)."""
        name = self.variables[var]
        if isinstance(concentration, Mapping):
            for key in concentration:  # a misspelt node must not silently mean "no prior"
                if key not in self._index:
                    raise UnknownVariableError(
                        f"concentration is given for {key!r}, which is not a node; the "
                        f"network's variables are {list(self.variables)}"
                    )
            concentration = concentration.get(name, FLAT)
        if isinstance(concentration, bool | np.bool_) or (
            isinstance(concentration, torch.Tensor | np.ndarray)
            and concentration.dtype in (torch.bool, np.bool_)
        ):
            raise ConfigurationError(
                f"concentration for {name!r} must be a number >= 1, not a boolean: "
                f"{concentration!r}"
            )
        try:
            alpha = torch.as_tensor(concentration, dtype=torch.float64, device=self.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigurationError(
                f"concentration for {name!r} must be a number or an array, got {concentration!r}"
            ) from exc
        if not bool(torch.isfinite(alpha).all()) or bool((alpha < 1).any()):
            raise ConfigurationError(
                f"concentration for {name!r} must be finite and >= 1 (1 = no prior; MAP adds "
                f"alpha - 1 pseudo-counts), got {concentration!r}"
            )
        shape = self.table(name).shape
        try:
            return (alpha - 1).expand(shape)
        except RuntimeError as exc:
            raise ShapeError(
                f"concentration for {name!r} must broadcast to its table's shape "
                f"{tuple(shape)}, got shape {tuple(alpha.shape)}"
            ) from exc

    def _log_prior(self, tables: list[torch.Tensor], pseudo: list[torch.Tensor]) -> float:
        """Σ (α - 1) log θ over every entry (the Dirichlet log-density up to a constant);
        0 for α = 1. Entries with α = 1 and θ = 0 contribute 0, not NaN."""
        total = 0.0
        for p, t in zip(pseudo, tables):
            if bool((p != 0).any()):
                total += float(torch.where(p != 0, p * t.log(), torch.zeros_like(t)).sum())
        return total

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
        concentration: float | Mapping[str, Any] = FLAT,
        *,
        method: str = "em",
        restarts: int = 5,
        max_iter: int = 500,
        tol: float = 1e-9,
        seed: int | None = 0,
        steps: int = 500,
        lr: float = 0.05,
        batch_size: int | None = None,
        prior: float | Mapping[str, Any] | None = None,
        subsample_size: int | None = None,
    ) -> Any:
        """Learn the tables from data (rows of states; -1 or an absent column = missing);
        returns the network, with what happened in ``fit_result_``
        (:class:`pyrobn.infer.result.FitResult`).

        ``concentration`` α is a Dirichlet(α) prior on every row (a number, or per node
        through a mapping): the estimate is the MAP, which adds α - 1 pseudo-counts to
        each cell; α = 1 (the default) is plain maximum likelihood.

        Complete data: the closed form of eq. 31, p(x | pa) = (N(pa, x) + α - 1) /
        (N(pa) + K (α - 1)); a parent assignment never seen (and α = 1) gives a uniform
        row. ``fit_result_.method == "closed_form"``.

        Missing values or hidden variables: EM (:func:`pyrobn.infer.em.run_em`) on the
        marginal likelihood Σ_k log p(x^k_obs) (plus the log prior), the missing values
        summed out exactly; the E-step's expected counts are the gradient of the
        log-likelihood w.r.t. the log-tables (one contraction over the distinct rows).
        ``restarts`` random starts (Dirichlet(1) tables from a local generator seeded by
        ``seed``), the best kept; ``max_iter``, ``tol`` and the stopping rule are the
        driver's. The objective never decreases.

        ``method="svi"`` learns the same objective through the model/guide pair instead:
        softmax-parametrised tables, ``TraceEnum_ELBO`` (exact: every latent is
        enumerated) and Adam(``lr``) for ``steps`` steps via :func:`pyrobn.infer.fit_svi`
        (minibatches of ``batch_size`` rows).

        Deprecated: ``prior=a`` (a pseudo-count) is ``concentration=a + 1``;
        ``subsample_size`` is ``batch_size``.
        """
        started = time.perf_counter()
        if prior is not None:
            warnings.warn(
                "fit(prior=a) is deprecated: use concentration=a + 1 (a Dirichlet "
                "concentration; MAP adds alpha - 1 pseudo-counts)",
                DeprecationWarning,
                stacklevel=2,
            )
            if concentration is not FLAT and concentration != FLAT:
                raise ConfigurationError("give concentration or the deprecated prior, not both")
            concentration = (
                {k: _plus_one(v) for k, v in prior.items()}
                if isinstance(prior, Mapping)
                else _plus_one(prior)
            )
        if subsample_size is not None:
            warnings.warn(
                "fit(subsample_size=) is deprecated: use batch_size=",
                DeprecationWarning,
                stacklevel=2,
            )
            batch_size = subsample_size
        if method not in ("em", "svi"):
            raise ConfigurationError(f"method must be 'em' or 'svi', got {method!r}")
        cols, _ = self._data_columns(data)
        pseudo = [self._pseudo_counts(concentration, v) for v in range(len(self.variables))]
        with_prior = any(bool((p != 0).any()) for p in pseudo)
        objective_name = "log_posterior" if with_prior else "log_likelihood"
        complete = len(cols) == len(self.variables) and all(
            not bool((c == MISSING).any()) for c in cols.values()
        )
        with self._fitting(seed):
            if complete:
                tables = [
                    self._normalise(self._family_counts(cols, v) + pseudo[v])
                    for v in range(len(self.variables))
                ]
                self._store_tables(tables)
                value = float(self.log_prob(data).sum()) + self._log_prior(tables, pseudo)
                result = FitResult("closed_form", [value], objective_name)
                return self._set_result(result, started)
            restarts = check_int(restarts, "restarts")
            max_iter = check_int(max_iter, "max_iter")
            if method == "svi":
                result = self._fit_svi(data, pseudo, restarts, steps, lr, seed, batch_size)
                return self._set_result(result, started)
            distinct, weights = self._distinct_rows(cols)
            hard, soft = self._evidence_from_columns(distinct)

            def step(tables: list[torch.Tensor]) -> tuple[list[torch.Tensor], float]:
                ll, counts = self._expected_counts(tables, hard, soft, weights)
                new = [self._normalise(c + p) for c, p in zip(counts, pseudo)]
                return new, ll + self._log_prior(tables, pseudo)

            def final(tables: list[torch.Tensor]) -> float:
                ll, _ = self._expected_counts(tables, hard, soft, weights)
                return ll + self._log_prior(tables, pseudo)

            tables, result = run_em(
                lambda restart, gen: self._random_tables(gen),
                step,
                max_iter=max_iter,
                tol=tol,
                restarts=restarts,
                seed=seed,
                objective_name=objective_name,
                final=final,
            )
            self._store_tables(tables)
            return self._set_result(result, started)

    def _store_tables(self, tables: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for var, table in enumerate(tables):
                self._buffers[f"table_{var}"].copy_(table)

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
        batch_size: int | None,
    ) -> FitResult:
        """Maximum marginal likelihood (or MAP) through the model/guide pair and fit_svi."""
        from pyro.infer import TraceEnum_ELBO
        from pyro.optim import Adam

        from pyrobn.infer.svi import fit_svi

        store = pyro.get_param_store()
        names = [f"{self._pyro_name}.svi_logits_{i}" for i in range(len(self.variables))]
        gen = generator(seed)
        best: tuple[float, list[torch.Tensor], list[float], Any] | None = None
        histories = []
        for _restart in range(restarts):
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
                self._model_body(tables, data, None, batch_size)

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
                seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)),
                description="bayesnet svi",
            )
            tables = [torch.softmax(store[name].detach(), -1) for name in names]
            for name in names:
                del store[name]
            value = self._data_log_likelihood(data, tables) + self._log_prior(tables, pseudo)
            histories.append([-loss for loss in history.losses])
            if best is None or value > best[0]:
                best = (value, tables, histories[-1], history)
        assert best is not None
        self._store_tables(best[1])
        index = next(i for i, h in enumerate(histories) if h is best[2])
        return FitResult(
            "svi",
            best[2],
            "elbo",
            restarts=histories,
            best_restart=index,
            converged=True,
            history=best[3],
        )

    def _data_log_likelihood(self, data: Any, tables: list[torch.Tensor]) -> float:
        cols, _ = self._data_columns(data)
        hard, soft = self._evidence_from_columns(cols)
        log_tables = [t.log() for t in tables]
        return float(self._engine.log_marginal(log_tables, (), hard, soft).sum())


def _plus_one(prior: Any) -> Any:
    """The concentration of a pseudo-count (the deprecated ``prior=``)."""
    if isinstance(prior, bool | np.bool_):
        raise ConfigurationError(f"prior must be a number, not a boolean: {prior!r}")
    if isinstance(prior, torch.Tensor | np.ndarray):
        return prior + 1
    try:
        return float(prior) + 1
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"prior must be a number, got {prior!r}") from exc
