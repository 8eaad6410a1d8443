"""Discrete Bayesian networks (notes 2.1): p(x_1..x_N) = Π_n p(x_n | Pa(x_n)) (eq. 8).

:class:`DiscreteBayesianNetwork` holds one conditional probability table (:class:`CPT`)
per node and answers every exact query of the notes' section 2.1.1 (marginals,
posteriors, joint probabilities, eq. 3-7) by a compiled variable elimination
(:mod:`pyrobn.infer.enumeration`; log space, or linear space where nothing can
underflow), batched over evidence rows. It is also a Pyro
model/guide pair: every node is a sample site, observed where the data has it and
enumerated in parallel where it is missing, usable with ``TraceEnum_ELBO`` and
``infer_discrete``. :func:`student_network` is the notes' example (eq. 1, Figura 1).

>>> net = student_network()
>>> net.query("x2")                         # p(x2) = [0.305, 0.695]   (eq. 3)
>>> net.probability({"x3": 1}, evidence={"x2": 1})   # 0.546 / 0.695   (eq. 7)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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
    CycleError,
    InvalidDistributionError,
    OutOfSupportError,
    PyrobnValueError,
    ShapeError,
    UnknownVariableError,
    ZeroProbabilityEvidence,
)
from pyrobn.infer.enumeration import CompiledContraction, sum_axis, underflow_safe
from pyrobn.models.base import PyrobnModule
from pyrobn.validation import check_finite, check_int, check_integers_in_range

JSON_FORMAT = "pyrobn.bayesnet"
JSON_VERSION = 1
ROW_TOLERANCE = 1e-6
MISSING = -1

Value = int | str
Evidence = Mapping[str, Any]


class CPT:
    """A conditional probability table p(x | parents).

    ``table`` has one axis per parent, in the order of ``parents``, and a last axis
    over the node's own states: ``table[a, b, k] = p(x = k | pa_1 = a, pa_2 = b)``; each
    row (last axis) sums to 1. A root node's table is a vector.

    >>> CPT([[0.8, 0.2], [0.25, 0.75]], parents=["x1"])   # p(x2 | x1), notes 2.1.1
    """

    def __init__(self, table: Any, parents: Sequence[str] = ()) -> None:
        if isinstance(parents, str):
            parents = [parents]
        self.parents = tuple(str(p) for p in parents)
        if isinstance(table, torch.Tensor):
            self.table = table.detach().to(torch.float64)
        else:
            try:
                self.table = torch.as_tensor(np.asarray(table, dtype=np.float64))
            except (TypeError, ValueError) as exc:
                raise ShapeError(f"a CPT table must be a rectangular array: {exc}") from exc

    @property
    def cardinality(self) -> int:
        """The number of states of the node."""
        return int(self.table.shape[-1]) if self.table.dim() else 0

    def __repr__(self) -> str:
        return f"CPT(shape={tuple(self.table.shape)}, parents={list(self.parents)})"


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


@dataclass(frozen=True)
class Query:
    """A parsed text query (see :func:`parse_query`).

    ``kind`` is ``"probability"`` (``assignment`` given), ``"marginal"`` (``variables``)
    or ``"mpe"``; ``evidence`` is what follows the bar.
    """

    kind: str
    variables: tuple[str, ...] = ()
    assignment: dict[str, Value] = field(default_factory=dict)
    evidence: dict[str, Value] = field(default_factory=dict)


def _parse_value(text: str) -> Value:
    text = text.strip()
    if not text:
        raise PyrobnValueError("empty value in query")
    return int(text) if text.lstrip("-").isdigit() else text


def _parse_assignments(text: str, where: str) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise PyrobnValueError(f"{where}: {part!r} is not of the form name=value")
        name, value = (t.strip() for t in part.split("=", 1))
        if name in out:
            raise PyrobnValueError(f"{where}: {name!r} is given twice")
        out[name] = _parse_value(value)
    return out


def parse_query(text: str) -> Query:
    """Parse a query string: ``"P(x2=1, x3=1)"``, ``"P(x3=1 | x2=1)"`` (a probability),
    ``"x1 | x2=0"`` or ``"P(x1 | x2=0)"`` (a table), ``"x2, x3"`` (a joint table) or
    ``"mpe | x4=1"`` (most probable explanation). States are indices or names.

    >>> parse_query("x1 | x2=0")
    Query(kind='marginal', variables=('x1',), assignment={}, evidence={'x2': 0})
    """
    body = text.strip()
    if not body:
        raise PyrobnValueError("empty query")
    is_probability = body[:2].lower() == "p(" and body.endswith(")")
    if is_probability:
        body = body[2:-1]
    head, _, tail = body.partition("|")
    evidence = _parse_assignments(tail, f"evidence of {text!r}") if tail.strip() else {}
    head = head.strip()
    if "=" in head:
        assignment = _parse_assignments(head, f"query {text!r}")
        if not assignment:
            raise PyrobnValueError(f"query {text!r} assigns no variable")
        return Query("probability", assignment=assignment, evidence=evidence)
    if head.lower() == "mpe":
        return Query("mpe", evidence=evidence)
    variables = tuple(v.strip() for v in head.split(",") if v.strip())
    if not variables:
        raise PyrobnValueError(f"query {text!r} names no variable")
    return Query("marginal", variables=variables, evidence=evidence)


def _topological_order(names: Sequence[str], parents: Mapping[str, Sequence[str]]) -> list[str]:
    """Kahn's order, stable in the declared order; raises CycleError naming a cycle."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(names)
    while remaining:
        ready = [n for n in remaining if all(p in placed for p in parents[n])]
        if not ready:
            raise CycleError(
                f"the graph has a cycle: {' -> '.join(_find_cycle(remaining, parents))}"
            )
        for n in ready:
            order.append(n)
            placed.add(n)
        remaining = [n for n in remaining if n not in placed]
    return order


def _find_cycle(nodes: Sequence[str], parents: Mapping[str, Sequence[str]]) -> list[str]:
    """A cycle among ``nodes`` (each has a parent among them), closed: [a, b, ..., a]."""
    inside = set(nodes)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = nodes[0]
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(p for p in parents[node] if p in inside)
    cycle = [*path[seen[node] :], node]
    return cycle[::-1]  # parent -> child direction


class DiscreteBayesianNetwork(PyrobnModule):
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

    >>> net = DiscreteBayesianNetwork({"a": CPT([0.3, 0.7]),
    ...                                "b": CPT([[0.9, 0.1], [0.2, 0.8]], parents=["a"])})
    >>> net.query("a", evidence={"b": 1})
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
                n: {"table": c.table.tolist(), "parents": list(c.parents)} for n, c in given.items()
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
        self.variables: tuple[str, ...] = tuple(_topological_order(list(given), parents))
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
            self.register_buffer(f"table_{i}", given[n].table.to(target, torch.float64).clone())
        self._ancestors = self._ancestor_sets()
        self._engine = CompiledContraction(
            self.cards, [(*self._parent_ids[i], i) for i in range(len(self.variables))]
        )
        self._cache_key: tuple | None = None
        self._log_cache: list[torch.Tensor] = []
        self._linear_ok = False
        self._scalar_states: dict[tuple[torch.device, int, int], torch.Tensor] = {}

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
        return self.cards[self._var(name)]

    def table(self, name: str) -> torch.Tensor:
        """The CPT p(name | Pa(name)) as a tensor (parents' axes, then the node's)."""
        return self._buffers[f"table_{self._var(name)}"]

    def cpt(self, name: str) -> CPT:
        return CPT(self.table(name).clone(), parents=self.parents(name))

    def _tables(self) -> list[torch.Tensor]:
        buffers = self._buffers
        return [buffers[f"table_{i}"] for i in range(len(self.variables))]

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

    def set_table(self, name: str, table: Any) -> None:
        """Replace p(name | Pa(name)), validated like the constructor's tables."""
        cpt = CPT(table, self.parents(name))
        self._check_table(name, cpt)
        old = self.table(name)
        with torch.no_grad():
            old.copy_(cpt.table.to(old.device))

    # ------------------------------------------------------------------ input checks
    def _var(self, name: str) -> int:
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise UnknownVariableError(
                f"unknown variable {name!r}; the network's variables are {list(self.variables)}"
            ) from None

    def _state(self, var: int, value: Any) -> int:
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

    # ------------------------------------------------------------------ queries
    def query(
        self, variables: str | Sequence[str], evidence: Evidence | None = None
    ) -> torch.Tensor:
        """The posterior table p(x_Q | e) (eq. 4-5): shape (*cards of Q), or (B, *cards)
        for batched evidence. One variable gives its marginal, several their joint.

        >>> student_network().query("x1", evidence={"x2": 0})   # [0.2623, 0.7377]
        """
        names = [variables] if isinstance(variables, str) else list(variables)
        query = tuple(self._var(n) for n in names)
        if len(set(query)) != len(query):
            raise ConfigurationError(f"a variable is queried twice: {names}")
        ev, batch = self._evidence(evidence)
        clash = [self.variables[v] for v in query if v in ev]
        if clash:
            raise ConfigurationError(f"{clash} are both queried and given as evidence")
        factors = self._relevant((*query, *ev))
        tables = self._refresh()
        if self._linear_ok:
            joint = self._engine.marginal(tables, query, ev, factors=factors)
            z = sum_axis(joint.reshape(joint.shape[0], -1), 1)
            if not bool(z.all()):
                self._raise_zero(z.log(), evidence)
            probs = joint / z.reshape(-1, *(1,) * (joint.dim() - 1))
        else:
            log_joint = self._engine.log_marginal(self._log_cache, query, ev, factors=factors)
            log_z = torch.logsumexp(log_joint.reshape(log_joint.shape[0], -1), 1)
            self._raise_zero(log_z, evidence)
            probs = torch.exp(log_joint - log_z.reshape(-1, *(1,) * (log_joint.dim() - 1)))
        return probs if batch is not None else probs[0]

    def marginals(self, evidence: Evidence | None = None) -> dict[str, torch.Tensor]:
        """p(x_n | e) of every unobserved variable at once (one contraction and its
        gradient), as {name: (card,) or (B, card) tensor}."""
        ev, batch = self._evidence(evidence)
        free = tuple(v for v in range(len(self.variables)) if v not in ev)
        if not free:
            return {}
        log_z, probs = self._engine.all_marginals(self._log_tables(), free, ev)
        self._raise_zero(log_z, evidence)
        return {self.variables[v]: p if batch is not None else p[0] for v, p in probs.items()}

    def log_evidence(self, evidence: Evidence) -> torch.Tensor | float:
        """log p(e) = log Σ_{x \\ e} p(x) (eq. 3): a float, or a (B,) tensor if batched."""
        ev, batch = self._evidence(evidence)
        if not ev:
            return 0.0
        log_z = self._log_joint((), ev, self._relevant(tuple(ev)))
        return log_z if batch is not None else float(log_z[0])

    def probability(
        self, assignment: Evidence, evidence: Evidence | None = None
    ) -> torch.Tensor | float:
        """p(assignment | evidence) = p(assignment, evidence) / p(evidence) (eq. 4, 6, 7).

        >>> student_network().probability({"x2": 1, "x3": 1})   # 0.546 (eq. 6)
        """
        if not assignment:
            raise ConfigurationError("probability() needs at least one assigned variable")
        evidence = dict(evidence or {})
        joint = {**{k: v for k, v in assignment.items() if k not in evidence}, **evidence}
        log_den = self.log_evidence(evidence) if evidence else 0.0
        f64 = torch.float64
        self._raise_zero(torch.as_tensor(log_den, dtype=f64), evidence)
        log_num = self.log_evidence(joint) if len(joint) > len(evidence) else log_den
        p = torch.exp(torch.as_tensor(log_num, dtype=f64) - torch.as_tensor(log_den, dtype=f64))
        mismatch = self._mismatch(assignment, evidence)
        if mismatch is not None:
            p = torch.where(mismatch.to(p.device), torch.zeros_like(p), p)
        return p if self._is_batched(evidence, assignment) else float(p.reshape(-1)[0])

    def _is_batched(self, *mappings: Evidence) -> bool:
        return any(self._evidence(m)[1] is not None for m in mappings if m)

    def _column_or_scalar(self, var: int, value: Any) -> torch.Tensor:
        ev, _ = self._evidence({self.variables[var]: value})
        return ev[var]

    def _mismatch(self, assignment: Evidence, evidence: Evidence) -> torch.Tensor | None:
        """Rows where the assignment contradicts the evidence on a shared variable."""
        out = None
        for name in set(assignment) & set(evidence):
            var = self._var(name)
            diff = self._column_or_scalar(var, assignment[name]) != self._column_or_scalar(
                var, evidence[name]
            )
            out = diff if out is None else out | diff
        return out

    def mpe(
        self, evidence: Evidence | None = None, *, return_log_prob: bool = False
    ) -> dict[str, Any] | tuple[dict[str, Any], Any]:
        """The most probable explanation argmax_{x \\ e} p(x \\ e | e) of the unobserved
        variables by max-product (ints, or (B,) tensors for batched evidence).

        ``return_log_prob`` also returns log max_{x \\ e} p(x \\ e, e) (the joint).
        """
        ev, batch = self._evidence(evidence)
        best, values = self._engine.max_assignment(self._log_tables(), ev)
        self._raise_zero(best, evidence)
        out: dict[str, Any] = {}
        for var in range(len(self.variables)):
            if var in values:
                out[self.variables[var]] = values[var] if batch is not None else int(values[var][0])
        if return_log_prob:
            return out, best if batch is not None else float(best[0])
        return out

    def ask(self, text: str) -> Any:
        """Answer a text query (see :func:`parse_query`): a float, a table or an MPE dict."""
        q = parse_query(text)
        if q.kind == "probability":
            return self.probability(q.assignment, q.evidence)
        if q.kind == "mpe":
            return self.mpe(q.evidence)
        return self.query(list(q.variables), q.evidence)

    # ------------------------------------------------------------------ sampling
    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed))
        return gen

    def sample(
        self, n: int, evidence: Evidence | None = None, seed: int | None = None
    ) -> dict[str, torch.Tensor]:
        """``n`` draws, as {name: LongTensor(n)}.

        Without evidence: ancestral sampling, x_n ~ p(x_n | Pa(x_n)) in topological order
        (eq. 8). With evidence: exact draws from p(x \\ e | e) by forward filtering and
        backward sampling on the elimination tree (no rejection); evidence columns are
        returned as given.
        """
        n = check_int(n, "n")
        gen = self._generator(seed)
        ev, batch = self._evidence(evidence)
        if batch is not None and batch != n:
            raise ShapeError(f"batched evidence of {batch} rows needs n = {batch}, got {n}")
        if not ev:
            values: dict[int, torch.Tensor] = {}
            for var, table in enumerate(self._tables()):
                probs = table[tuple(values[p] for p in self._parent_ids[var])]
                if probs.dim() == 1:
                    probs = probs.expand(n, -1)
                values[var] = torch.multinomial(probs, 1, replacement=True, generator=gen).squeeze(
                    -1
                )
        else:
            try:
                _, values = self._engine.sample(self._log_tables(), n, ev, generator=gen)
            except ZeroProbabilityEvidence:
                self._raise_zero(self.log_evidence(evidence), evidence)  # names the rows
                raise
            for var, col in ev.items():
                values[var] = col.expand(n)
        return {self.variables[v]: values[v] for v in range(len(self.variables))}

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

    # ------------------------------------------------------------------ persistence
    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The network as JSON (written to ``path`` when given)::

            {"format": "pyrobn.bayesnet", "version": 1,
             "nodes": [{"name": "x2", "parents": ["x1"], "states": ["no", "yes"] | null,
                        "table": [[0.8, 0.2], [0.25, 0.75]]}, ...]}

        Nodes are in topological order; ``table`` has one axis per parent (in the order
        of ``parents``) then the node's states, exactly as :class:`CPT` takes it.
        Floats are written with full precision, so a round trip is exact.
        """
        doc = {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "nodes": [
                {
                    "name": n,
                    "parents": list(self.parents(n)),
                    "states": list(self.states[n]) if self.states[n] else None,
                    "table": self.table(n).detach().cpu().tolist(),
                }
                for n in self.variables
            ],
        }
        text = json.dumps(doc, indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(
        cls, source: str | os.PathLike, device: str | torch.device | None = None
    ) -> DiscreteBayesianNetwork:
        """Read a network written by :meth:`to_json` (a path or the JSON text itself)."""
        text = str(source)
        if isinstance(source, os.PathLike) or not text.lstrip().startswith("{"):
            try:
                text = Path(source).read_text()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read network file {str(source)!r}: {exc}"
                ) from exc
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
            raise ConfigurationError(
                f"not a {JSON_FORMAT} document (missing 'format': '{JSON_FORMAT}')"
            )
        if doc.get("version") != JSON_VERSION:
            raise ConfigurationError(f"unsupported {JSON_FORMAT} version {doc.get('version')!r}")
        try:
            cpts = {nd["name"]: CPT(nd["table"], nd.get("parents", [])) for nd in doc["nodes"]}
            states = {nd["name"]: nd["states"] for nd in doc["nodes"] if nd.get("states")}
        except (KeyError, TypeError) as exc:
            raise ConfigurationError(f"malformed node in {JSON_FORMAT} document: {exc}") from exc
        return cls(cpts, states=states or None, device=device)

    # ------------------------------------------------------------------ plotting
    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Draw the DAG layered by topological depth (as Figura 1); returns the axes."""
        from pyrobn.plots.dag import plot_dag

        return plot_dag({n: self.parents(n) for n in self.variables}, ax=ax, **kwargs)

    def __repr__(self) -> str:
        fams = ", ".join(
            f"p({n}|{','.join(self.parents(n))})" if self.parents(n) else f"p({n})"
            for n in self.variables
        )
        return f"DiscreteBayesianNetwork({fams})"


def student_network(
    named_states: bool = False, device: str | torch.device | None = None
) -> DiscreteBayesianNetwork:
    """The student network of the notes (2.1.1, eq. 1, Figura 1), with their tables:

    x1 studies, x2 answers the theory well, x3 answers the practice well, x4 passes;
    p(x1, x2, x3, x4) = p(x1) p(x2 | x1) p(x3 | x1) p(x4 | x2, x3). State 1 = yes, 0 = no
    (named "no"/"yes" with ``named_states``). The notes list p(x4 | x2, x3) by rows
    (x2, x3) = (0,0), (1,0), (0,1), (1,1); here ``table[x2, x3]`` holds each row.
    """
    x4 = [[[0.95, 0.05], [0.40, 0.60]], [[0.35, 0.65], [0.01, 0.99]]]
    cpts = {
        "x1": CPT([0.10, 0.90]),
        "x2": CPT([[0.80, 0.20], [0.25, 0.75]], parents=["x1"]),
        "x3": CPT([[0.70, 0.30], [0.20, 0.80]], parents=["x1"]),
        "x4": CPT(x4, parents=["x2", "x3"]),
    }
    states = {n: ["no", "yes"] for n in cpts} if named_states else None
    return DiscreteBayesianNetwork(cpts, states=states, device=device)
