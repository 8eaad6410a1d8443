"""Exact inference on discrete factor graphs: a compiled log-space variable elimination.

A discrete model whose joint factorises as p(x) ∝ Π_f φ_f(x_{S_f}) (a Bayesian network,
eq. 8 of the notes, is the case φ_f = p(x_n | Pa(x_n))) answers every exact query by
summing (or maximising) variables out one at a time, as the notes do by hand in eq. 3-7:

    p(x_Q, e) = Σ_{x_R} Π_f φ_f(x_{S_f}) |_{evidence e}                (sum-product)
    max_x p(x, e)                                                       (max-product, MPE)

:class:`CompiledContraction` knows only the variables' cardinalities and the factors'
scopes. For one *shape* of query (which variables are queried, observed and softly
observed, and which factors take part) it compiles a :class:`Plan` once (elimination
order by the greedy min-size heuristic, the permutations and views that align the
factors) and caches it; running a plan is then a short list of tensor operations with
no Python loop over data. Everything is in log space (products are sums,
marginalisation is ``logsumexp``, maximisation is ``max``), so nothing underflows and
probability zero is an exact ``-inf``.

Evidence comes in two forms, both batched over a leading dimension of size B:

* hard evidence ``{v: LongTensor(B)}`` slices the factors (the variable disappears);
* soft evidence ``{v: Tensor(B, card_v)}``, a log-likelihood factor over the states of
  ``v`` (0 for allowed states and -inf for excluded ones encodes a partly missing column).

The same forward pass gives, by keeping what each elimination saw, the most probable
explanation (max-product with a traceback) and exact posterior samples
(forward filtering, backward sampling on the elimination tree; no rejection); its
gradient gives every single-variable posterior at once (:meth:`all_marginals`) and
EM's expected counts. :meth:`CompiledContraction.marginal` runs the same plan in
linear space (products and sums: several times faster), for factors that
:func:`underflow_safe` clears. Reductions over small axes are unrolled into
elementwise operations, which torch runs far faster on large batches.

Example:
    >>> engine = CompiledContraction(cards=[2, 2], scopes=[(0,), (0, 1)])
    >>> log_p0 = torch.tensor([0.3, 0.7]).log()
    >>> log_p1_given_0 = torch.tensor([[0.9, 0.1], [0.2, 0.8]]).log()
    >>> engine.log_marginal([log_p0, log_p1_given_0], query=(0,),
    ...                     evidence={1: torch.tensor([1])}).exp()   # p(x0, x1=1)
    tensor([[0.0300, 0.5600]])
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce

import torch

from pyrobn.errors import ConfigurationError, UnknownVariableError, ZeroProbabilityEvidence

SUM, MAX, SAMPLE = "sum", "max", "sample"
_MODES = (SUM, MAX, SAMPLE)

__all__ = [
    "HEURISTICS",
    "MAX",
    "SAMPLE",
    "SUM",
    "CompiledContraction",
    "Plan",
    "elimination_order",
    "induced_cliques",
    "logsumexp_axis",
    "row_rescaled",
    "sum_axis",
    "underflow_safe",
]

#: elimination-order heuristics (Koller & Friedman 9.4.3.2): the number of fill edges
#: ("min-fill"), their total weight, the product of the two cardinalities
#: ("weighted-min-fill"), or the size of the table formed ("min-weight"); ties go to the
#: smaller table, then to the lower variable id (the order is deterministic)
HEURISTICS = ("min-fill", "weighted-min-fill", "min-weight")


def elimination_order(
    scopes: Iterable[Iterable[int]],
    cards: Sequence[int],
    eliminate: Iterable[int],
    heuristic: str = "min-fill",
) -> list[int]:
    """A greedy elimination order of ``eliminate`` on the interaction graph of ``scopes``.

    The interaction graph joins two variables that share a factor; eliminating a variable
    joins its neighbours (the fill edges) and forms a table over it and them. At each step
    the variable with the smallest score under ``heuristic`` (see :data:`HEURISTICS`) is
    eliminated. Neighbourhoods are bit sets and a score is recomputed only when it can
    have changed (the eliminated variable's neighbours, and the common neighbours of the
    two ends of each fill edge), with a heap and lazy invalidation, so real networks of
    hundreds of variables are ordered in milliseconds.

    >>> elimination_order([(0, 1), (1, 2)], [2, 2, 2], eliminate=[0, 1])
    [0, 1]
    """
    if heuristic not in HEURISTICS:
        raise ConfigurationError(f"heuristic must be one of {HEURISTICS}, got {heuristic!r}")
    todo_vars = set(eliminate)
    if not todo_vars:
        return []
    ids: dict[int, int] = {}
    scope_ids = []
    for scope in scopes:
        local = []
        for v in scope:
            i = ids.get(v)
            if i is None:
                i = ids[v] = len(ids)
            local.append(i)
        scope_ids.append(local)
    for v in todo_vars:
        if v not in ids:
            ids[v] = len(ids)
    names = [0] * len(ids)
    for v, i in ids.items():
        names[i] = v
    card = [cards[v] for v in names]
    adj = [0] * len(ids)
    for local in scope_ids:
        mask = 0
        for i in local:
            mask |= 1 << i
        for i in local:
            adj[i] |= mask
    for i in range(len(adj)):
        adj[i] &= ~(1 << i)

    def members(mask: int) -> list[int]:
        out = []
        while mask:
            low = mask & -mask
            out.append(low.bit_length() - 1)
            mask ^= low
        return out

    def score(i: int) -> tuple[int, int]:
        nbrs = adj[i]
        weight = card[i]
        listed = members(nbrs)
        for u in listed:
            weight *= card[u]
        if heuristic == "min-weight":
            return weight, weight
        fill = 0
        if heuristic == "min-fill":
            for u in listed:
                fill += (nbrs & ~adj[u] & ~(1 << u)).bit_count()
        else:
            for u in listed:
                fill += card[u] * sum(card[w] for w in members(nbrs & ~adj[u] & ~(1 << u)))
        return fill // 2, weight

    todo = {ids[v] for v in todo_vars}
    version = dict.fromkeys(todo, 0)
    heap = [(*score(i), names[i], i, 0) for i in todo]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        _, _, _, i, stamp = heapq.heappop(heap)
        if i not in todo or stamp != version[i]:
            continue
        order.append(names[i])
        todo.discard(i)
        nbrs = adj[i]
        adj[i] = 0
        bit = 1 << i
        touched = nbrs
        listed = members(nbrs)
        for u in listed:
            adj[u] &= ~bit
        for u in listed:
            new = nbrs & ~adj[u] & ~(1 << u)
            if new:
                adj[u] |= new
                for w in members(new):
                    if w > u:  # each fill edge once: common neighbours change score
                        touched |= adj[u] & adj[w]
        for u in members(touched):
            if u in todo:
                version[u] += 1
                heapq.heappush(heap, (*score(u), names[u], u, version[u]))
    return order


def induced_cliques(
    scopes: Iterable[Iterable[int]], order: Sequence[int]
) -> list[tuple[int, frozenset[int]]]:
    """The table each elimination forms: (variable, its scope) for each step of ``order``
    (the variable with its neighbours at that time). The largest scope minus one is the
    order's induced width, an upper bound on the treewidth."""
    adj: dict[int, set[int]] = {}
    for scope in scopes:
        scope = tuple(scope)
        for v in scope:
            adj.setdefault(v, set()).update(scope)
    for v, nbrs in adj.items():
        nbrs.discard(v)
    out = []
    for v in order:
        nbrs = adj.pop(v, set())
        out.append((v, frozenset(nbrs | {v})))
        for u in nbrs:
            adj[u].discard(v)
            adj[u] |= nbrs - {u}
    return out


@dataclass(frozen=True)
class _Input:
    """How one factor enters a plan: permuted (observed axes first) then sliced."""

    factor: int
    perm: tuple[int, ...] | None  # None: already in that order
    observed: tuple[int, ...]  # variables of the observed axes, in the permuted order
    scope: tuple[int, ...]  # the free variables left, sorted


@dataclass(frozen=True)
class _Step:
    """Combine the slots holding ``var`` and sum (or maximise) ``var`` out."""

    var: int
    slots: tuple[int, ...]
    views: tuple[tuple[int, ...] | None, ...]  # per slot: its view on ``scope`` (or None)
    scope: tuple[int, ...]  # the combined scope, sorted
    axis: int  # the axis of ``var`` in the combined tensor (batch axis is 0)
    equation: str = ""  # the same step as one einsum (linear space, sum mode)


@dataclass(frozen=True)
class Plan:
    """A compiled contraction for one shape of query (see :meth:`CompiledContraction.plan`)."""

    mode: str
    inputs: tuple[_Input, ...]
    soft: tuple[int, ...]
    steps: tuple[_Step, ...]
    final_slots: tuple[int, ...]
    final_views: tuple[tuple[int, ...] | None, ...]
    query: tuple[int, ...]
    query_perm: tuple[int, ...]  # from sorted query order to the requested order
    largest: tuple[int, ...] = ()  # the scope of the largest table a step forms

    def largest_size(self, cards: Sequence[int]) -> int:
        """Entries of the largest table a step forms, per evidence row."""
        size = 1
        for v in self.largest:
            size *= cards[v]
        return size


#: einsum subscripts of a fused step (one per variable of the step's table)
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

#: reductions over an axis of at most this many states are unrolled into elementwise ops:
#: torch's reduction kernels are slow on tiny inner axes of large batched tensors
_UNROLL = 8


def sum_axis(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Σ over ``axis``, unrolled for small axes of large tensors (same value as x.sum(axis))."""
    k = x.shape[axis]
    if k > _UNROLL or x.numel() < 256:
        return x.sum(axis)
    return reduce(torch.add, x.unbind(axis))


def row_rescaled(x: torch.Tensor) -> torch.Tensor:
    """x divided by its largest entry per row of axis 0 (rows of zeros left as they are)."""
    if x.dim() == 0:
        return x
    top = x.reshape(x.shape[0], -1).amax(1)
    top = torch.where(top > 0, top, torch.ones_like(top))
    return x / top.reshape(-1, *(1,) * (x.dim() - 1))


def logsumexp_axis(x: torch.Tensor, axis: int) -> torch.Tensor:
    """log Σ exp over ``axis`` (max-shifted). A slice of only -inf gives -inf with a zero
    gradient (not NaN), so gradients (EM's expected counts, all marginals) stay finite
    where a table has impossible rows; elsewhere the gradient is the softmax."""
    k = x.shape[axis]
    if k > _UNROLL or x.numel() < 64:
        top = x.detach().amax(axis, keepdim=True)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        total = torch.exp(x - top).sum(axis)
        top = top.squeeze(axis)
    else:
        parts = x.unbind(axis)
        top = reduce(torch.maximum, parts).detach()
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        total = reduce(torch.add, (torch.exp(p - top) for p in parts))
    positive = total > 0
    safe = torch.where(positive, total, torch.ones_like(total))
    return torch.where(positive, torch.log(safe) + top, torch.full_like(total, -math.inf))


def _view_on(
    scope: Sequence[int], target: Sequence[int], cards: Sequence[int]
) -> tuple[int, ...] | None:
    """The view shape that broadcasts a (batch, *sorted scope) tensor over ``target``
    (None when it is already aligned)."""
    if tuple(scope) == tuple(target):
        return None
    inside = set(scope)
    return (-1, *(cards[v] if v in inside else 1 for v in target))


def _aligned(tensor: torch.Tensor, view: tuple[int, ...] | None) -> torch.Tensor:
    return tensor if view is None else tensor.reshape(view)


class CompiledContraction:
    """Exact sum-/max-product over discrete factors in log space, with cached plans.

    Args:
        cards: the number of states of each variable (variables are 0..V-1).
        scopes: for each factor, the variables of its table axes, in axis order.
        heuristic: how plans order the eliminations when no order is given (one of
            :data:`HEURISTICS`).
    """

    def __init__(
        self,
        cards: Sequence[int],
        scopes: Sequence[Sequence[int]],
        heuristic: str = "min-fill",
    ) -> None:
        if heuristic not in HEURISTICS:
            raise ConfigurationError(f"heuristic must be one of {HEURISTICS}, got {heuristic!r}")
        self.heuristic = heuristic
        self.cards = tuple(int(c) for c in cards)
        self.scopes = tuple(tuple(int(v) for v in s) for s in scopes)
        for f, scope in enumerate(self.scopes):
            for v in scope:
                if not 0 <= v < len(self.cards):
                    raise UnknownVariableError(f"factor {f} names variable {v}, which is unknown")
        self._plans: dict[tuple, Plan] = {}

    # ------------------------------------------------------------------ compile
    def plan(
        self,
        query: Sequence[int] = (),
        observed: Sequence[int] = (),
        soft: Sequence[int] = (),
        mode: str = SUM,
        factors: Sequence[int] | None = None,
        order: Sequence[int] | None = None,
    ) -> Plan:
        """The cached plan for this query shape (compiled on first use).

        ``query`` variables stay in the result (in the given order); ``observed`` ones
        are sliced away; every other variable of the chosen ``factors`` (default all)
        is summed out (``mode="sum"``) or maximised out (``"max"``, ``"sample"``: these
        need an empty query and keep what the traceback needs), in ``order`` when given
        (else by :func:`elimination_order` with the engine's heuristic).
        """
        factors = None if factors is None else tuple(factors)
        key = (tuple(query), tuple(sorted(observed)), tuple(sorted(soft)), mode, factors)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._compile(*key, order=order)
            self._plans[key] = plan
        return plan

    def _compile(
        self,
        query: tuple[int, ...],
        observed: tuple[int, ...],
        soft: tuple[int, ...],
        mode: str,
        factors: Sequence[int] | None,
        order: Sequence[int] | None = None,
    ) -> Plan:
        if mode not in _MODES:
            raise ConfigurationError(f"mode must be one of {_MODES}, got {mode!r}")
        if mode != SUM and query:
            raise ConfigurationError(f"mode {mode!r} eliminates every free variable: no query")
        observed_set = set(observed)
        if observed_set & set(query):
            raise ConfigurationError(
                f"variables {sorted(observed_set & set(query))} are both queried and observed"
            )
        if observed_set & set(soft):
            raise ConfigurationError(
                f"variables {sorted(observed_set & set(soft))} have both hard and soft evidence"
            )
        chosen = tuple(range(len(self.scopes))) if factors is None else tuple(factors)
        if not chosen:
            raise ConfigurationError("a contraction needs at least one factor")
        inputs, scopes = [], []
        for f in chosen:
            scope = self.scopes[f]
            obs_axes = [i for i, v in enumerate(scope) if v in observed_set]
            free_axes = sorted(
                (i for i, v in enumerate(scope) if v not in observed_set), key=lambda i: scope[i]
            )
            inputs.append(
                _Input(
                    factor=f,
                    perm=None
                    if obs_axes + free_axes == list(range(len(scope)))
                    else tuple(obs_axes + free_axes),
                    observed=tuple(scope[i] for i in obs_axes),
                    scope=tuple(scope[i] for i in free_axes),
                )
            )
            scopes.append(inputs[-1].scope)
        scopes.extend((v,) for v in sorted(soft))
        free = set().union(*map(set, scopes))
        missing = [v for v in query if v not in free]
        if missing:
            raise ConfigurationError(f"variables {sorted(set(missing))} appear in no factor")
        live: dict[int, tuple[int, ...]] = dict(enumerate(scopes))
        to_eliminate = free - set(query)
        if order is None:
            order = elimination_order(scopes, self.cards, to_eliminate, self.heuristic)
        elif set(order) != to_eliminate:
            raise ConfigurationError(
                f"the order {list(order)} must eliminate exactly {sorted(to_eliminate)}"
            )
        steps = []
        for var in order:
            slots = tuple(sorted(k for k, s in live.items() if var in s))
            scope = tuple(sorted(set().union(*(set(live[k]) for k in slots))))
            views = tuple(_view_on(live[k], scope, self.cards) for k in slots)
            for k in slots:
                del live[k]
            new_slot = len(scopes)
            out = tuple(v for v in scope if v != var)
            letter = {v: _LETTERS[i] for i, v in enumerate(scope)}
            terms = [
                "..." + "".join(letter[v] for v in live_scope)
                for live_scope in (scopes[k] for k in slots)
            ]
            equation = ",".join(terms) + "->..." + "".join(letter[v] for v in out)
            scopes.append(out)
            live[new_slot] = out
            steps.append(_Step(var, slots, views, scope, 1 + scope.index(var), equation))
        sorted_query = tuple(sorted(query))
        final_slots = tuple(sorted(live))
        final_views = tuple(_view_on(live[k], sorted_query, self.cards) for k in final_slots)
        perm = (0, *(1 + sorted_query.index(v) for v in query))

        def size(scope: Sequence[int]) -> int:
            n = 1
            for v in scope:
                n *= self.cards[v]
            return n

        largest = max([s.scope for s in steps] + [sorted_query], key=size)
        return Plan(
            mode,
            tuple(inputs),
            tuple(sorted(soft)),
            tuple(steps),
            final_slots,
            final_views,
            tuple(query),
            perm,
            tuple(largest),
        )

    # ------------------------------------------------------------------ run
    def _forward(
        self,
        plan: Plan,
        log_tables: Sequence[torch.Tensor],
        evidence: Mapping[int, torch.Tensor],
        soft_evidence: Mapping[int, torch.Tensor],
        linear: bool = False,
        fused: bool = False,
        rescale: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run ``plan``; with ``rescale`` (linear space) every intermediate is divided by
        its largest entry per batch row as it is formed, so the result is exact up to a
        positive factor per row (rows that vanish stay zero)."""
        slots: list[torch.Tensor] = []
        for inp in plan.inputs:
            table = log_tables[inp.factor]
            if inp.perm is not None:
                table = table.permute(inp.perm)
            if inp.observed:
                table = table[tuple(evidence[v] for v in inp.observed)]
            else:
                table = table.unsqueeze(0)
            slots.append(table)
        slots.extend(soft_evidence[v] for v in plan.soft)
        stash: list[torch.Tensor] = []
        combine = torch.mul if linear else torch.add
        marginalise = sum_axis if linear else logsumexp_axis
        for step in plan.steps:
            if fused and linear and plan.mode == SUM and len(step.scope) <= len(_LETTERS):
                # one contraction per step: torch.einsum multiplies and sums together
                # (pairwise, through batched matrix products), never forming the product
                slots.append(torch.einsum(step.equation, *(slots[k] for k in step.slots)))
                if rescale:
                    slots[-1] = row_rescaled(slots[-1])
                continue
            combined = reduce(
                combine, (_aligned(slots[k], view) for k, view in zip(step.slots, step.views))
            )
            if plan.mode == SUM:
                slots.append(marginalise(combined, step.axis))
                if rescale and linear:
                    slots[-1] = row_rescaled(slots[-1])
            elif plan.mode == MAX:
                best, arg = combined.max(step.axis)
                slots.append(best)
                stash.append(arg)
            else:
                slots.append(marginalise(combined, step.axis))
                stash.append(combined)
        if plan.final_slots:
            result = reduce(
                combine,
                (_aligned(slots[k], v) for k, v in zip(plan.final_slots, plan.final_views)),
            )
        else:  # pragma: no cover - every plan keeps at least one factor
            result = log_tables[0].new_zeros((1,) * (1 + len(plan.query)))
        if plan.query_perm != tuple(range(len(plan.query_perm))):
            result = result.permute(plan.query_perm)
        return result, stash

    def log_marginal(
        self,
        log_tables: Sequence[torch.Tensor],
        query: Sequence[int] = (),
        evidence: Mapping[int, torch.Tensor] | None = None,
        soft_evidence: Mapping[int, torch.Tensor] | None = None,
        factors: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """log Σ_{x_R} Π_f φ_f with the evidence fixed: shape (B, *cards of ``query``).

        With normalised factors (a Bayesian network) this is log p(x_Q, e); ``query=()``
        gives the log evidence log p(e) per batch row. B is 1 for unbatched evidence.
        Differentiable: the gradient w.r.t. log φ_f is the expected count of each of its
        entries under the posterior (used by EM).
        """
        evidence = evidence or {}
        soft_evidence = soft_evidence or {}
        plan = self.plan(tuple(query), tuple(evidence), tuple(soft_evidence), SUM, factors)
        return self._forward(plan, log_tables, evidence, soft_evidence)[0]

    def scaled_marginal(
        self,
        tables: Sequence[torch.Tensor],
        query: Sequence[int],
        evidence: Mapping[int, torch.Tensor],
        factors: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """:meth:`marginal` up to a positive factor per batch row: every intermediate
        message is rescaled to a largest entry of 1 as it is formed, so the linear-space
        einsum contraction runs where :func:`underflow_safe` says a plain one might
        underflow (posteriors only: normalise the result per row). A row that comes out
        all zero is impossible evidence or an underflow: decide in log space."""
        plan = self.plan(tuple(query), tuple(evidence), (), SUM, factors)
        return self._forward(plan, tables, evidence, {}, linear=True, fused=True, rescale=True)[0]

    def marginal(
        self,
        tables: Sequence[torch.Tensor],
        query: Sequence[int] = (),
        evidence: Mapping[int, torch.Tensor] | None = None,
        soft_evidence: Mapping[int, torch.Tensor] | None = None,
        factors: Sequence[int] | None = None,
        fused: bool = False,
    ) -> torch.Tensor:
        """:meth:`log_marginal` in linear space (tables and soft evidence as φ, not log φ).

        The same plan with products and sums instead of sums and logsumexps: several
        times faster, and exact as long as no nonzero product of entries underflows
        float64; check that with :func:`underflow_safe` (the caller's job).
        """
        evidence = evidence or {}
        soft_evidence = soft_evidence or {}
        plan = self.plan(tuple(query), tuple(evidence), tuple(soft_evidence), SUM, factors)
        return self._forward(plan, tables, evidence, soft_evidence, linear=True, fused=fused)[0]

    def _traceback(
        self,
        plan: Plan,
        stash: list[torch.Tensor],
        n: int,
        generator: torch.Generator | None,
    ) -> dict[int, torch.Tensor]:
        values: dict[int, torch.Tensor] = {}
        device = stash[0].device if stash else None
        for step, stored in zip(reversed(plan.steps), reversed(stash)):
            rows = stored.shape[0]
            if rows not in (1, n):
                raise ConfigurationError(f"{n} draws for a batch of {rows} evidence rows")
            batch = (
                torch.arange(n, device=device)
                if rows == n
                else torch.zeros(n, dtype=torch.long, device=device)
            )
            others = tuple(values[v] for v in step.scope if v != step.var)
            if plan.mode == MAX:
                values[step.var] = stored[(batch, *others)]
            else:
                logits = stored.movedim(step.axis, -1)[(batch, *others)]
                probs = torch.softmax(logits, -1)
                values[step.var] = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return values

    def all_marginals(
        self,
        log_tables: Sequence[torch.Tensor],
        variables: Sequence[int],
        evidence: Mapping[int, torch.Tensor] | None = None,
        factors: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Every p(x_v | e) for v in ``variables`` from one forward and one backward pass.

        A zero log-likelihood factor λ_v is attached to each variable; then
        ∂ log Z / ∂ log λ_v(s) = p(x_v = s | e) (the same identity that gives EM its
        expected counts). Returns (log Z (B,), {v: (B, card_v)}).
        """
        evidence = evidence or {}
        device, dtype = log_tables[0].device, log_tables[0].dtype
        batch = max((int(t.shape[0]) for t in evidence.values()), default=1)
        with torch.enable_grad():
            soft = {
                v: torch.zeros(batch, self.cards[v], device=device, dtype=dtype).requires_grad_()
                for v in variables
            }
            plan = self.plan((), tuple(evidence), tuple(soft), SUM, factors)
            log_z = self._forward(plan, [t.detach() for t in log_tables], evidence, soft)[0]
            grads = torch.autograd.grad(log_z.sum(), [soft[v] for v in variables])
        return log_z.detach(), dict(zip(variables, grads))

    def max_assignment(
        self,
        log_tables: Sequence[torch.Tensor],
        evidence: Mapping[int, torch.Tensor] | None = None,
        factors: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Max-product: (max_x log Π_f φ_f (B,), the maximising state of each free variable).

        For a Bayesian network this is the most probable explanation
        argmax_x p(x, e) = argmax_x p(x | e) of all unobserved variables.
        """
        evidence = evidence or {}
        plan = self.plan((), tuple(evidence), (), MAX, factors)
        best, stash = self._forward(plan, log_tables, evidence, {})
        return best, self._traceback(plan, stash, best.shape[0], None)

    def sample(
        self,
        log_tables: Sequence[torch.Tensor],
        n: int,
        evidence: Mapping[int, torch.Tensor] | None = None,
        factors: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Exact draws of the free variables from p(x | e) ∝ Π_f φ_f (forward filtering,
        backward sampling): (log evidence (B,), {variable: LongTensor(n)}).

        The forward pass sums each variable out and keeps the table it summed; the
        backward pass draws the variables in reverse elimination order from those
        tables, conditioned on the values already drawn. ``n`` is 1 draw per evidence
        row when the evidence is batched (B = n), or any number for B = 1.
        """
        evidence = evidence or {}
        plan = self.plan((), tuple(evidence), (), SAMPLE, factors)
        log_z, stash = self._forward(plan, log_tables, evidence, {})
        if bool(torch.isneginf(log_z).any()):
            raise ZeroProbabilityEvidence("cannot sample: the evidence has probability zero")
        return log_z, self._traceback(plan, stash, n, generator)


#: log of the smallest positive float64 (about -708) with a margin for sums of products
_LOG_TINY = -650.0


def underflow_safe(tables: Sequence[torch.Tensor]) -> bool:
    """True when Π_f (smallest positive entry of φ_f) stays far above float64's underflow.

    Every nonzero term of a sum-product over these factors (with hard evidence, which
    only selects entries) is at least that product, so a linear-space contraction is
    then exact to rounding.
    """
    total = 0.0
    for t in tables:
        positive = t[t > 0]
        if positive.numel():
            total += float(positive.min().log())
    return total > _LOG_TINY
