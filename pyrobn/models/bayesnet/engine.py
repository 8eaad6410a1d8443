"""The network's exact-inference engine: pruned, ordered, compiled once per query shape.

A query's *shape* is which variables are queried and which are observed (not their
values). For each shape the engine

1. prunes the network to what the query needs (:mod:`.relevance`: barren nodes and
   d-separated pieces),
2. orders the eliminations by a standard heuristic (min-fill by default,
   :func:`pyrobn.infer.enumeration.elimination_order`),
3. compiles a :class:`pyrobn.infer.enumeration_compiled.FlatPlan` and caches it,
4. checks the plan's largest table against the memory budget before running it.

On CPU the plan runs in the compiled kernel; the network falls back to the torch
engine (log space, any device, differentiable) where the kernel does not apply, and
runs heavy plans (big tables) and large batches as torch contractions.

Why not Pyro's own contraction: ``pyro.ops.contract.einsum`` (an opt_einsum path found
per call, then torch contractions) answers ALARM's random single queries about 26x
slower than this engine (bench/bayesnet_networks.py: 17 ms against 0.66 ms), because
the path search and the per-operand dispatch dominate tables this small; it wins
nowhere on these networks, so it is not used.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from pyrobn.errors import SizeLimitError
from pyrobn.infer.enumeration import HEURISTICS, elimination_order
from pyrobn.models.bayesnet.relevance import Relevance

if TYPE_CHECKING:  # the compiled kernels import numba: on first use only
    from pyrobn.infer.enumeration_compiled import FlatPlan, StructureArrays

__all__ = [
    "HEAVY_PLAN",
    "Engine",
    "FlatTables",
    "PlanTooLarge",
    "QueryPlan",
    "check_plan_size",
]


def check_plan_size(
    size: float,
    variables: Sequence[int],
    names: Sequence[str],
    cards: Sequence[int],
    budget: int,
    rows: int = 1,
    what: str = "the query",
) -> None:
    """Raise :class:`SizeLimitError` when a table of ``size`` entries per row (float64)
    over ``variables`` exceeds ``budget`` bytes; the message names the size, the
    treewidth bound (the table's variables minus one) and the variables."""
    needed = size * rows * 8
    if needed <= budget:
        return
    shown = ", ".join(f"{names[v]} ({cards[v]})" for v in variables[:12])
    more = f", ... ({len(variables)} in all)" if len(variables) > 12 else ""
    raise SizeLimitError(
        f"{what} needs a table of {size:,.0f} entries x {rows:,} row(s) = "
        f"{needed / 2**30:.3g} GiB of float64, over the memory budget of "
        f"{budget / 2**30:.3g} GiB (net.memory_budget, or PYROBN_MEMORY_BUDGET); its "
        "elimination order has "
        f"treewidth bound {len(variables) - 1}, over the variables {shown}{more}"
    )


#: a plan walking more entries than this is compiled again with the other heuristics of
#: :data:`pyrobn.infer.enumeration.HEURISTICS` and the cheapest kept (min-fill ignores
#: cardinalities; on networks with many-state variables, such as barley, the weighted
#: orders are several times cheaper)
HEAVY_PLAN = 2e5


class FlatTables:
    """The tables in one contiguous float64 buffer for the compiled kernel (CPU),
    followed by the kernel's scratch space.

    Each table keeps its slice; a table changed since the last call (in place, or
    replaced) is copied again, the others are not. ``lock`` serialises the runs that
    share the scratch space.
    """

    def __init__(self) -> None:
        self.buffer = np.empty(0)
        self.offsets = np.zeros(1, dtype=np.int64)
        self.has_zero: list[bool] = []
        self._keys: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    @property
    def keys(self) -> list[tuple[int, int]]:
        """The version (storage, in-place version) of each table copied in."""
        return self._keys

    def update(
        self,
        tables: Sequence[torch.Tensor],
        which: Sequence[int] | None = None,
        workspace: int = 0,
    ) -> None:
        """Bring the tables ``which`` (default all) up to date and make room for
        ``workspace`` scratch entries after them."""
        if len(self._keys) != len(tables):
            sizes = [t.numel() for t in tables]
            self.offsets = np.zeros(len(tables) + 1, dtype=np.int64)
            np.cumsum(sizes, out=self.offsets[1:])
            self.buffer = np.empty(int(self.offsets[-1]) + workspace)
            self._keys = [(-1, -1)] * len(tables)
            self.has_zero = [False] * len(tables)
            which = None
        total = int(self.offsets[-1])
        if self.buffer.shape[0] < total + workspace:
            room = max(workspace, 2 * (self.buffer.shape[0] - total))
            bigger = np.empty(total + room)
            bigger[:total] = self.buffer[:total]
            self.buffer = bigger
        keys = self._keys
        for i in range(len(tables)) if which is None else which:
            t = tables[i]
            key = (t.data_ptr(), t._version)
            if keys[i] != key:
                values = t.detach().cpu().numpy().reshape(-1)
                self.buffer[self.offsets[i] : self.offsets[i + 1]] = values
                self.has_zero[i] = bool((values == 0).any())
                keys[i] = key


class PlanTooLarge(Exception):
    """Raised by :meth:`Engine._compile` with (size, variables) of a table over budget."""


@dataclass
class QueryPlan:
    """A compiled query shape: the plan, the tables it uses and those it dropped."""

    flat: FlatPlan
    kept: tuple[int, ...]
    dropped: tuple[int, ...]
    check: FlatPlan | None = None  # p(e) over the dropped tables (compiled when needed)
    extra: dict = field(default_factory=dict)


class Engine:
    """Pruning, elimination orders and compiled plans for one network's structure."""

    def __init__(
        self, cards: Sequence[int], parents: Sequence[Sequence[int]], heuristic: str = "min-fill"
    ) -> None:
        self.cards = tuple(cards)
        self.relevance = Relevance(parents)
        self.scopes = self.relevance.families
        self.heuristic = heuristic
        self._arrays: StructureArrays | None = None
        self._plans: dict[tuple, QueryPlan] = {}
        #: entries past which compiling stops (the caller's memory budget / 8 bytes)
        self.budget_entries = math.inf

    def _compile(
        self, tables: Sequence[int], query: tuple[int, ...], evidence: tuple[int, ...], mode: str
    ) -> FlatPlan:
        from pyrobn.infer.enumeration_compiled import StructureArrays, compile_query

        if self._arrays is None:
            self._arrays = StructureArrays(self.cards, self.scopes)
        best = None
        for heuristic in (self.heuristic, *(h for h in HEURISTICS if h != self.heuristic)):
            plan = compile_query(
                self._arrays, tables, query, evidence, mode, heuristic, self.budget_entries
            )
            if not isinstance(plan, tuple) and (best is None or plan.cost < best.cost):
                best = plan
            elif best is None and isinstance(plan, tuple):
                over = plan
            if best is not None and best.cost <= HEAVY_PLAN:
                break  # light: not worth another order (real networks' usual case)
        if best is None:
            raise PlanTooLarge(*over)
        return best

    def order(
        self, tables: Sequence[int], evidence: Sequence[int], keep: Sequence[int]
    ) -> list[int]:
        """An elimination order of the unobserved variables of ``tables`` but ``keep``."""
        observed = set(evidence)
        scopes = [tuple(v for v in self.scopes[t] if v not in observed) for t in tables]
        todo = set().union(*map(set, scopes)) - set(keep) if scopes else set()
        return elimination_order(scopes, self.cards, todo, self.heuristic)

    def query_plan(self, query: tuple[int, ...], evidence: tuple[int, ...]) -> QueryPlan:
        """The plan for p(x_Q, e) up to a constant (sum-product), cached per shape;
        ``query=()`` gives p(e) with nothing pruned but barren nodes."""
        key = ("sum", query, evidence)
        plan = self._plans.get(key)
        if plan is None:
            kept, dropped = self.relevance.split(query, evidence)
            flat = self._compile(kept, query, evidence, "sum")
            plan = self._plans[key] = QueryPlan(flat, kept, dropped)
        return plan

    def check_plan(self, plan: QueryPlan) -> FlatPlan:
        """The plan for the constant the dropped tables contribute (their p(e) part)."""
        if plan.check is None:
            plan.check = self._compile(plan.dropped, (), plan.flat.evidence, "sum")
        return plan.check

    def posteriors_plan(self, variables: tuple[int, ...], evidence: tuple[int, ...]) -> QueryPlan:
        """p(x_v, e) for each v in ``variables`` in one plan: each variable's pruned
        query (:meth:`query_plan`, its tables and order) added to one builder, where a
        step another query already made is read, not walked again (variable elimination
        with its intermediate tables cached, which is what a junction tree does once
        for all: here each query keeps its own pruning and order). Water, three
        findings: 22 M units of work as separate queries, 15 M as a calibration, 7.8 M
        shared; pigs 0.1 M, 9.1 M and 0.03 M. Outputs in the order of ``variables``,
        then, given evidence, p(e) (the query of nothing over An(E): its normaliser is
        log p(e), its steps shared too); ``kept`` is every table used, ``extra["added"]``
        the work each query added when it joined. Cached per shape."""
        from pyrobn.infer.enumeration_compiled import _TABLE, PlanBuilder, eliminate_into

        key = ("posteriors", variables, evidence)
        plan = self._plans.get(key)
        if plan is None:
            targets = [(v,) for v in variables] + ([()] if evidence else [])
            queries = [self.query_plan(q, evidence) for q in targets]
            # one pass: building it again with the products several queries ask for
            # kept whole (as the junction tree does) saved under 1% on the bnlearn
            # networks, for twice the building time
            builder = PlanBuilder(self.cards, self.scopes, evidence)
            outputs, added = [], []
            for target, q in zip(targets, queries):
                first = len(builder.starts)
                items = [(_TABLE, t) for t in q.kept]
                outputs.append(eliminate_into(builder, items, target, q.flat.order))
                added.append(builder.cost(first))
            flat = builder.finish(outputs, "sum", reuse=True)
            kept = tuple(sorted(set().union(*(q.kept for q in queries))))
            plan = self._plans[key] = QueryPlan(flat, kept, ())
            plan.extra["added"] = added  # the work each query added (in order)
        return plan

    def mpe_plan(self, evidence: tuple[int, ...]) -> QueryPlan:
        """Max-product over every table (a barren node still has a most probable state)."""
        key = ("max", (), evidence)
        plan = self._plans.get(key)
        if plan is None:
            tables = tuple(range(len(self.cards)))
            flat = self._compile(tables, (), evidence, "max")
            plan = self._plans[key] = QueryPlan(flat, tables, ())
        return plan

    def clear(self) -> None:
        """Forget the compiled plans (after the structure or the heuristic changed)."""
        self._plans.clear()
