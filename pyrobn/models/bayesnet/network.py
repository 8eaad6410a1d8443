"""The class core: structure, tables, evidence handling and the Pyro model/guide pair."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.ops.indexing import Vindex

from pyrobn.device import device as default_device
from pyrobn.errors import (
    ConfigurationError,
    InvalidDistributionError,
    OutOfSupportError,
    ShapeError,
    UnknownVariableError,
    ZeroProbabilityEvidence,
)
from pyrobn.infer.enumeration import CompiledContraction, underflow_safe
from pyrobn.models.base import PyrobnModule
from pyrobn.models.bayesnet._types import MISSING, Evidence
from pyrobn.models.bayesnet.cpt import CPT, ROW_TOLERANCE, normalise_rows, topological_order
from pyrobn.models.bayesnet.engine import Engine, FlatTables
from pyrobn.models.bayesnet.learning import LearningMixin
from pyrobn.models.bayesnet.queries import QueriesMixin
from pyrobn.models.bayesnet.structure import StructureMixin
from pyrobn.validation import check_finite, check_integers_in_range

__all__ = ["MISSING", "ROW_TOLERANCE", "DiscreteBayesianNetwork"]


class DiscreteBayesianNetwork(QueriesMixin, LearningMixin, StructureMixin, PyrobnModule):
    """A Bayesian network over categorical variables, p(x) = Π_n p(x_n | Pa(x_n)) (eq. 8).

    Args:
        cpts: node name -> :class:`CPT` (or a mapping ``{"table": ..., "parents": [...]}``).
        states: optional names of each variable's states, e.g. ``{"x1": ["no", "yes"]}``;
            queries and evidence then accept names as well as indices.
        device: where the tables live (default :func:`pyrobn.device`).

    Queries run in float64 on the tables' device through a compiled variable
    elimination (:class:`pyrobn.infer.enumeration.CompiledContraction`) whose plan is
    cached per query shape, restricted to the ancestors of the query and evidence
    (the other nodes are barren). It runs in linear space when no nonzero product of
    table entries can underflow float64 (checked once per table version) and in log
    space otherwise. Evidence may be batched (one 1-D tensor of length B per observed
    variable), answered in one contraction with a leading batch dimension.

    >>> from pyrobn import CPT, DiscreteBayesianNetwork
    >>> net = DiscreteBayesianNetwork({"a": CPT([0.3, 0.7]),
    ...                                "b": CPT([[0.9, 0.1], [0.2, 0.8]], parents=["a"])})
    >>> net.query("a", evidence={"b": 1})
    tensor([0.0508, 0.9492], dtype=torch.float64)
    """

    max_plate_nesting = 1

    def __init__(
        self,
        cpts: Mapping[str, CPT | Mapping[str, Any]],
        states: Mapping[str, Sequence[str]] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if not isinstance(cpts, Mapping) or not cpts:
            raise ConfigurationError("cpts must be a non-empty mapping of node name -> CPT")
        given = {str(k): v if isinstance(v, CPT) else CPT(**v) for k, v in cpts.items()}
        config_states = {str(k): [str(s) for s in v] for k, v in (states or {}).items()}
        super().__init__(
            cpts={
                n: {"table": c.table.detach().cpu().clone(), "parents": list(c.parents)}
                for n, c in given.items()
            },
            states=config_states or None,
        )
        parents = {n: c.parents for n, c in given.items()}
        for n, ps in parents.items():
            for p in ps:
                if p not in given:
                    raise UnknownVariableError(
                        f"node {n!r} has parent {p!r}, which is not a node of the network "
                        f"(nodes: {sorted(given)})"
                    )
            if len(set(ps)) != len(ps):
                raise ConfigurationError(f"node {n!r} lists a parent twice: {list(ps)}")
        self.variables: tuple[str, ...] = tuple(topological_order(list(given), parents))
        self._index = {n: i for i, n in enumerate(self.variables)}
        self.cards = tuple(given[n].cardinality for n in self.variables)
        self._parent_ids = tuple(tuple(self._index[p] for p in parents[n]) for n in self.variables)
        for n, names in config_states.items():
            if n not in self._index:
                raise UnknownVariableError(f"states given for {n!r}, which is not a node")
            if len(names) != self.cards[self._index[n]] or len(set(names)) != len(names):
                raise ShapeError(
                    f"{n!r} has {self.cards[self._index[n]]} states but {len(names)} distinct "
                    f"names were given: {names}"
                )
        self.states: dict[str, tuple[str, ...] | None] = {
            n: tuple(config_states[n]) if n in config_states else None for n in self.variables
        }
        for n in self.variables:
            self._check_table(n, given[n])
        target = torch.device(device) if device is not None else default_device()
        for i, n in enumerate(self.variables):
            table = given[n].table.to(target, torch.float64).clone()
            self.register_buffer(f"table_{i}", normalise_rows(table))
        self._ancestors = self._ancestor_sets()
        self._engine = CompiledContraction(
            self.cards, [(*self._parent_ids[i], i) for i in range(len(self.variables))]
        )
        self._flat_engine = Engine(self.cards, self._parent_ids)
        self._flat_tables = FlatTables()
        #: bytes one exact-inference table may take (None: ``PYROBN_MEMORY_BUDGET``, 4 GiB)
        self.memory_budget: int | None = None
        self._cache_key: tuple | None = None
        self._log_cache: list[torch.Tensor] = []
        self._linear_ok = False
        self._scalar_states: dict[tuple[torch.device, int, int], torch.Tensor] = {}
        #: all posteriors: {(observed variables, compiled kernel?, memory budget):
        #: whether the per-variable queries beat the calibration} (the structure's cost
        #: model, :meth:`_queries_cheaper`)
        self._route_cache: dict[tuple[tuple[int, ...], bool, int], bool] = {}
        #: the per-variable queries that take their pairwise path, per observed set
        #: (:meth:`_path_queries`)
        self._paths_kept: dict[tuple, dict[int, Any]] = {}
        #: all posteriors: the junction trees triangulated for sets of observed variables
        self._observed_trees: dict[tuple[int, ...], Any] = {}

    # ------------------------------------------------------------------ structure
    def _check_table(self, name: str, cpt: CPT) -> None:
        table = cpt.table
        pids = self._parent_ids[self._index[name]]
        expected = (*(self.cards[p] for p in pids), table.shape[-1] if table.dim() else "k")
        if table.dim() != len(pids) + 1 or table.shape[-1] < 1:
            shown = ", ".join(f"{self.variables[p]}: {self.cards[p]}" for p in pids)
            raise ShapeError(
                f"CPT of {name!r} must have shape {expected} (one axis per parent [{shown}], "
                f"then the node's states), got {tuple(table.shape)}"
            )
        if tuple(table.shape[:-1]) != tuple(self.cards[p] for p in pids):
            raise ShapeError(
                f"CPT of {name!r} must have shape {expected} to match its parents "
                f"{[self.variables[p] for p in pids]}, got {tuple(table.shape)}"
            )
        check_finite(table, f"CPT of {name!r}")
        rows = table.reshape(-1, table.shape[-1])
        negative = (rows < 0).any(-1)
        sums = rows.sum(-1)
        bad = (sums - 1).abs() > ROW_TOLERANCE
        for mask, what in ((negative, "has a negative entry"), (bad, None)):
            if mask.any():
                r = int(mask.nonzero()[0])
                row = rows[r].tolist()
                where = self._row_label(name, r)
                detail = what or f"sums to {float(sums[r]):.10g}, not 1 (tolerance {ROW_TOLERANCE})"
                raise InvalidDistributionError(f"CPT of {name!r}: {where} {detail}: {row}")

    def _row_label(self, name: str, flat_row: int) -> str:
        pids = self._parent_ids[self._index[name]]
        if not pids:
            return f"p({name})"
        idx = np.unravel_index(flat_row, [self.cards[p] for p in pids])
        cond = ", ".join(
            f"{self.variables[p]}={self._state_name(p, int(k))}" for p, k in zip(pids, idx)
        )
        return f"the row p({name} | {cond})"

    def _state_name(self, var: int, k: int) -> str:
        names = self.states[self.variables[var]]
        return names[k] if names else str(k)

    def _ancestor_sets(self) -> list[frozenset[int]]:
        out: list[frozenset[int]] = []
        for i, pids in enumerate(self._parent_ids):
            out.append(frozenset({i}).union(*(out[p] for p in pids)))
        return out

    def parents(self, name: str) -> tuple[str, ...]:
        """The parents Pa(name), in the order of its table's axes."""
        return tuple(self.variables[p] for p in self._parent_ids[self._var(name)])

    def cardinality(self, name: str) -> int:
        """The number of states of ``name``."""
        return self.cards[self._var(name)]

    def state_names(self, name: str) -> tuple[str, ...]:
        """The names of the states of ``name`` (their indices as text when unnamed)."""
        names = self.states[self.variables[self._var(name)]]
        return names if names else tuple(str(k) for k in range(self.cardinality(name)))

    def table(self, name: str) -> torch.Tensor:
        """The CPT p(name | Pa(name)) as a tensor (parents' axes, then the node's)."""
        return self._buffers[f"table_{self._var(name)}"]

    def cpt(self, name: str) -> CPT:
        return CPT(self.table(name).clone(), parents=self.parents(name))

    def _tables(self) -> list[torch.Tensor]:
        """The tables in variable order (the buffers, registered as table_0, table_1, ...)."""
        tables = list(self._buffers.values())
        if len(tables) != len(self.variables):  # pragma: no cover - only tables are buffers
            buffers = self._buffers
            tables = [buffers[f"table_{i}"] for i in range(len(self.variables))]
        return tables

    @property
    def device(self) -> torch.device:
        """The device of the tables."""
        return self._buffers["table_0"].device

    def _refresh(self) -> list[torch.Tensor]:
        """The tables; the log-tables and the underflow check are redone only when a
        table changed (in place or replaced)."""
        tables = self._tables()
        key = tuple((t.data_ptr(), t._version, t.device) for t in tables)
        if self._cache_key != key:
            self._log_cache = [t.log() for t in tables]
            self._linear_ok = underflow_safe(tables)
            self._cache_key = key
        return tables

    def _log_tables(self) -> list[torch.Tensor]:
        self._refresh()
        return self._log_cache

    def _log_joint(
        self, query: tuple[int, ...], ev: dict[int, torch.Tensor], factors: tuple[int, ...]
    ) -> torch.Tensor:
        """log p(x_Q, e) (B, *cards): linear-space contraction when it cannot underflow."""
        tables = self._refresh()
        if self._linear_ok:
            return self._engine.marginal(tables, query, ev, factors=factors).log()
        return self._engine.log_marginal(self._log_cache, query, ev, factors=factors)

    def _check_state(self) -> None:
        """After a load: every table finite, non-negative, rows summing to 1 (within
        ``ROW_TOLERANCE``; then normalised exactly), as the constructor demands."""
        super()._check_state()
        for i, n in enumerate(self.variables):
            table = self._buffers[f"table_{i}"]
            if table.dtype != torch.float64:
                raise ShapeError(f"the table of {n!r} must be float64, got {table.dtype}")
            self._check_table(n, CPT(table.detach().cpu(), parents=self.parents(n)))
            with torch.no_grad():
                normalise_rows(table)

    def set_table(self, name: str, table: Any) -> None:
        """Replace p(name | Pa(name)), validated like the constructor's tables."""
        cpt = CPT(table, self.parents(name))
        self._check_table(name, cpt)
        old = self.table(name)
        with torch.no_grad():
            old.copy_(normalise_rows(cpt.table.to(old.device, torch.float64).clone()))

    # ------------------------------------------------------------------ input checks
    def _var(self, name: str) -> int:
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise UnknownVariableError(
                f"unknown variable {name!r}; the network's variables are {list(self.variables)}"
            ) from None

    def _state(self, var: int, value: Any) -> int:
        if type(value) is int and 0 <= value < self.cards[var]:  # the common case, fast
            return value
        name = self.variables[var]
        names = self.states[name]
        if isinstance(value, str):
            if names and value in names:
                return names.index(value)
            raise UnknownVariableError(
                f"{name!r} has no state {value!r}; its states are "
                f"{list(names) if names else list(range(self.cards[var]))}"
            )
        if isinstance(value, torch.Tensor | np.integer | np.ndarray):
            value = value.item()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise OutOfSupportError(f"state of {name!r} must be an index or a name, got {value!r}")
        if not 0 <= value < self.cards[var]:
            raise OutOfSupportError(
                f"state {value} of {name!r} is out of range: it has {self.cards[var]} states "
                f"(0..{self.cards[var] - 1})"
            )
        return int(value)

    def _column(self, var: int, value: Any, *, allow_missing: bool = False) -> torch.Tensor:
        """A batch of states of ``var`` as a LongTensor on the tables' device."""
        name = self.variables[var]
        if isinstance(value, torch.Tensor) and value.dim() == 1:
            col = value
        elif isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iuf":
            col = torch.as_tensor(value)
        elif isinstance(value, Sequence) and not isinstance(value, str):
            if any(isinstance(v, str) for v in value):
                col = torch.tensor([self._state(var, v) for v in value])
            else:
                col = torch.as_tensor(np.asarray(value))
        else:
            raise ShapeError(f"batched values of {name!r} must be a 1-D tensor, got {value!r}")
        if col.dim() != 1:
            raise ShapeError(f"values of {name!r} must be 1-D, got shape {tuple(col.shape)}")
        check_integers_in_range(
            col,
            0,
            self.cards[var],
            f"values of {name!r}",
            allow=MISSING if allow_missing else None,
        )
        return col.to(self.device, torch.long)

    def _evidence(self, evidence: Evidence | None) -> tuple[dict[int, torch.Tensor], int | None]:
        """Evidence as {variable id: LongTensor(B)} and B (None when unbatched)."""
        if not evidence:
            return {}, None
        if not isinstance(evidence, Mapping):
            raise ConfigurationError(f"evidence must be a mapping name -> state, got {evidence!r}")
        out: dict[int, torch.Tensor] = {}
        batch: int | None = None
        dev = self.device
        for name, value in evidence.items():
            var = self._var(name)
            scalar = not isinstance(value, torch.Tensor | np.ndarray | list | tuple) or (
                isinstance(value, torch.Tensor | np.ndarray) and value.ndim == 0
            )
            if scalar:
                state = self._state(var, value)
                key = (dev, var, state)
                cached = self._scalar_states.get(key)
                if cached is None:
                    cached = self._scalar_states[key] = torch.tensor([state], device=dev)
                out[var] = cached
                continue
            col = self._column(var, value)
            if batch is not None and col.shape[0] != batch:
                raise ShapeError(
                    f"batched evidence must have one length: {name!r} has {col.shape[0]} rows, "
                    f"earlier variables {batch}"
                )
            batch = col.shape[0]
            out[var] = col
        return out, batch

    def _relevant(self, variables: Sequence[int]) -> tuple[int, ...]:
        """Factors that matter for a sum query on ``variables``: their ancestral set
        (every other node is barren: its CPT sums to 1 and drops out)."""
        return tuple(sorted(frozenset().union(*(self._ancestors[v] for v in variables))))

    def _raise_zero(self, log_z: torch.Tensor, evidence: Evidence | None) -> None:
        log_z = torch.as_tensor(log_z, dtype=torch.float64).reshape(-1)
        bad = torch.isneginf(log_z)
        if bool(bad.any()):
            rows = bad.nonzero().flatten().tolist()
            where = (
                f" (batch rows {rows[:10]}{'...' if len(rows) > 10 else ''})"
                if log_z.numel() > 1
                else ""
            )
            raise ZeroProbabilityEvidence(
                f"the evidence {dict(evidence or {})} has probability zero under the network"
                f"{where}; conditioning on it is undefined"
            )

    # ------------------------------------------------------------------ Pyro
    def model(
        self,
        data: Any = None,
        num_rows: int | None = None,
        subsample_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """The generative model p(x) = Π_n p(x_n | Pa(x_n)) (eq. 8) over a plate of rows.

        Every node is a sample site named after it: observed where ``data`` has it;
        a column with missing entries (-1) follows Pyro's ``obs_mask`` idiom: sites
        ``<name>_observed`` (masked to the observed rows) and ``<name>_unobserved``
        (the missing rows, enumerated) joined in a deterministic site ``<name>`` (its
        value as float64);
        absent columns are latent.
        Latent sites carry ``infer={"enumerate": "parallel"}``, so ``TraceEnum_ELBO``
        with :meth:`guide` (empty: nothing is left to guess) computes -log p(data).
        """
        return self._model_body(self._tables(), data, num_rows, subsample_size)

    def _model_body(
        self,
        tables: Sequence[torch.Tensor],
        data: Any,
        num_rows: int | None,
        subsample_size: int | None,
    ) -> dict[str, torch.Tensor]:
        """The model's sites over ``tables`` (buffers, or learnable tables for SVI)."""
        cols, rows = self._data_columns(data) if data else ({}, num_rows or 1)
        values: dict[int, torch.Tensor] = {}
        enum = {"enumerate": "parallel"}
        plate = pyro.plate("data", rows, subsample_size=subsample_size, device=self.device)
        with plate as idx:
            for var, table in enumerate(tables):
                pids = self._parent_ids[var]
                probs = Vindex(table)[tuple(values[p] for p in pids)] if pids else table
                fn = dist.Categorical(probs=probs)
                name = self.variables[var]
                col = cols.get(var)
                if col is None:
                    values[var] = pyro.sample(name, fn, infer=enum)
                    continue
                col = col[idx]
                observed = col != MISSING
                if bool(observed.all()):
                    values[var] = pyro.sample(name, fn, obs=col)
                elif not bool(observed.any()):
                    values[var] = pyro.sample(name, fn, infer=enum)
                else:  # Pyro's obs_mask idiom, with the missing entries enumerated
                    with poutine.mask(mask=observed):
                        seen = pyro.sample(f"{name}_observed", fn, obs=col.clamp_min(0))
                    with poutine.mask(mask=~observed):
                        unseen = pyro.sample(f"{name}_unobserved", fn, infer=enum)
                    values[var] = torch.where(observed, seen, unseen)
                    # like pyro.deterministic, but with float64 values and log-density 0
                    # so that it mixes with the float64 tables under enumeration
                    as_float = values[var].to(table.dtype)
                    pyro.sample(
                        name, dist.Delta(as_float), obs=as_float, infer={"_deterministic": True}
                    )
        return {self.variables[v]: x for v, x in values.items()}

    def guide(
        self,
        data: Any = None,
        num_rows: int | None = None,
        subsample_size: int | None = None,
    ) -> None:
        """The empty guide: every latent site is enumerated exactly in the model."""

    # ------------------------------------------------------------------ files
    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The network as JSON (see :func:`pyrobn.models.bayesnet.formats.json.to_json`)."""
        from pyrobn.models.bayesnet.formats.json import to_json

        return to_json(self, path)

    @classmethod
    def from_json(
        cls, source: str | os.PathLike, device: str | torch.device | None = None
    ) -> DiscreteBayesianNetwork:
        """Read a network written by :meth:`to_json` (a path or the JSON text itself)."""
        from pyrobn.models.bayesnet.formats.json import from_json

        return from_json(cls, source, device=device)

    def write(self, path: str | os.PathLike, *, format: str | None = None) -> None:
        """Write the network to ``path``; the format comes from the suffix (``.bif``,
        ``.xmlbif``, ``.uai``, ``.net``, ``.json``, each optionally ``.gz``): see
        :func:`pyrobn.models.bayesnet.formats.write_network`. Reading it back with
        :func:`pyrobn.read_network` gives the same network bit for bit."""
        from pyrobn.models.bayesnet.formats import write_network

        write_network(self, path, format=format)

    @classmethod
    def from_pgmpy(
        cls, model: Any, device: str | torch.device | None = None
    ) -> DiscreteBayesianNetwork:
        """The network of a pgmpy ``DiscreteBayesianNetwork`` (its CPDs and state names)."""
        from pyrobn.models.bayesnet.formats.pgmpy import from_pgmpy

        return from_pgmpy(cls, model, device=device)

    def to_pgmpy(self) -> Any:
        """The same network as a pgmpy ``DiscreteBayesianNetwork`` (pgmpy must be installed)."""
        from pyrobn.models.bayesnet.formats.pgmpy import to_pgmpy

        return to_pgmpy(self)

    def __repr__(self) -> str:
        fams = ", ".join(
            f"p({n}|{','.join(self.parents(n))})" if self.parents(n) else f"p({n})"
            for n in self.variables
        )
        return f"DiscreteBayesianNetwork({fams})"
