"""Exact queries: posteriors, marginals, evidence, probabilities, MPE and sampling."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from pyrobn.errors import (
    ConfigurationError,
    ShapeError,
    SizeLimitError,
    ZeroProbabilityEvidence,
)
from pyrobn.infer.enumeration import sum_axis
from pyrobn.models.bayesnet._types import Evidence
from pyrobn.models.bayesnet.engine import PlanTooLarge, check_plan_size
from pyrobn.models.bayesnet.text import parse_query
from pyrobn.validation import check_int, memory_budget

__all__ = [
    "BATCH_VECTORISED",
    "COST_SAMPLE",
    "HEAVY_COST",
    "JOINT_GAIN",
    "JOINT_ROWS",
    "KERNEL_SECONDS_PER_COST",
    "KERNEL_SECONDS_PER_STEP",
    "PATH_COST",
    "PATH_MARGIN",
    "PATH_SECONDS_PER_FLOP",
    "PATH_SECONDS_PER_STEP",
    "PER_VARIABLE_ENTRIES",
    "ROUTES_KEPT",
    "SHARED_SECONDS",
    "SHARED_SECONDS_PER_VARIABLE",
    "SHARING_BOUND",
    "SPECIALISED_ENTRIES",
    "SPECIALISED_TREES",
    "SPECIALISE_ENTRIES_PER_VARIABLE",
    "SPECIALISE_GAIN",
    "TREE_ALONE_SECONDS",
    "VECTORISED_ENTRIES",
    "QueriesMixin",
]

#: from this many evidence rows on, CPU queries run torch's batched operations (one
#: pass over the rows per step) rather than the compiled kernel's loop over rows
BATCH_VECTORISED = 128
#: ... as long as rows x the largest table stays under this many entries (32 MiB); past
#: it the compiled kernel walks the rows one by one, allocating nothing per row
VECTORISED_ENTRIES = 2**22
#: junction trees with more entries than this (256 MiB of float64), or over the memory
#: budget, are not calibrated: each posterior is its own pruned query (munin1: a 1.5 GiB
#: tree calibrated in 25 s against 0.5 s for its 186 pruned queries; link 12.9 s
#: against 1.8 s)
PER_VARIABLE_ENTRIES = 2**25
#: all posteriors given observed variables: a junction tree triangulated without them
#: (:class:`~pyrobn.infer.junction_tree.JunctionTree` ``observed=``) is built, once per
#: set of observed variables, when the network's tree has at least this many entries
#: per variable (the triangulation, about 0.2 ms per variable, is then small beside a
#: calibration: water, mildew, barley, munin) ...
SPECIALISE_ENTRIES_PER_VARIABLE = 10_000
#: ... and calibrated instead when it has this many times fewer entries (barley: 3-12x)
SPECIALISE_GAIN = 1.25
#: such trees kept per network, at most this many and this many float64 entries of
#: potentials and scratch space in all (2 per tree entry; 512 MiB); the least recently
#: used is dropped first, the one in use never
SPECIALISED_TREES = 16
SPECIALISED_ENTRIES = 2**26
#: the cost model that picks, for all posteriors, between one calibration and the
#: per-variable queries run as one shared plan: both are one run of the compiled
#: kernel, whose time is modelled as seconds per unit of a plan's cost (entries walked
#: x inputs multiplied) and per step, fitted by least squares (relative error) on both
#: routes timed over 101 evidence sets of 1-6 findings on 17 bnlearn networks
#: (bench/bayesnet_route_model.py); how many queries are planned to bound the shared
#: plan's cost (its queries' cost apart), and how many times less than that it may cost
#: (the bnlearn networks: 1.3-7x)
KERNEL_SECONDS_PER_COST = 9.73e-10
KERNEL_SECONDS_PER_STEP = 1.27e-6
COST_SAMPLE = 8
SHARING_BOUND = 10
#: ... and the shared plan's own overhead per call and per posterior (each answer sliced
#: and wrapped), estimated from the small networks, where the calibration's 0.04-0.3 ms
#: wins by it (asia 0.06 ms more over 5 variables, win95pts 0.16 ms over 73, measured
#: while p(e) was still a query of its own: on the calibration's side, if anything)
SHARED_SECONDS = 4e-5
SHARED_SECONDS_PER_VARIABLE = 1.6e-6
#: a calibration modelled under this is taken without building the shared plan to
#: compare (that would cost more than it could save: alarm's first call 0.4 ms, 10 ms
#: with the shared plan built)
TREE_ALONE_SECONDS = 5e-4
#: route decisions kept per network (one per set of observed variables)
ROUTES_KEPT = 4096
#: a plan that walks more than this many table entries (x tables multiplied) is also
#: planned as a pairwise contraction (:mod:`.contraction`), run as torch.einsum steps
#: where its largest table is PATH_GAIN times smaller, else in the compiled kernel
#: like the others (batches: torch.einsum over the rows). On 250 queries of cost
#: 3e5-1e8 (water, mildew, barley, diabetes, munin1), each timed on all three routes:
#: 1,043 ms by this rule, 987 ms for the faster route of each, 1,340 ms for the
#: previous rule (einsum where the path was not 4x leaner); the kernel wins below 1e6
HEAVY_COST = 1e6
PATH_COST = 1e6
#: the pairwise path's time per flop (opt_einsum's count) and per torch.einsum step, and
#: how much quicker than a query's own work in the shared plan it must be modelled to
#: leave it, estimated from 15 heavy queries of barley, mildew and water (0.15-0.9 ns
#: per flop, about 27 us per step; the margin keeps mildew's dm_3 in the plan, whose
#: steps later queries share: its path is quicker alone, the whole slower)
PATH_SECONDS_PER_FLOP = 2e-10
PATH_SECONDS_PER_STEP = 2.7e-5
PATH_MARGIN = 1.5
#: a batch of at least this many rows may be answered from one table over the batched
#: evidence variables (:meth:`QueriesMixin._batch_by_joint`), where its plan costs this
#: many times less than the rows' plans
JOINT_ROWS = 32
JOINT_GAIN = 4


def _kernel_seconds(plan: Any) -> float:
    """The modelled time of one row of a compiled plan (the constants above)."""
    return KERNEL_SECONDS_PER_COST * plan.cost + KERNEL_SECONDS_PER_STEP * len(plan.starts)


def _remembered(kept: dict, key: tuple, decide: Callable[[], Any]) -> Any:
    """``kept[key]``, decided by ``decide()`` on first sight; at most ROUTES_KEPT
    decisions are kept, the oldest dropped first."""
    if key not in kept:
        if len(kept) >= ROUTES_KEPT:
            del kept[next(iter(kept))]
        kept[key] = decide()
    return kept[key]


def _distinct_rows(
    ev: dict[int, torch.Tensor], batch: int | None, cards: Sequence[int]
) -> tuple[dict[int, torch.Tensor], torch.Tensor] | None:
    """The distinct rows of batched evidence ({var: column of the U distinct rows} and
    each row's index among them), or None when unbatched or when fewer than a quarter
    of the rows repeat (real batches of scenarios repeat a lot: three evidence
    variables of a network take a few hundred joint values at most). Rows are keyed by
    their mixed-radix number (one 1-D unique, far quicker than a unique over rows)."""
    if batch is None or batch < 2:
        return None
    batched = [v for v, c in ev.items() if c.shape[0] == batch]
    span = 1
    for v in batched:
        span *= cards[v]
    if not batched or span > 2**63:  # no room for the key: rows answered as they are
        return None
    key = torch.zeros_like(ev[batched[0]])
    for v in batched:
        key = key * cards[v] + ev[v]
    unique, inverse = torch.unique(key, return_inverse=True)
    if unique.shape[0] * 4 > batch * 3:
        return None
    rows = dict(ev)
    for v in reversed(batched):  # the digits back, last variable first
        rows[v] = unique % cards[v]
        unique = unique // cards[v]
    return rows, inverse


def _row_chunks(
    ev: dict[int, torch.Tensor], batch: int | None, step: int
) -> list[tuple[dict[int, torch.Tensor], int | None]]:
    """Evidence split into chunks of at most ``step`` rows: [(columns, rows or None)]
    (unbatched evidence is one chunk; scalar columns go whole into every chunk)."""
    if batch is None:
        return [(ev, None)]
    return [
        ({v: c[start : start + step] if c.shape[0] > 1 else c for v, c in ev.items()},
         min(step, batch - start))
        for start in range(0, batch, step)
    ]  # fmt: skip


def _normalised(joint: torch.Tensor) -> torch.Tensor | None:
    """p(x_Q, e) (B, *cards) divided by its sum per row, or None when a row sums to 0
    (impossible evidence or an underflow: the caller decides in log space)."""
    z = sum_axis(joint.reshape(joint.shape[0], -1), 1)
    if not bool(z.all()):
        return None
    return joint / z.reshape(-1, *(1,) * (joint.dim() - 1))


class QueriesMixin:
    """Exact queries (mixed into :class:`~pyrobn.models.bayesnet.DiscreteBayesianNetwork`).

    On CPU a query runs the compiled plan of its shape (:mod:`.engine`: pruned,
    min-fill ordered, cached); where that kernel does not apply (CUDA tables, or a
    normaliser that underflowed) it runs the torch engine in log space.
    """

    #: run CPU queries in the compiled kernel (False: always the torch engine)
    use_compiled: bool = True

    # ------------------------------------------------------------------ plumbing
    def _compiled_ok(self) -> bool:
        return self.use_compiled and self.device.type == "cpu"

    def _budget(self) -> int:
        budget = getattr(self, "memory_budget", None)
        return memory_budget() if budget is None else int(budget)

    def _guard(
        self, size: float, variables: Sequence[int], rows: int, what: str, budget: int | None = None
    ) -> None:
        budget = self._budget() if budget is None else budget
        if size * rows * 8 > budget:
            check_plan_size(size, variables, self.variables, self.cards, budget, rows, what)

    def _flat_plan(self, what: str, kind: str, *args: Any) -> Any:
        """The compiled plan (:meth:`Engine.query_plan` or ``mpe_plan``), within budget."""
        engine = self._flat_engine
        budget = self._budget()
        engine.budget_entries = budget / 8
        try:
            plan = getattr(engine, kind)(*args)
        except PlanTooLarge as exc:
            self._guard(*exc.args, 1, what, budget)
            raise  # pragma: no cover - the guard raises
        self._guard(plan.flat.largest_size, plan.flat.largest, 1, what, budget)
        return plan

    @staticmethod
    def _evidence_matrix(
        ev: dict[int, torch.Tensor], order: Sequence[int], batch: int | None
    ) -> np.ndarray:
        """Evidence as a (B, len(order)) int64 array (scalar evidence repeated)."""
        if batch is None:  # one row: the states as Python ints
            return np.array([[int(ev[v]) for v in order]], dtype=np.int64).reshape(1, len(order))
        out = np.empty((batch, len(order)), dtype=np.int64)
        for j, v in enumerate(order):
            out[:, j] = ev[v].cpu().numpy()
        return out

    def _run_flat(
        self, flat: Any, tables: Sequence[int], ev: dict[int, torch.Tensor], batch: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run a compiled plan over the tables ``tables`` (refreshed first if changed)."""
        from pyrobn.infer.enumeration_compiled import run as run_flat

        matrix = self._evidence_matrix(ev, flat.evidence, batch)
        store = self._flat_tables
        with store.lock:
            store.update(self._tables(), tables, flat.workspace)
            return run_flat(flat, store.buffer, store.offsets, matrix)

    def _dropped_zero_rows(self, plan: Any, ev: dict[int, torch.Tensor], batch: int | None) -> bool:
        """Whether the tables a pruned query dropped make some row's evidence impossible
        (only checked when one of them holds a zero: otherwise they cannot)."""
        if not plan.dropped:
            return False
        self._flat_tables.update(self._tables(), plan.dropped)
        if not any(self._flat_tables.has_zero[t] for t in plan.dropped):
            return False
        self._flat_engine.budget_entries = self._budget() / 8
        try:
            check = self._flat_engine.check_plan(plan)
        except PlanTooLarge as exc:
            self._guard(*exc.args, 1, "the evidence check")
            raise  # pragma: no cover - the guard raises
        by_table = self._zero_rows_by_table(check.cost, ev, batch)
        if by_table is not None:
            return by_table
        _, log_norm, _ = self._run_flat(check, plan.dropped, ev, batch)
        return bool((log_norm == -math.inf).any())

    def _zero_rows_by_table(
        self, row_cost: float, ev: dict[int, torch.Tensor], batch: int | None
    ) -> bool | None:
        """Whether some row of a batch has evidence of probability zero, read from one
        table p(x_B | e_s) over the batched evidence variables B (e_s: the evidence all
        rows share), where that table's plan costs JOINT_GAIN times less than checking
        the rows one by one at ``row_cost`` each; None otherwise. A zero read there is
        p(e) = 0 or an underflow; either way the caller's exact route decides, so the
        answer errs only towards the slow route (mildew: p(udbytte | dm_4, dm_3, dm_2)
        needs one table of 610,000 entries where each of 5,822 rows would eliminate
        the rest of the network: 0.7 s to 15 ms)."""
        if batch is None or batch < JOINT_ROWS:
            return None
        batched = tuple(v for v, c in ev.items() if c.shape[0] == batch)
        entries = math.prod(self.cards[v] for v in batched)
        if not batched or entries > VECTORISED_ENTRIES:
            return None
        shared = {v: c for v, c in ev.items() if v not in batched}
        try:
            joint = self._flat_plan("the check", "query_plan", batched, tuple(sorted(shared)))
        except SizeLimitError:  # its tables do not fit: the rows one by one
            return None
        if joint.flat.cost * JOINT_GAIN > batch * row_cost:
            return None
        try:
            table = self._query_ids(batched, shared, None, None)
        except ZeroProbabilityEvidence:  # the shared evidence alone is impossible
            return True
        return bool((table[tuple(ev[v] for v in batched)] == 0).any())

    # ------------------------------------------------------------------ queries
    def query(
        self, variables: str | Sequence[str], evidence: Evidence | None = None
    ) -> torch.Tensor:
        """The posterior table p(x_Q | e) (eq. 5; without evidence the marginal, eq. 3):
        shape (*cards of Q), or (B, *cards) for batched evidence. One variable gives its
        marginal, several their joint.

        Only the tables the query needs take part (barren and d-separated nodes are
        pruned, :mod:`.relevance`), eliminated in a min-fill order compiled once per
        query shape.

        >>> pyrobn.student_network().query("x1", evidence={"x2": 0})   # (eq. 5)
        tensor([0.2623, 0.7377], dtype=torch.float64)
        """
        names = [variables] if isinstance(variables, str) else list(variables)
        query = tuple(self._var(n) for n in names)
        if len(set(query)) != len(query):
            raise ConfigurationError(f"a variable is queried twice: {names}")
        ev, batch = self._evidence(evidence)
        clash = [self.variables[v] for v in query if v in ev]
        if clash:
            raise ConfigurationError(f"{clash} are both queried and given as evidence")
        distinct = _distinct_rows(ev, batch, self.cards)
        rows = batch if distinct is None else int(distinct[1].max()) + 1
        by_joint = self._batch_by_joint(query, ev, batch, rows, evidence)
        if by_joint is not None:
            return by_joint
        if distinct is not None:  # each distinct evidence row answered once
            columns, inverse = distinct
            try:
                return self._query_ids(query, columns, rows, evidence)[inverse]
            except ZeroProbabilityEvidence:
                pass  # answered row by row below, so that the error names the user's rows
        return self._query_ids(query, ev, batch, evidence)

    def _batch_by_joint(
        self,
        query: tuple[int, ...],
        ev: dict[int, torch.Tensor],
        batch: int | None,
        distinct: int | None,
        evidence: Evidence | None,
    ) -> torch.Tensor | None:
        """A batch of evidence rows (``distinct`` of them different) from one table:
        p(x_Q, x_E | e_s), the batched evidence variables E kept free (e_s: the evidence
        shared by all rows), then
        p(x_Q | e) = p(x_Q, e_E | e_s) / Σ_Q p(x_Q, e_E | e_s) gathered row by row (exact).
        Taken when that table has at most VECTORISED_ENTRIES entries and its plan costs
        JOINT_GAIN times less than the rows' plans (barley: 3,257 distinct rows of three
        variables, each an elimination of large tables, against one table over them);
        None otherwise, or when a row's normaliser vanished (the rows then decide)."""
        if batch is None or batch < JOINT_ROWS or not self._compiled_ok():
            return None
        batched = tuple(v for v, c in ev.items() if c.shape[0] == batch)
        shared = {v: c for v, c in ev.items() if v not in batched}
        entries = 1
        for v in (*query, *batched):
            entries *= self.cards[v]
        if entries > VECTORISED_ENTRIES:
            return None
        per_row = self._flat_plan("the query", "query_plan", query, tuple(sorted(ev)))
        joint = self._flat_plan(
            "the query", "query_plan", (*query, *batched), tuple(sorted(shared))
        )
        if joint.flat.cost * JOINT_GAIN > distinct * per_row.flat.cost:
            return None
        table = self._query_ids((*query, *batched), shared, None, evidence)
        q = len(query)
        table = table.permute(*range(q, q + len(batched)), *range(q))
        return _normalised(table[tuple(ev[v] for v in batched)])  # (B, *cards of Q)

    def _query_ids(
        self,
        query: tuple[int, ...],
        ev: dict[int, torch.Tensor],
        batch: int | None,
        evidence: Evidence | None,
    ) -> torch.Tensor:
        """:meth:`query` on validated variable ids and evidence columns."""
        # planned on the structure alone, whatever the device
        plan = self._flat_plan("the query", "query_plan", query, tuple(sorted(ev)))
        if self._compiled_ok():
            vectorised = batch is not None and batch >= BATCH_VECTORISED
            heavy = plan.flat.cost >= HEAVY_COST
            checked = False  # the tables the plan dropped, for zero evidence
            fits = (batch or 1) * plan.flat.largest_size <= VECTORISED_ENTRIES
            if heavy or (vectorised and fits):
                # big tables: a pairwise path much leaner than the elimination beats
                # it; many rows: torch's operations vectorised over the rows beat the
                # compiled loop over rows. Same pruning; rows in chunks small enough
                # that no table passes VECTORISED_ENTRIES.
                if self._dropped_zero_rows(plan, ev, batch):
                    return self._query_torch(query, ev, batch, evidence)
                checked = True
                if heavy and plan.flat.cost >= PATH_COST:
                    probs = self._path_posterior(plan, query, ev, batch)
                    if probs is not None:
                        return probs
                    heavy = plan.extra["path"] is not None  # no lean path: the kernel below
            if heavy or (vectorised and fits):
                step = batch or 1
                if not fits:
                    step = max(1, VECTORISED_ENTRIES // max(plan.flat.largest_size, 1))
                parts = [
                    self._query_torch(
                        query, chunk, size, evidence, plan.kept, heavy, plan.flat.order
                    )
                    for chunk, size in _row_chunks(ev, batch, step)
                ]
                return parts[0] if len(parts) == 1 else torch.cat(parts)
            probs, log_norm, _ = self._run_flat(plan.flat, plan.kept, ev, batch)
            if not (log_norm == -math.inf).any() and (
                checked or not self._dropped_zero_rows(plan, ev, batch)
            ):
                out = probs.reshape(probs.shape[0], *(self.cards[v] for v in query))
                return torch.from_numpy(out if batch is not None else out[0])  # numpy: quicker
        elif plan.flat.cost >= PATH_COST and not self._dropped_zero_rows(plan, ev, batch):
            # other devices: a heavy plan on the pairwise path too, where it is leaner
            # (munin1 on CUDA: tables of 2e7 entries instead of 1.8e8, over the budget)
            probs = self._path_posterior(plan, query, ev, batch)
            if probs is not None:
                return probs
        return self._query_torch(query, ev, batch, evidence)

    def _path_posterior(
        self, plan: Any, query: tuple[int, ...], ev: dict[int, torch.Tensor], batch: int | None
    ) -> torch.Tensor | None:
        """p(x_Q | e) from :meth:`_path_joint`; None where no path is lean enough
        (``plan.extra["path"]`` is then None) or a row's normaliser vanished (zero
        evidence or an underflow: the caller's other routes decide)."""
        joint = self._path_joint(plan, query, ev, batch)
        probs = None if joint is None else _normalised(joint)
        if probs is None:
            return None
        return probs if batch is not None else probs[0]

    def _path_joint(
        self, plan: Any, query: tuple[int, ...], ev: dict[int, torch.Tensor], batch: int | None
    ) -> torch.Tensor | None:
        """p(x_Q, e) on opt_einsum's pairwise path (:mod:`.contraction`), where that path
        is planned (once per shape) to be PATH_GAIN times leaner than the elimination."""
        path = self._path_of(plan, query, ev)
        if path is None:
            return None
        tables = self._refresh()
        rows = batch or 1
        step = max(1, VECTORISED_ENTRIES // max(path.largest, 1))  # rows per contraction
        self._guard(path.largest, plan.flat.largest, min(rows, step), "the query")
        parts = [
            path.joint(tables, chunk, size, rescale=not self._linear_ok)
            for chunk, size in _row_chunks(ev, batch, step)
        ]
        return torch.cat(parts)

    def _path_of(self, plan: Any, query: tuple[int, ...], ev: dict[int, torch.Tensor]) -> Any:
        """The plan's pairwise contraction (:mod:`.contraction`), planned once per shape,
        or None where it is not PATH_GAIN times leaner than the elimination."""
        from pyrobn.models.bayesnet.contraction import PATH_GAIN, PathContraction

        if "path" not in plan.extra:
            try:
                path = PathContraction(
                    self.cards, self._flat_engine.scopes, plan.kept, query, tuple(sorted(ev))
                )
            except SizeLimitError:  # a pairwise step over more than 52 indices
                path = None
            useful = path is not None and path.largest * PATH_GAIN <= plan.flat.largest_size
            plan.extra["path"] = path if useful else None
        return plan.extra["path"]

    def _query_torch(
        self,
        query: tuple[int, ...],
        ev: dict[int, torch.Tensor],
        batch: int | None,
        evidence: Evidence | None,
        factors: tuple[int, ...] | None = None,
        fused: bool = False,
        order: tuple[int, ...] = (),
    ) -> torch.Tensor:
        """The torch route: the ancestral tables (or ``factors``, a pruned set whose
        dropped part was checked; ``order``: the compiled plan's elimination order),
        linear space when nothing can underflow (or, for ``fused`` einsum contractions,
        with every message rescaled as it is formed), else log space; raises
        ZeroProbabilityEvidence naming the rows."""
        if factors is None:
            factors = self._relevant((*query, *ev))
        tables = self._refresh()
        plan = self._engine.plan(query, tuple(ev), (), "sum", factors, order or None)
        self._guard(plan.largest_size(self.cards), plan.largest, batch or 1, "the query")
        joint = None
        if self._linear_ok:
            joint = self._engine.marginal(tables, query, ev, factors=factors, fused=fused)
        elif fused:  # rescaled messages: linear-space einsum without underflowing as a
            # whole (diabetes: 4x faster than log space)
            joint = self._engine.scaled_marginal(tables, query, ev, factors=factors)
        probs = None if joint is None else _normalised(joint)
        if probs is not None:
            return probs if batch is not None else probs[0]
        if self._linear_ok:  # exact in linear space: a vanished row is impossible evidence
            z = sum_axis(joint.reshape(joint.shape[0], -1), 1)
            self._raise_zero(z.log(), evidence)
        # log space: no linear route, or a rescaled row vanished (zero or underflow?)
        log_joint = self._engine.log_marginal(self._log_cache, query, ev, factors=factors)
        log_z = torch.logsumexp(log_joint.reshape(log_joint.shape[0], -1), 1)
        self._raise_zero(log_z, evidence)
        probs = torch.exp(log_joint - log_z.reshape(-1, *(1,) * (log_joint.dim() - 1)))
        return probs if batch is not None else probs[0]

    def marginals(self, evidence: Evidence | None = None) -> dict[str, torch.Tensor]:
        """p(x_n | e) of every unobserved variable at once, as {name: (card,) or (B, card)
        tensor}: one calibration of the junction tree (two passes,
        :class:`pyrobn.infer.junction_tree.JunctionTree`, built once per network), in the
        compiled kernel on CPU (row by row) and as torch.einsum contractions elsewhere
        (all rows at once); where a normaliser vanishes, the log-space contraction and its
        gradient decide between impossible evidence and an underflow. A tree of more than
        ``PER_VARIABLE_ENTRIES`` entries, or over the memory budget, is never built:
        each posterior is then its own pruned :meth:`query`."""
        ev, batch = self._evidence(evidence)
        free = tuple(v for v in range(len(self.variables)) if v not in ev)
        if not free:
            return {}
        if self._queries_cheaper(tuple(sorted(ev)), free):
            # pgmpy's way, in the compiled kernel: each query pruned, planned, cached
            return self._posteriors_by_queries(ev, batch, free, evidence)
        distinct = _distinct_rows(ev, batch, self.cards)
        if distinct is not None:  # each distinct evidence row calibrated once
            rows, inverse = distinct
            out = self._marginals_tree(rows, int(inverse.max()) + 1, free)
            if out is not None:
                return {name: p[inverse] for name, p in out.items()}
        out = self._marginals_tree(ev, batch, free)
        if out is not None:
            return out
        plan = self._engine.plan((), tuple(ev), tuple(free), "sum")
        self._guard(plan.largest_size(self.cards), plan.largest, batch or 1, "marginals")
        log_z, probs = self._engine.all_marginals(self._log_tables(), free, ev)
        self._raise_zero(log_z, evidence)
        return {self.variables[v]: p if batch is not None else p[0] for v, p in probs.items()}

    def _posteriors_by_queries(
        self,
        ev: dict[int, torch.Tensor],
        batch: int | None,
        free: tuple[int, ...],
        evidence: Evidence | None,
    ) -> dict[str, torch.Tensor]:
        """p(x_v | e) for each v in ``free`` by its own pruned query. On CPU all the
        queries run as one compiled plan in which a step one query shares with another
        is made once (:meth:`Engine.posteriors_plan`), row by row, and p(e) > 0 is
        checked once, by the plan's last output p(e) (sharing its steps too), instead
        of each query checking the tables it dropped; other devices, a plan over the
        memory budget and any posterior whose normaliser underflowed take
        :meth:`query`."""
        out: dict[str, torch.Tensor] = {}
        observed = tuple(sorted(ev))
        paths = self._path_queries(observed, free, ev) if self._compiled_ok() else {}
        shared = tuple(v for v in free if v not in paths)
        plan = self._shared_plan(shared, observed) if self._compiled_ok() else None
        if plan is not None:
            probs, log_norm, _ = self._run_flat(plan.flat, plan.kept, ev, batch)
            if ev and (log_norm[:, -1] == -math.inf).any():  # p(e) = 0, or an underflow
                self._raise_zero(torch.as_tensor(self.log_evidence(evidence)), evidence)
            for v, single in paths.items():
                answer = self._path_posterior(single, (v,), ev, batch)
                if answer is not None:  # else a normaliser vanished: query() below
                    out[self.variables[v]] = answer
            start = 0
            for k, v in enumerate(shared):
                stop = start + self.cards[v]
                if not (log_norm[:, k] == -math.inf).any():  # else an underflow
                    column = probs[:, start:stop]
                    out[self.variables[v]] = torch.from_numpy(
                        column if batch is not None else column[0]
                    )
                start = stop
        elif self._compiled_ok():
            self._raise_zero(torch.as_tensor(self.log_evidence(evidence)), evidence)
        for v in free:
            name = self.variables[v]
            if name not in out:
                out[name] = self.query(name, evidence)
        return {self.variables[v]: out[self.variables[v]] for v in free}

    def _path_queries(
        self, observed: tuple[int, ...], free: tuple[int, ...], ev: dict[int, torch.Tensor]
    ) -> dict[int, Any]:
        """{v: its query plan} for the queries among ``free`` that add PATH_COST or more
        work of their own to the shared plan (most of a query's steps are often made by
        others), whose pairwise path is PATH_GAIN times leaner than their elimination and
        is modelled PATH_MARGIN times quicker than that work: they leave the shared plan
        (barley, p(protein | three findings): 8.1 M units of its own, 7.9 ms in the
        kernel, 1.4 ms on the path); decided once per set of observed variables."""
        return _remembered(
            self._paths_kept,
            (observed, free, self._budget()),
            lambda: self._choose_paths(observed, free, ev),
        )

    def _choose_paths(
        self, observed: tuple[int, ...], free: tuple[int, ...], ev: dict[int, torch.Tensor]
    ) -> dict[int, Any]:
        """:meth:`_path_queries`' choice, made afresh."""
        paths = {}
        whole = self._shared_plan(free, observed)
        added = whole.extra["added"] if whole is not None else [math.inf] * len(free)
        for v, own in zip(free, added):
            if own < PATH_COST:
                continue
            single = self._flat_plan("a query", "query_plan", (v,), observed)
            path = self._path_of(single, (v,), ev)
            if path is None:
                continue
            on_path = PATH_SECONDS_PER_FLOP * path.cost + PATH_SECONDS_PER_STEP * len(path.steps)
            if PATH_MARGIN * on_path < KERNEL_SECONDS_PER_COST * own:
                paths[v] = single
        return paths

    def _shared_plan(self, free: tuple[int, ...], observed: tuple[int, ...]) -> Any:
        """:meth:`Engine.posteriors_plan` within the memory budget (its workspace holds
        every table live at once), else None."""
        try:
            plan = self._flat_plan("all posteriors", "posteriors_plan", free, observed)
        except SizeLimitError:
            return None
        if plan.flat.workspace * 8 > self._budget():
            return None
        return plan

    def _queries_cheaper(self, observed: tuple[int, ...], free: tuple[int, ...]) -> bool:
        """Whether all posteriors are cheaper as the per-variable queries' shared plan
        than as one calibration: always when the junction tree (its structure: no
        potentials are built to decide) has more than PER_VARIABLE_ENTRIES entries or
        would not fit the memory budget; else by the kernel's cost model above, decided
        once per set of observed variables (the same for every row of a batch: both
        routes run the kernel row by row)."""
        compiled = self._compiled_ok()
        return _remembered(
            self._route_cache,
            (observed, compiled, self._budget()),
            lambda: self._decide_route(observed, free, compiled),
        )

    def _decide_route(
        self, observed: tuple[int, ...], free: tuple[int, ...], compiled: bool
    ) -> bool:
        """:meth:`_queries_cheaper`'s decision, made afresh."""
        jt = self._tree_for(observed) if compiled else self._tree()
        if jt.size > PER_VARIABLE_ENTRIES or jt.size * 2 * 8 > self._budget():
            return True
        if not compiled:
            return False
        tree = _kernel_seconds(jt.plan())
        # the shared plan costs at most what its queries cost apart (COST_SAMPLE of them
        # planned, evenly spaced: no randomness) and, on the bnlearn networks, never
        # less than a tenth of it: only between the two is it built to be compared
        overhead = SHARED_SECONDS + SHARED_SECONDS_PER_VARIABLE * len(free)
        if tree <= overhead:
            return False
        picked = free[:: max(1, len(free) // COST_SAMPLE)][:COST_SAMPLE]
        plans = [self._flat_plan("a query", "query_plan", (v,), observed).flat for v in picked]
        apart = sum(map(_kernel_seconds, plans)) * len(free) / len(picked)
        if overhead + apart < tree:
            return True
        if tree < TREE_ALONE_SECONDS or apart > SHARING_BOUND * tree:
            return False
        shared = self._shared_plan(free, observed)
        return shared is not None and overhead + _kernel_seconds(shared.flat) < tree

    def _tree(self) -> Any:
        """The network's junction tree, its structure only (built on first use)."""
        from pyrobn.infer.junction_tree import JunctionTree

        jt = getattr(self, "_jt", None)
        if jt is None:
            jt = self._jt = JunctionTree(self.cards, self._flat_engine.scopes)
        return jt

    def _tree_for(self, observed: tuple[int, ...]) -> Any:
        """The junction tree to calibrate given ``observed`` (sorted variable ids): one
        triangulated without them where the network's tree is big enough for that to
        pay (SPECIALISE_ENTRIES_PER_VARIABLE) and it is SPECIALISE_GAIN times smaller,
        else the network's tree; decided once per set of observed variables."""
        from pyrobn.infer.junction_tree import JunctionTree

        general = self._tree()
        if not observed or general.size < SPECIALISE_ENTRIES_PER_VARIABLE * len(self.cards):
            return general
        kept = self._observed_trees
        jt = kept.pop(observed, None)
        if jt is None:
            jt = JunctionTree(
                self.cards, self._flat_engine.scopes, observed=observed, conditionals=True
            )
            if jt.size * SPECIALISE_GAIN > general.size:
                jt = general
        kept[observed] = jt  # most recently used last

        def held() -> int:
            return sum(2 * t.size for t in kept.values() if t is not general)

        while len(kept) > 1 and (len(kept) > SPECIALISED_TREES or held() > SPECIALISED_ENTRIES):
            del kept[next(iter(kept))]
        return jt

    def junction_tree(self, observed: Sequence[str] = ()) -> Any:
        """The junction tree all posteriors are calibrated on (built on first use,
        checked against the memory budget: its potentials, its largest clique and the
        variables in it): the network's, or, given the names of observed variables,
        the one :meth:`marginals` uses for them (triangulated without them where that
        pays: ``SPECIALISE_ENTRIES_PER_VARIABLE``)."""
        jt = self._tree_for(tuple(sorted(self._var(v) for v in observed)))
        return self._checked(jt)

    def _checked(self, jt: Any) -> Any:
        entries = jt.size * 2 + jt.plan().workspace  # potentials, their copy, scratch
        if entries * 8 > self._budget():
            shown = ", ".join(f"{self.variables[v]} ({self.cards[v]})" for v in jt.largest[:12])
            raise SizeLimitError(
                f"the junction tree needs {entries:,} float64 entries = "
                f"{entries * 8 / 2**30:.3g} GiB, over the memory budget of "
                f"{self._budget() / 2**30:.3g} GiB (net.memory_budget); its largest clique "
                f"has {jt.largest_size:,} entries (treewidth bound {jt.width}) over {shown}"
            )
        return jt

    def _marginals_tree(
        self, ev: dict[int, torch.Tensor], batch: int | None, free: tuple[int, ...]
    ) -> dict[str, torch.Tensor] | None:
        order = tuple(sorted(ev))
        if self._compiled_ok():
            jt = self._checked(self._tree_for(order))
            store = self._flat_tables
            with store.lock:
                store.update(self._tables(), None, jt.potential_plan().workspace)
                jt.refresh(store.buffer, store.offsets, tuple(store.keys))
            probs, log_z = jt.marginals(order, self._evidence_matrix(ev, order, batch))
            if (log_z == -math.inf).any():  # zero evidence, or an underflow: log space
                return None
            # sliced in numpy, then wrapped: a torch slice costs microseconds each
            columns = probs if batch is not None else probs[0]
        else:
            jt = self._checked(self._tree())
            rows = batch or 1
            matrix = torch.stack([ev[v].expand(rows) for v in order], 1) if order else None
            if matrix is None:
                matrix = torch.zeros(rows, 0, dtype=torch.long, device=self.device)
            columns, log_z = jt.calibrate_torch(self._tables(), order, matrix)
            if bool(torch.isneginf(log_z).any()):
                return None
            if batch is None:
                columns = columns[0]
        out = {}
        start = 0
        wanted = set(free)
        for v in jt.free:
            k = self.cards[v]
            if v in wanted:
                # a numpy slice shared as a tensor; a tensor slice as it is
                out[self.variables[v]] = torch.as_tensor(columns[..., start : start + k])
            start += k
        return out

    def log_evidence(self, evidence: Evidence) -> torch.Tensor | float:
        """log p(e) = log Σ_{x \\ e} p(x) (eq. 3): a float, or a (B,) tensor if batched."""
        ev, batch = self._evidence(evidence)
        if not ev:
            return 0.0
        log_z = None
        if self._compiled_ok():
            plan = self._flat_plan("log_evidence", "query_plan", (), tuple(sorted(ev)))
            _, log_norm, _ = self._run_flat(plan.flat, plan.kept, ev, batch)
            if not (log_norm == -math.inf).any():  # else: zero, or an underflow: log space
                log_z = torch.from_numpy(log_norm[:, 0])
        if log_z is None:
            factors = self._relevant(tuple(ev))
            plan = self._engine.plan((), tuple(ev), (), "sum", factors)
            self._guard(plan.largest_size(self.cards), plan.largest, batch or 1, "log_evidence")
            log_z = self._log_joint((), ev, factors)
        return log_z if batch is not None else float(log_z[0])

    def probability(
        self, assignment: Evidence, evidence: Evidence | None = None
    ) -> torch.Tensor | float:
        """p(assignment | evidence) = p(assignment, evidence) / p(evidence)
        (eq. 5-7: a joint as in eq. 6, divided by p(evidence) as in eq. 7).

        >>> pyrobn.student_network().probability({"x2": 1, "x3": 1})   # (eq. 6)
        0.546
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
        """The most probable explanation argmax_{x \\ e} p(x \\ e | e): the joint
        maximiser over every unobserved variable together (ints, or (B,) tensors for
        batched evidence), by max-product with back-pointers on a min-fill plan — not
        the per-variable maxima of the marginals.

        ``return_log_prob`` also returns log max_{x \\ e} p(x \\ e, e) (the joint).
        """
        ev, batch = self._evidence(evidence)
        if self._compiled_ok():
            plan = self._flat_plan("the MPE", "mpe_plan", tuple(sorted(ev)))
            _, log_norm, states = self._run_flat(plan.flat, plan.kept, ev, batch)
            if not (log_norm == -math.inf).any():
                best = torch.from_numpy(log_norm[:, 0])
                columns = dict(zip(plan.flat.free, torch.from_numpy(states).unbind(1)))
                values = {v: columns[v] for v in range(len(self.variables)) if v in columns}
                return self._mpe_result(values, best, batch, return_log_prob)
        plan = self._engine.plan((), tuple(ev), (), "max")
        self._guard(plan.largest_size(self.cards), plan.largest, batch or 1, "the MPE")
        best, values = self._engine.max_assignment(self._log_tables(), ev)
        self._raise_zero(best, evidence)
        return self._mpe_result(values, best, batch, return_log_prob)

    def _mpe_result(
        self,
        values: dict[int, torch.Tensor],
        best: torch.Tensor,
        batch: int | None,
        return_log_prob: bool,
    ) -> dict[str, Any] | tuple[dict[str, Any], Any]:
        out: dict[str, Any] = {}
        for var in range(len(self.variables)):
            if var in values:
                out[self.variables[var]] = values[var] if batch is not None else int(values[var][0])
        if return_log_prob:
            return out, best if batch is not None else float(best[0])
        return out

    def predict_proba(self, evidence: Evidence | None = None) -> dict[str, torch.Tensor]:
        """The posterior marginal of every unobserved variable (the contract's name for
        :meth:`marginals`): {name: (card,) or (B, card)}."""
        return self.marginals(evidence)

    def predict(self, evidence: Evidence | None = None) -> dict[str, Any]:
        """The most probable joint state of the unobserved variables given ``evidence``
        (:meth:`mpe`; not the per-variable maxima of :meth:`predict_proba`)."""
        return self.mpe(evidence)

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
