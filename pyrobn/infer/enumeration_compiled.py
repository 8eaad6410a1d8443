"""A compiled CPU kernel for exact sum- and max-product over discrete tables: a whole
elimination (or junction-tree calibration) runs as one numba loop.

Each step of an elimination multiplies some tables and sums (or maximises) some of their
variables out (notes 2.1.1, eq. 3-7):

    out[x_O] = Σ_{x_J \\ x_O} Π_k φ_k[x_{S_k}]     (or max), with S_k, O ⊆ J.

In torch a step costs a few microseconds of dispatch per operation and materialises the
product over J; a real network's query is tens of such steps on small tables, so the
dispatch dominates. Here a :class:`FlatPlan` encodes every step as integers (the
cardinalities of J, each table's stride along each variable of J, the output's
strides) and :func:`run` walks J with an odometer, multiplying the entries in place:
no dispatch, no intermediate product. Hard evidence is a base offset into each table
that holds the observed variable (its axis is sliced, not multiplied by an indicator).
Rows of batched evidence run one after the other in the same loop.

Numerics: linear space, with every step's output divided by its sum and the logarithm of
that sum carried along (the scaled-forward trick of HMMs), so log p(e) is exact and no
message underflows. A product inside one step can still underflow in extreme cases;
then the result's normaliser is 0 and the caller reruns the query in log space
(:class:`pyrobn.infer.enumeration.CompiledContraction`) to tell a true zero from an
underflow.

Max-product (``mode="max"``) records, for every step, the maximising state of the
variable it eliminates, and a traceback gives the joint most probable assignment.

The kernel is single-threaded (no numba thread pool, so torch's and numba's thread
counts are untouched), compiled on first use and cached on disk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from pyrobn.errors import ConfigurationError

__all__ = [
    "FlatPlan",
    "PlanBuilder",
    "StructureArrays",
    "compile_elimination",
    "compile_query",
    "eliminate_into",
    "run",
]

_TABLE, _SLOT, _DIVIDE = 0, 1, 2  # input kinds: a table, a slot, a slot that divides


@dataclass(frozen=True)
class FlatPlan:
    """A compiled sequence of product-marginalise steps (see the module docstring).

    ``program`` holds the steps' encodings, ``starts`` where each begins; slot ``s``
    holds ``slot_sizes[s]`` entries at ``slot_offsets[s]`` of a float64 workspace of
    ``workspace`` entries (slots whose lives do not overlap may share memory);
    ``lambdas`` lists (slot, variable) pairs filled before each row with the evidence
    indicator of the variable (ones when it is not observed);
    ``outputs`` are the slots returned (normalised, with their log normaliser);
    ``evidence`` the variables whose states the caller passes, in column order;
    ``largest`` the variables of the largest product a step walks (its size is the
    cost; its length minus one bounds the treewidth). For ``mode="max"``, ``argmax``
    gives each step's eliminated variable (-1 for none) and ``arg_offsets`` where its
    back-pointers live in an int workspace of ``arg_workspace`` entries; ``free`` the
    variables the traceback assigns.
    """

    program: np.ndarray
    starts: np.ndarray
    slot_offsets: np.ndarray
    slot_sizes: np.ndarray
    workspace: int
    outputs: np.ndarray
    output_sizes: tuple[int, ...]
    evidence: tuple[int, ...]
    largest: tuple[int, ...]
    largest_size: int
    mode: str
    argmax: np.ndarray
    arg_offsets: np.ndarray
    arg_workspace: int
    free: tuple[int, ...]
    max_inputs: int
    max_dims: int
    lambdas: np.ndarray
    order: tuple[int, ...] = ()  # the elimination order (compile_query's plans)

    def __post_init__(self) -> None:
        # what every run needs, computed once (a plan is reused by every query of its shape)
        slot_lambda = np.full(len(self.slot_sizes), -1, dtype=np.int64)
        if len(self.lambdas):
            slot_lambda[self.lambdas[:, 0]] = self.lambdas[:, 1]
        object.__setattr__(self, "slot_lambda", slot_lambda)
        object.__setattr__(self, "free_array", np.asarray(self.free, dtype=np.int64))
        object.__setattr__(self, "total_output", int(sum(self.output_sizes)))
        # Python ints: math.prod on short lists is quick
        object.__setattr__(self, "cost", _work(self.program.tolist(), self.starts.tolist()))


def _work(program: Sequence[int], starts: Sequence[int]) -> float:
    """The work of the steps beginning at ``starts``: entries walked x inputs multiplied."""
    total = 0.0
    for s in starts:
        n_in, nd = program[s], program[s + 1]
        total += float(math.prod(program[s + 3 : s + 3 + nd])) * n_in
    return total


_NO_COLUMNS = np.zeros(1, dtype=np.int64)


class PlanBuilder:
    """Builds a :class:`FlatPlan` step by step.

    Args:
        cards: cardinality of each variable.
        scopes: each table's variables in axis order (tables are C-contiguous).
        evidence: the observed variables, in the column order of the evidence array.
    """

    def __init__(
        self, cards: Sequence[int], scopes: Sequence[Sequence[int]], evidence: Sequence[int]
    ) -> None:
        self.cards = cards
        self.scopes = scopes
        self.evidence = tuple(evidence)
        self._ev_col = {v: i for i, v in enumerate(self.evidence)}
        self._table_scopes: dict[int, tuple[int, ...]] = {}
        self.program: list[int] = []
        self.starts: list[int] = []
        self.slot_sizes: list[int] = []
        self.slot_scopes: list[tuple[int, ...]] = []
        self.argmax: list[int] = []
        self.arg_sizes: list[int] = []
        self.largest: tuple[int, ...] = ()
        self.largest_size = 1
        self.max_inputs = 1
        self.max_dims = 1
        self.lambdas: list[tuple[int, int]] = []
        self.last_use: list[int] = []
        #: the slots summed from each product (inputs, variables walked), so that a
        #: step asked for again reads the earlier result, or sums it further (the
        #: junction tree's Shafer-Shenoy cliques start the elimination of several
        #: messages with the same product: barley's calibration 47 to 37 M units)
        self._made: dict[tuple, list[int]] = {}
        #: products (inputs, variables) an elimination asked for, and how often; those in
        #: ``repeated`` are summed over their eliminated variable alone (not also over
        #: the variables private to them), so that each asker can sum the one table
        #: further (:func:`eliminate_into`)
        self.asked: dict[tuple, int] = {}
        self.repeated: frozenset[tuple] = frozenset()

    def cost(self, first: int = 0) -> float:
        """The work (entries walked x inputs) of the steps from step ``first`` on."""
        return _work(self.program, self.starts[first:])

    def lambda_slot(self, var: int) -> int:
        """A slot holding the evidence indicator of ``var`` (see :class:`FlatPlan`)."""
        slot = self.new_slot((var,))
        self.lambdas.append((slot, var))
        return slot

    def new_slot(self, scope: Sequence[int]) -> int:
        size = 1
        for v in scope:
            size *= self.cards[v]
        self.slot_sizes.append(size)
        self.slot_scopes.append(tuple(scope))
        self.last_use.append(len(self.starts))
        return len(self.slot_sizes) - 1

    def free_scope(self, kind: int, index: int) -> tuple[int, ...]:
        """The unobserved variables of a table or a slot."""
        if kind == _SLOT:
            return self.slot_scopes[index]
        scope = self._table_scopes.get(index)
        if scope is None:
            scope = self._table_scopes[index] = tuple(
                v for v in self.scopes[index] if v not in self._ev_col
            )
        return scope

    def _strides(self, kind: int, index: int) -> dict[int, int]:
        scope = self.slot_scopes[index] if kind == _SLOT else self.scopes[index]
        strides: dict[int, int] = {}
        step = 1
        for v in reversed(scope):
            strides[v] = step
            step *= self.cards[v]
        return strides

    def step(
        self,
        inputs: Sequence[tuple[int, int]],
        joint: Sequence[int],
        out: Sequence[int],
        eliminated: int = -1,
    ) -> int:
        """Add out[x_out] = Σ_{joint \\ out} Π inputs (each input a (kind, index) pair,
        kind 0 a table, 1 a slot, 2 a slot that divides, with 0 / 0 = 0: Hugin's
        update); returns the output slot. ``out`` must be a subset of
        ``joint`` in the same relative order; ``eliminated`` names the one variable a
        max step eliminates (for the traceback)."""
        joint = tuple(joint)
        inputs = sorted(inputs, key=lambda item: item[0] == _DIVIDE)  # divisors last
        made: list[int] = []
        if eliminated < 0:  # no back-pointers to record: an earlier result may serve
            made = self._made.setdefault((tuple(sorted(inputs)), frozenset(joint)), [])
            for earlier in made:  # this product was summed before ...
                scope = self.slot_scopes[earlier]
                if scope == tuple(out):
                    return earlier
                if set(out) <= set(scope):  # ... onto more variables: sum that further
                    return self.step(
                        [(_SLOT, earlier)], [*out, *(v for v in scope if v not in out)], out
                    )
        slot = self.new_slot(out)
        if eliminated < 0:
            made.append(slot)
        out_strides = self._strides(_SLOT, slot)
        size = 1
        for v in joint:
            size *= self.cards[v]
        if size > self.largest_size or not self.largest:
            self.largest, self.largest_size = joint, size
        self.max_inputs = max(self.max_inputs, len(inputs))
        self.max_dims = max(self.max_dims, len(joint))
        prog = self.program
        self.starts.append(len(prog))
        prog += [len(inputs), len(joint), slot]
        prog += [self.cards[v] for v in joint]
        prog += list(joint)
        prog += [out_strides.get(v, 0) for v in joint]
        for kind, index in inputs:
            strides = self._strides(_TABLE if kind == _TABLE else _SLOT, index)
            scope = self.scopes[index] if kind == _TABLE else self.slot_scopes[index]
            observed = [(self._ev_col[v], strides[v]) for v in scope if v in self._ev_col]
            if kind != _TABLE:
                self.last_use[index] = len(self.starts) - 1
            prog += [kind, index, len(observed)]
            for col, s in observed:
                prog += [col, s]
            prog += [strides.get(v, 0) for v in joint]
        self.argmax.append(eliminated)
        self.arg_sizes.append(self.slot_sizes[slot] if eliminated >= 0 else 0)
        return slot

    def _allocate(self, outputs: Sequence[int]) -> tuple[np.ndarray, int]:
        """Workspace offsets: a slot's memory is reused once every step reading it has
        run (lambda slots and outputs live throughout); first fit in a free list."""
        n = len(self.slot_sizes)
        forever = len(self.starts) + 1
        last = list(self.last_use)
        for s in outputs:
            last[s] = forever
        for s, _ in self.lambdas:
            last[s] = forever
        created = [0] * n
        for s, _ in self.lambdas:
            created[s] = -1
        step_of_slot = {}
        for o, start in enumerate(self.starts):
            step_of_slot[self.program[start + 2]] = o
        for s in range(n):
            created[s] = step_of_slot.get(s, -1)
        offsets = np.zeros(n, dtype=np.int64)
        free: list[tuple[int, int]] = []  # (offset, size), sorted by offset
        end = 0
        expiring: dict[int, list[int]] = {}
        for s in sorted(range(n), key=lambda s: (created[s], s)):
            for o in [k for k in expiring if k < created[s]]:
                for old in expiring.pop(o):
                    free.append((int(offsets[old]), self.slot_sizes[old]))
                free.sort()
                merged: list[tuple[int, int]] = []
                for off, size in free:
                    if merged and merged[-1][0] + merged[-1][1] == off:
                        merged[-1] = (merged[-1][0], merged[-1][1] + size)
                    else:
                        merged.append((off, size))
                free = merged
            size = self.slot_sizes[s]
            for i, (off, room) in enumerate(free):
                if room >= size:
                    offsets[s] = off
                    free[i] = (off + size, room - size)
                    break
            else:
                offsets[s] = end
                end += size
            expiring.setdefault(last[s], []).append(s)
        return offsets, end

    def finish(
        self, outputs: Sequence[int], mode: str, free: Sequence[int] = (), reuse: bool = False
    ) -> FlatPlan:
        sizes = np.asarray(self.slot_sizes, dtype=np.int64)
        if reuse:
            offsets, workspace = self._allocate(outputs)
        else:
            offsets = np.zeros(len(sizes), dtype=np.int64)
            np.cumsum(sizes[:-1], out=offsets[1:])
            workspace = int(sizes.sum())
        arg_offsets = np.zeros(len(self.arg_sizes) + 1, dtype=np.int64)
        np.cumsum(self.arg_sizes, out=arg_offsets[1:])
        argmax = np.asarray(self.argmax, dtype=np.int64)
        program, starts = _merge_axes(
            np.asarray(self.program, dtype=np.int64),
            np.asarray(self.starts, dtype=np.int64),
            argmax,
        )
        return FlatPlan(
            program=program,
            starts=starts,
            slot_offsets=offsets,
            slot_sizes=sizes,
            workspace=workspace,
            outputs=np.asarray(outputs, dtype=np.int64),
            output_sizes=tuple(self.slot_sizes[s] for s in outputs),
            evidence=self.evidence,
            largest=self.largest,
            largest_size=self.largest_size,
            mode=mode,
            argmax=argmax,
            arg_offsets=arg_offsets,
            arg_workspace=int(arg_offsets[-1]),
            free=tuple(free),
            max_inputs=self.max_inputs,
            max_dims=self.max_dims,
            lambdas=np.asarray(self.lambdas, dtype=np.int64).reshape(-1, 2),
        )


def compile_elimination(
    cards: Sequence[int],
    scopes: Sequence[Sequence[int]],
    factors: Sequence[int],
    query: Sequence[int],
    evidence: Sequence[int],
    order: Sequence[int],
    mode: str = "sum",
) -> FlatPlan:
    """Variable elimination of ``factors`` (table ids) in ``order``, keeping ``query``.

    Eliminating v multiplies the live tables that hold v and sums v out (v is the last,
    fastest axis of the walk), with the variables only that product holds (sum mode:
    :func:`eliminate_into`); a last step multiplies what is left into a table over
    ``query`` in the given order. ``mode="max"`` maximises instead (``query`` must be
    empty) and keeps back-pointers for the traceback of the variables in ``order``.
    """
    if mode not in ("sum", "max"):
        raise ConfigurationError(f"mode must be 'sum' or 'max', got {mode!r}")
    if mode == "max" and query:
        raise ConfigurationError("a max-product plan eliminates every free variable: no query")
    builder = PlanBuilder(cards, scopes, evidence)
    items = [(_TABLE, f) for f in factors]
    final = eliminate_into(builder, items, query, order, mode)
    return builder.finish([final], mode, free=order if mode == "max" else ())


def eliminate_into(
    builder: PlanBuilder,
    items: Sequence[tuple[int, int]],
    query: Sequence[int],
    order: Sequence[int],
    mode: str = "sum",
) -> int:
    """Add to ``builder`` the steps of a variable elimination of ``items`` ((kind, index)
    pairs: tables or slots) in ``order``, ending in a step over ``query`` (in its order);
    returns that last step's slot. Eliminating v multiplies the live items that hold v
    and sums (or maximises) v out, v being the last, fastest axis of the walk; in sum
    mode the other variables that product alone holds (not queried) are summed in the
    same walk, unless the product is in ``builder.repeated``."""
    live: dict[int, tuple[int, int, tuple[int, ...]]] = {}
    holding: dict[int, set[int]] = {}  # variable -> the live items holding it
    counter = 0
    for kind, index in items:
        scope = builder.free_scope(kind, index)
        live[counter] = (kind, index, scope)
        for v in scope:
            holding.setdefault(v, set()).add(counter)
        counter += 1
    kept = set(query)
    gone: set[int] = set()
    for var in order:
        if var in gone:
            continue
        using = sorted(holding.pop(var, ()))
        scope: set[int] = set()
        inputs = []
        for key in using:
            kind, index, item_scope = live.pop(key)
            inputs.append((kind, index))
            scope.update(item_scope)
            for v in item_scope:
                if v != var:
                    holding[v].discard(key)
        summed = [var]
        product = (tuple(sorted(inputs)), frozenset(scope))
        builder.asked[product] = builder.asked.get(product, 0) + 1
        if mode == "sum" and product not in builder.repeated:
            # the variables this product alone holds are summed out in the same walk:
            # no intermediate table over them is written and walked again
            private = sorted(v for v in scope if v != var and v not in kept and not holding[v])
            for v in private:
                del holding[v]
            gone.update(private)
            summed = [*private, var]
        rest = sorted(scope - set(summed))
        slot = builder.step(inputs, [*rest, *summed], rest, eliminated=var if mode == "max" else -1)
        live[counter] = (_SLOT, slot, tuple(rest))
        for v in rest:
            holding[v].add(counter)
        counter += 1
    leftover = {v for _, _, scope in live.values() for v in scope}
    if not leftover <= set(query):
        raise ConfigurationError(
            f"the order leaves variables {sorted(leftover - set(query))} uneliminated"
        )
    return builder.step([(k, i) for k, i, _ in live.values()], list(query), list(query))


@numba.njit(cache=True, nogil=True)
def _merge_axes(program, starts, argmax):  # pragma: no cover - compiled
    """The program with the neighbouring axes of each step's walk merged wherever every
    array (the output and each input) steps through them as one (stride of the outer
    = stride of the inner x its cardinality): fewer, longer rows for the kernel's
    odometer (andes' calibration: rows of 2 entries; 25% faster). Steps that record
    back-pointers (``argmax`` >= 0) keep their axes for the traceback. Returns
    (program, starts)."""
    out = np.empty(program.shape[0], dtype=np.int64)
    new_starts = np.empty(starts.shape[0], dtype=np.int64)
    q = 0
    for o in range(starts.shape[0]):
        p = starts[o]
        n_in = program[p]
        nd = program[p + 1]
        rows = np.empty(n_in + 1, dtype=np.int64)  # where each array's strides begin
        rows[0] = p + 3 + 2 * nd
        r = p + 3 + 3 * nd
        for k in range(n_in):
            rows[k + 1] = r + 3 + 2 * program[r + 2]
            r = rows[k + 1] + nd
        end = r
        # groups of axes [first[g], inner[g]], found from the innermost outwards
        first = np.empty(max(nd, 1), dtype=np.int64)
        inner = np.empty(max(nd, 1), dtype=np.int64)
        size = np.empty(max(nd, 1), dtype=np.int64)
        n_groups = 0
        for d in range(nd - 1, -1, -1):
            joins = n_groups > 0 and argmax[o] < 0
            if joins:
                g = n_groups - 1
                for a in range(n_in + 1):
                    if program[rows[a] + d] != program[rows[a] + inner[g]] * size[g]:
                        joins = False
                        break
            if joins:
                first[n_groups - 1] = d
                size[n_groups - 1] *= program[p + 3 + d]
            else:
                first[n_groups] = d
                inner[n_groups] = d
                size[n_groups] = program[p + 3 + d]
                n_groups += 1
        new_starts[o] = q
        if n_groups == nd:  # nothing merged: copied as it is
            out[q : q + end - p] = program[p:end]
            q += end - p
            continue
        out[q] = n_in
        out[q + 1] = n_groups
        out[q + 2] = program[p + 2]
        q += 3
        for g in range(n_groups - 1, -1, -1):  # cardinalities, outermost first
            out[q] = size[g]
            q += 1
        for g in range(n_groups - 1, -1, -1):  # each group's first variable
            out[q] = program[p + 3 + nd + first[g]]
            q += 1
        for a in range(n_in + 1):
            if a > 0:  # the input's header: kind, index, its evidence pairs
                head = rows[a - 1] + nd if a > 1 else p + 3 + 3 * nd
                for i in range(head, rows[a]):
                    out[q] = program[i]
                    q += 1
            for g in range(n_groups - 1, -1, -1):
                out[q] = program[rows[a] + inner[g]]
                q += 1
    return out[:q].copy(), new_starts


@numba.njit(cache=True, nogil=True, inline="always")
def _sum_products(
    buf, offs, strides, cards, out_strides, n_in, nd, out0, idx
):  # pragma: no cover - compiled
    """The kernel's commonest step, out[x_O] += Σ Π of one to three inputs (no
    division, no max), with each input's offset and stride held in a register: the
    general loop's inner loop over the inputs costs more than the products on the
    short rows of real networks (barley: rows of 5-11 entries)."""
    last = nd - 1
    cl = cards[last]
    ol = out_strides[last]
    n_outer = 1
    for d in range(last):
        n_outer *= cards[d]
        idx[d] = 0
    o0 = offs[0]
    s0 = strides[0, last]
    o1 = offs[1] if n_in > 1 else 0
    s1 = strides[1, last] if n_in > 1 else 0
    o2 = offs[2] if n_in > 2 else 0
    s2 = strides[2, last] if n_in > 2 else 0
    oo = out0
    for _ in range(n_outer):
        if ol == 0:
            acc = 0.0
            if n_in == 3:
                for j in range(cl):
                    acc += buf[o0 + j * s0] * buf[o1 + j * s1] * buf[o2 + j * s2]
            elif n_in == 2:
                for j in range(cl):
                    acc += buf[o0 + j * s0] * buf[o1 + j * s1]
            else:
                for j in range(cl):
                    acc += buf[o0 + j * s0]
            buf[oo] += acc
        elif n_in == 3:
            for j in range(cl):
                buf[oo + j * ol] += buf[o0 + j * s0] * buf[o1 + j * s1] * buf[o2 + j * s2]
        elif n_in == 2:
            for j in range(cl):
                buf[oo + j * ol] += buf[o0 + j * s0] * buf[o1 + j * s1]
        else:
            for j in range(cl):
                buf[oo + j * ol] += buf[o0 + j * s0]
        d = last - 1
        while d >= 0:
            idx[d] += 1
            o0 += strides[0, d]
            if n_in > 1:
                o1 += strides[1, d]
            if n_in > 2:
                o2 += strides[2, d]
            oo += out_strides[d]
            if idx[d] < cards[d]:
                break
            c = cards[d]
            o0 -= strides[0, d] * c
            if n_in > 1:
                o1 -= strides[1, d] * c
            if n_in > 2:
                o2 -= strides[2, d] * c
            oo -= out_strides[d] * c
            idx[d] = 0
            d -= 1


@numba.njit(cache=True, nogil=True)
def _kernel(
    buf,
    ws0,
    table_offsets,
    program,
    starts,
    slot_offsets,
    slot_sizes,
    lambdas,
    slot_lambda,
    var_col,
    evidence,
    outputs,
    results,
    log_norms,
    maximise,
    argmax,
    arg_offsets,
    arg_workspace,
    free_vars,
    assignment,
    max_in,
    max_nd,
):  # pragma: no cover - compiled
    """Run the steps for each evidence row; ``buf`` holds the tables, then from ``ws0``
    the workspace (the slots)."""
    n_rows = evidence.shape[0]
    n_slots = slot_offsets.shape[0]
    args = np.empty(max(arg_workspace, 1), dtype=np.int64)
    logs = np.zeros(n_slots)
    n_steps = starts.shape[0]
    offs = np.empty(max_in, dtype=np.int64)
    last_strides = np.empty(max_in, dtype=np.int64)
    strides = np.empty((max_in, max_nd), dtype=np.int64)
    idx = np.empty(max_nd, dtype=np.int64)
    top = 0
    for i in range(free_vars.shape[0]):
        top = max(top, free_vars[i])
    var_value = np.full(top + 1, -1, dtype=np.int64)
    for b in range(n_rows):
        for j in range(lambdas.shape[0]):  # evidence indicators
            s = lambdas[j, 0]
            col = var_col[lambdas[j, 1]]
            base = ws0 + slot_offsets[s]
            for i in range(slot_sizes[s]):
                buf[base + i] = 1.0 if col < 0 else 0.0
            if col >= 0:
                buf[base + evidence[b, col]] = 1.0
            logs[s] = 0.0
        for o in range(n_steps):
            p = starts[o]
            n_in = program[p]
            nd = program[p + 1]
            slot = program[p + 2]
            p += 3
            cards = program[p : p + nd]
            p += 2 * nd  # cards, then the variables of the walk (for the traceback)
            out_strides = program[p : p + nd]
            p += nd
            log_in = 0.0
            n_listed = n_in
            n_in = 0
            n_mul = -1
            for _ in range(n_listed):
                kind = program[p]
                index = program[p + 1]
                n_ev = program[p + 2]
                p += 3
                if kind == 0:
                    base = table_offsets[index]
                    for _ in range(n_ev):
                        base += evidence[b, program[p]] * program[p + 1]
                        p += 2
                elif kind == 1:
                    lam = slot_lambda[index]
                    if lam >= 0 and var_col[lam] < 0:  # an indicator of ones: skipped
                        p += nd
                        continue
                    base = ws0 + slot_offsets[index]
                    log_in += logs[index]
                else:  # divisors come last
                    base = ws0 + slot_offsets[index]
                    log_in -= logs[index]
                    if n_mul < 0:
                        n_mul = n_in
                offs[n_in] = base
                for d in range(nd):
                    strides[n_in, d] = program[p + d]
                p += nd
                n_in += 1
            if n_mul < 0:
                n_mul = n_in
            out0 = ws0 + slot_offsets[slot]
            out_size = slot_sizes[slot]
            init = -1.0 if maximise else 0.0
            for j in range(out_size):
                buf[out0 + j] = init
            a0 = arg_offsets[o]
            track = maximise and argmax[o] >= 0
            if nd == 0:
                v = 1.0
                for k in range(n_mul):
                    v *= buf[offs[k]]
                for k in range(n_mul, n_in):
                    x = buf[offs[k]]
                    v = v / x if x != 0.0 else 0.0
                buf[out0] = v
            elif not maximise and n_mul == n_in and 1 <= n_in <= 3:
                _sum_products(buf, offs, strides, cards, out_strides, n_in, nd, out0, idx)
            else:
                last = nd - 1
                cl = cards[last]
                ol = out_strides[last]
                for k in range(n_in):
                    last_strides[k] = strides[k, last]
                n_outer = 1
                for d in range(last):
                    n_outer *= cards[d]
                    idx[d] = 0
                oo = 0
                for _ in range(n_outer):
                    if ol == 0:  # the last variable is summed (or maximised) out
                        acc = -1.0 if maximise else 0.0
                        arg = 0
                        for j in range(cl):
                            v = 1.0
                            for k in range(n_mul):
                                v *= buf[offs[k] + j * last_strides[k]]
                            for k in range(n_mul, n_in):
                                x = buf[offs[k] + j * last_strides[k]]
                                v = v / x if x != 0.0 else 0.0
                            if maximise:
                                if v > acc:
                                    acc = v
                                    arg = j
                            else:
                                acc += v
                        if maximise:
                            if acc > buf[out0 + oo]:
                                buf[out0 + oo] = acc
                                if track:
                                    args[a0 + oo] = arg
                        else:
                            buf[out0 + oo] += acc
                    else:
                        for j in range(cl):
                            v = 1.0
                            for k in range(n_mul):
                                v *= buf[offs[k] + j * last_strides[k]]
                            for k in range(n_mul, n_in):
                                x = buf[offs[k] + j * last_strides[k]]
                                v = v / x if x != 0.0 else 0.0
                            if maximise:
                                if v > buf[out0 + oo + j * ol]:
                                    buf[out0 + oo + j * ol] = v
                            else:
                                buf[out0 + oo + j * ol] += v
                    d = last - 1
                    while d >= 0:
                        idx[d] += 1
                        for k in range(n_in):
                            offs[k] += strides[k, d]
                        oo += out_strides[d]
                        if idx[d] < cards[d]:
                            break
                        for k in range(n_in):
                            offs[k] -= strides[k, d] * cards[d]
                        oo -= out_strides[d] * cards[d]
                        idx[d] = 0
                        d -= 1
            norm = 0.0
            for j in range(out_size):
                norm += buf[out0 + j]
            if norm > 0.0:
                inv = 1.0 / norm
                for j in range(out_size):
                    buf[out0 + j] *= inv
                logs[slot] = log_in + math.log(norm)
            else:
                for j in range(out_size):
                    buf[out0 + j] = 0.0
                logs[slot] = -math.inf
        col = 0
        for j in range(outputs.shape[0]):
            slot = outputs[j]
            out0 = ws0 + slot_offsets[slot]
            out_size = slot_sizes[slot]
            for i in range(out_size):
                results[b, col + i] = buf[out0 + i]
            log_norms[b, j] = logs[slot]
            col += out_size
        if maximise and free_vars.shape[0] > 0:
            for i in range(var_value.shape[0]):
                var_value[i] = -1
            for o in range(n_steps - 1, -1, -1):
                elim = argmax[o]
                if elim < 0:
                    continue
                p = starts[o]
                nd = program[p + 1]
                p += 3 + nd
                dims = program[p : p + nd]
                out_strides = program[p + nd : p + 2 * nd]
                oo = 0
                for d in range(nd - 1):
                    oo += var_value[dims[d]] * out_strides[d]
                var_value[elim] = args[arg_offsets[o] + oo]
            for i in range(free_vars.shape[0]):
                assignment[b, i] = var_value[free_vars[i]]


def run(
    plan: FlatPlan,
    buffer: np.ndarray,
    table_offsets: np.ndarray,
    evidence: np.ndarray,
    var_col: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``plan`` for each row of ``evidence`` (B, len(plan.evidence)) int64 states.

    ``var_col`` maps each variable to its column of ``evidence`` (-1: unobserved) for the
    plan's evidence indicators (``plan.lambdas``); ``out`` (B, Σ output sizes), when
    given, receives the results (no second copy).

    ``buffer`` holds the tables (table ``t`` at ``table_offsets[t]``) followed by at
    least ``plan.workspace`` entries of scratch space, which the run overwrites
    (:class:`pyrobn.models.bayesnet.engine.FlatTables` keeps one).

    Returns (results (B, Σ output sizes): each output normalised to sum 1, or all 0 when
    its normaliser is 0; log normalisers (B, n outputs): log Σ of each output before
    normalising, -inf when 0; assignment (B, len(plan.free)): the max-product traceback
    for ``mode="max"``).
    """
    ws0 = int(table_offsets[-1])
    if buffer.shape[0] < ws0 + plan.workspace:
        raise ConfigurationError(
            f"the buffer holds {buffer.shape[0]} entries; the plan needs {ws0 + plan.workspace}"
        )
    n_rows = evidence.shape[0]
    shape = (n_rows, plan.total_output)
    if out is not None and (out.shape != shape or out.dtype != np.float64):
        raise ConfigurationError(f"out must be a float64 array of shape {shape}")
    results = np.empty(shape) if out is None else out
    log_norms = np.empty((n_rows, len(plan.outputs)))
    free = plan.free_array
    assignment = np.empty((n_rows, len(free)), dtype=np.int64)
    _kernel(
        buffer,
        ws0,
        table_offsets,
        plan.program,
        plan.starts,
        plan.slot_offsets,
        plan.slot_sizes,
        plan.lambdas,
        plan.slot_lambda,
        _NO_COLUMNS if var_col is None else var_col,
        evidence
        if evidence.flags.c_contiguous and evidence.dtype == np.int64
        else np.ascontiguousarray(evidence, dtype=np.int64),
        plan.outputs,
        results,
        log_norms,
        plan.mode == "max",
        plan.argmax,
        plan.arg_offsets,
        plan.arg_workspace,
        free,
        assignment,
        plan.max_inputs,
        plan.max_dims,
    )
    return results, log_norms, assignment


# ---------------------------------------------------------------------------- compiling
# The per-shape compile (elimination order + encoding) runs compiled too: in Python it
# costs tens of microseconds per step, more than running the plan it builds.


@numba.njit(cache=True, nogil=True)
def _grow(array, used, extra):  # pragma: no cover - compiled
    if used + extra <= array.shape[0]:
        return array
    bigger = np.empty(max(2 * array.shape[0], used + extra), dtype=array.dtype)
    bigger[:used] = array[:used]
    return bigger


@numba.njit(cache=True, nogil=True)
def _add_member(v, item, svars, used, nxt, owner, head, n_links):  # pragma: no cover - compiled
    """Variable v joins live item ``item``: appended to its scope (``svars`` from
    ``used`` on) and linked at the head of v's list of items (``head``/``nxt``/``owner``);
    arrays grow as needed. Returns (svars, nxt, owner, used, n_links)."""
    svars = _grow(svars, used, 1)
    svars[used] = v
    nxt = _grow(nxt, n_links, 1)
    owner = _grow(owner, n_links, 1)
    nxt[n_links] = head[v]
    owner[n_links] = item
    head[v] = n_links
    return svars, nxt, owner, used + 1, n_links + 1


@numba.njit(cache=True, nogil=True)
def _score(i, nbr, deg, adj, card, heuristic):  # pragma: no cover - compiled
    """(fill, weight) of eliminating local variable i (see enumeration.HEURISTICS)."""
    weight = float(card[i])
    d = deg[i]
    for a in range(d):
        weight *= card[nbr[i, a]]
    if heuristic == 2:
        return weight, weight
    fill = 0.0
    for a in range(d):
        u = nbr[i, a]
        for b in range(a + 1, d):
            w = nbr[i, b]
            if not adj[u, w]:
                fill += 1.0 if heuristic == 0 else float(card[u]) * float(card[w])
    return fill, weight


@numba.njit(cache=True, nogil=True)
def _order(n, adj, card, glob, keep, heuristic):  # pragma: no cover - compiled
    """Greedy elimination order of the local variables not in ``keep`` (ties: smaller
    weight, then smaller global id, as :func:`pyrobn.infer.enumeration.elimination_order`)."""
    nbr = np.empty((n, max(n, 1)), dtype=np.int32)
    deg = np.zeros(n, dtype=np.int64)
    for i in range(n):
        for j in range(n):
            if adj[i, j]:
                nbr[i, deg[i]] = j
                deg[i] += 1
    alive = np.ones(n, dtype=np.bool_)
    fill = np.zeros(n)
    weight = np.zeros(n)
    n_elim = 0
    for i in range(n):
        if not keep[i]:
            n_elim += 1
            fill[i], weight[i] = _score(i, nbr, deg, adj, card, heuristic)
    order = np.empty(n_elim, dtype=np.int64)
    stamp = np.zeros(n, dtype=np.int64)
    for step in range(n_elim):
        best = -1
        for i in range(n):
            if alive[i] and not keep[i]:
                if (
                    best < 0
                    or fill[i] < fill[best]
                    or (fill[i] == fill[best] and weight[i] < weight[best])
                    or (
                        fill[i] == fill[best] and weight[i] == weight[best] and glob[i] < glob[best]
                    )
                ):
                    best = i
        order[step] = best
        alive[best] = False
        d = deg[best]
        nb = nbr[best, :d].copy()
        for a in range(d):  # drop best from its neighbours' lists
            u = nb[a]
            for c in range(deg[u]):
                if nbr[u, c] == best:
                    deg[u] -= 1
                    nbr[u, c] = nbr[u, deg[u]]
                    break
            adj[u, best] = False
            adj[best, u] = False
        for a in range(d):  # fill edges
            u = nb[a]
            for b in range(a + 1, d):
                w = nb[b]
                if not adj[u, w]:
                    adj[u, w] = True
                    adj[w, u] = True
                    nbr[u, deg[u]] = w
                    deg[u] += 1
                    nbr[w, deg[w]] = u
                    deg[w] += 1
        deg[best] = 0
        mark = step + 1
        for a in range(d):  # rescore the neighbours and their neighbours
            u = nb[a]
            if stamp[u] != mark:
                stamp[u] = mark
                if not keep[u]:
                    fill[u], weight[u] = _score(u, nbr, deg, adj, card, heuristic)
            for c in range(deg[u]):
                w = nbr[u, c]
                if stamp[w] != mark and alive[w]:
                    stamp[w] = mark
                    if not keep[w]:
                        fill[w], weight[w] = _score(w, nbr, deg, adj, card, heuristic)
    return order


@numba.njit(cache=True, nogil=True)
def _compile_kernel(
    cards, fptr, fvars, fstr, kept, query, ev_col, heuristic, maximise, budget
):  # pragma: no cover - compiled
    n_vars = cards.shape[0]
    loc = np.full(n_vars, -1, dtype=np.int64)
    glob = np.empty(n_vars, dtype=np.int64)
    n = 0
    for f in kept:
        for a in range(fptr[f], fptr[f + 1]):
            v = fvars[a]
            if ev_col[v] < 0 and loc[v] < 0:
                loc[v] = n
                glob[n] = v
                n += 1
    keep = np.zeros(n, dtype=np.bool_)
    for q in query:
        keep[loc[q]] = True
    card = np.empty(n, dtype=np.int64)
    for i in range(n):
        card[i] = cards[glob[i]]
    adj = np.zeros((n, n), dtype=np.bool_)
    tmp = np.empty(64, dtype=np.int64)
    for f in kept:
        m = 0
        for a in range(fptr[f], fptr[f + 1]):
            v = fvars[a]
            if ev_col[v] < 0:
                if m == tmp.shape[0]:
                    tmp = _grow(tmp, m, 1)
                tmp[m] = loc[v]
                m += 1
        for a in range(m):
            for b in range(m):
                if a != b:
                    adj[tmp[a], tmp[b]] = True
    order = _order(n, adj, card, glob, keep, heuristic)
    n_elim = order.shape[0]
    for s in range(n_elim):
        order[s] = glob[order[s]]
    # items: tables then slots; each item's free scope (sorted by global id for slots)
    n_items_max = kept.shape[0] + n_elim + 1
    kind = np.empty(n_items_max, dtype=np.int64)
    index = np.empty(n_items_max, dtype=np.int64)
    dead = np.zeros(n_items_max, dtype=np.bool_)
    sptr = np.zeros(n_items_max + 1, dtype=np.int64)
    svars = np.empty(64, dtype=np.int64)
    head = np.full(n_vars, -1, dtype=np.int64)
    nxt = np.empty(64, dtype=np.int64)
    owner = np.empty(64, dtype=np.int64)
    n_links = 0
    n_items = 0
    for f in kept:
        kind[n_items] = 0
        index[n_items] = f
        used = sptr[n_items]
        for a in range(fptr[f], fptr[f + 1]):
            v = fvars[a]
            if ev_col[v] < 0:
                svars, nxt, owner, used, n_links = _add_member(
                    v, n_items, svars, used, nxt, owner, head, n_links
                )
        sptr[n_items + 1] = used
        n_items += 1
    slot_sizes = np.empty(n_elim + 1, dtype=np.int64)
    argmax = np.full(n_elim + 1, -1, dtype=np.int64)
    starts = np.empty(n_elim + 1, dtype=np.int64)
    prog = np.empty(1024, dtype=np.int64)
    n_prog = 0
    stamp = np.zeros(n_vars, dtype=np.int64)
    inputs = np.empty(kept.shape[0] + n_elim + 1, dtype=np.int64)
    joint = np.empty(n + 1, dtype=np.int64)
    largest_size = 0.0
    largest = np.empty(0, dtype=np.int64)
    max_in = 1
    max_nd = 1
    gone = np.zeros(n_vars, dtype=np.bool_)  # summed out with an earlier variable
    private = np.empty(n + 1, dtype=np.int64)
    step = 0
    for pos in range(n_elim + 1):
        last = pos == n_elim
        n_in = 0
        nd = 0
        if not last:
            var = order[pos]
            if gone[var]:
                continue
            e = head[var]
            while e >= 0:
                it = owner[e]
                if not dead[it]:
                    dead[it] = True
                    inputs[n_in] = it
                    n_in += 1
                e = nxt[e]
            inputs[:n_in].sort()  # in creation order, as compile_elimination
            for k in range(n_in):
                it = inputs[k]
                for a in range(sptr[it], sptr[it + 1]):
                    v = svars[a]
                    if v != var and stamp[v] != pos + 1:
                        stamp[v] = pos + 1
                        joint[nd] = v
                        nd += 1
            joint[:nd].sort()
            # sum mode: the variables no other live item holds (nor the query) are
            # summed out in this walk too, after the kept ones (as eliminate_into)
            n_priv = 0
            nd_out = 0
            for d in range(nd):
                v = joint[d]
                alone = not maximise and not keep[loc[v]]
                e = head[v]
                while alone and e >= 0:
                    if not dead[owner[e]]:
                        alone = False
                    e = nxt[e]
                if alone:
                    private[n_priv] = v
                    n_priv += 1
                    gone[v] = True
                else:
                    joint[nd_out] = v
                    nd_out += 1
            for d in range(n_priv):
                joint[nd_out + d] = private[d]
            joint[nd] = var
            nd += 1
        else:
            var = -1
            for it in range(n_items):
                if not dead[it]:
                    dead[it] = True
                    inputs[n_in] = it
                    n_in += 1
            for q in range(query.shape[0]):
                joint[q] = query[q]
            nd = query.shape[0]
            nd_out = nd
        size = 1.0
        for d in range(nd):
            size *= cards[joint[d]]
        if size > largest_size or largest.shape[0] == 0:
            largest_size = size
            largest = joint[:nd].copy()
        if size > budget:
            return prog[:0], starts[:0], slot_sizes[:0], argmax[:0], order, largest_size, largest
        max_in = max(max_in, n_in)
        max_nd = max(max_nd, nd)
        out_size = 1
        for d in range(nd_out):
            out_size *= cards[joint[d]]
        slot_sizes[step] = out_size
        if maximise and not last:
            argmax[step] = var
        need = 3 + 3 * nd
        for k in range(n_in):
            it = inputs[k]
            need += 3 + nd
            if kind[it] == 0:
                need += 2 * (fptr[index[it] + 1] - fptr[index[it]])
        prog = _grow(prog, n_prog, need)
        starts[step] = n_prog
        prog[n_prog] = n_in
        prog[n_prog + 1] = nd
        prog[n_prog + 2] = step
        p = n_prog + 3
        for d in range(nd):
            prog[p + d] = cards[joint[d]]
            prog[p + nd + d] = joint[d]
        p += 2 * nd
        stride = 1
        for d in range(nd - 1, -1, -1):
            if d < nd_out:
                prog[p + d] = stride
                stride *= cards[joint[d]]
            else:
                prog[p + d] = 0
        p += nd
        for k in range(n_in):
            it = inputs[k]
            prog[p] = kind[it]
            prog[p + 1] = index[it]
            if kind[it] == 0:
                f = index[it]
                n_ev = 0
                for a in range(fptr[f], fptr[f + 1]):
                    if ev_col[fvars[a]] >= 0:
                        n_ev += 1
                prog[p + 2] = n_ev
                p += 3
                for a in range(fptr[f], fptr[f + 1]):
                    if ev_col[fvars[a]] >= 0:
                        prog[p] = ev_col[fvars[a]]
                        prog[p + 1] = fstr[a]
                        p += 2
                for d in range(nd):
                    s = 0
                    for a in range(fptr[f], fptr[f + 1]):
                        if fvars[a] == joint[d]:
                            s = fstr[a]
                    prog[p + d] = s
            else:
                prog[p + 2] = 0
                p += 3
                for d in range(nd):
                    s = 0
                    st = 1
                    for a in range(sptr[it + 1] - 1, sptr[it] - 1, -1):
                        if svars[a] == joint[d]:
                            s = st
                        st *= cards[svars[a]]
                    prog[p + d] = s
            p += nd
        n_prog = p
        if not last:  # the step's output becomes a live item over joint[:nd_out]
            kind[n_items] = 1
            index[n_items] = step
            used = sptr[n_items]
            for d in range(nd_out):
                svars, nxt, owner, used, n_links = _add_member(
                    joint[d], n_items, svars, used, nxt, owner, head, n_links
                )
            sptr[n_items + 1] = used
            n_items += 1
        step += 1
    return (
        prog[:n_prog], starts[:step], slot_sizes[:step], argmax[:step], order, largest_size,
        largest,
    )  # fmt: skip


class StructureArrays:
    """A network's table scopes as flat arrays for :func:`compile_query`."""

    def __init__(self, cards: Sequence[int], scopes: Sequence[Sequence[int]]) -> None:
        self.cards = np.asarray(cards, dtype=np.int64)
        self.ptr = np.zeros(len(scopes) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in scopes], out=self.ptr[1:])
        self.vars = np.asarray([v for s in scopes for v in s], dtype=np.int64)
        strides = []
        for s in scopes:
            step = 1
            local = []
            for v in reversed(s):
                local.append(step)
                step *= int(cards[v])
            strides.extend(reversed(local))
        self.strides = np.asarray(strides, dtype=np.int64)


_HEURISTIC_CODES = {"min-fill": 0, "weighted-min-fill": 1, "min-weight": 2}


def compile_query(
    structure: StructureArrays,
    factors: Sequence[int],
    query: Sequence[int],
    evidence: Sequence[int],
    mode: str = "sum",
    heuristic: str = "min-fill",
    budget_entries: float = math.inf,
) -> FlatPlan | tuple[float, tuple[int, ...]]:
    """:func:`compile_elimination` with the order chosen by ``heuristic``, all compiled:
    the same plan as ``compile_elimination(..., elimination_order(...))``.

    Returns the plan, or (size, variables) of the first table larger than
    ``budget_entries`` (nothing is encoded past it).
    """
    if mode not in ("sum", "max"):
        raise ConfigurationError(f"mode must be 'sum' or 'max', got {mode!r}")
    if mode == "max" and query:
        raise ConfigurationError("a max-product plan eliminates every free variable: no query")
    ev_col = np.full(structure.cards.shape[0], -1, dtype=np.int64)
    for j, v in enumerate(evidence):
        ev_col[v] = j
    prog, starts, slot_sizes, argmax, order, largest_size, largest = _compile_kernel(
        structure.cards,
        structure.ptr,
        structure.vars,
        structure.strides,
        np.asarray(factors, dtype=np.int64),
        np.asarray(query, dtype=np.int64),
        ev_col,
        _HEURISTIC_CODES[heuristic],
        mode == "max",
        float(budget_entries),
    )
    if largest_size > budget_entries:
        return float(largest_size), tuple(int(v) for v in largest)
    prog, starts = _merge_axes(prog, starts, argmax)
    offsets = np.zeros(len(slot_sizes), dtype=np.int64)
    np.cumsum(slot_sizes[:-1], out=offsets[1:])
    arg_sizes = np.where(argmax >= 0, slot_sizes, 0)
    arg_offsets = np.zeros(len(arg_sizes) + 1, dtype=np.int64)
    np.cumsum(arg_sizes, out=arg_offsets[1:])
    max_inputs = max(int(prog[s]) for s in starts) if len(starts) else 1
    max_dims = max(int(prog[s + 1]) for s in starts) if len(starts) else 1
    last = len(slot_sizes) - 1
    return FlatPlan(
        program=prog,
        starts=starts,
        slot_offsets=offsets,
        slot_sizes=slot_sizes,
        workspace=int(slot_sizes.sum()),
        outputs=np.asarray([last], dtype=np.int64),
        output_sizes=(int(slot_sizes[last]),),
        evidence=tuple(evidence),
        largest=tuple(int(v) for v in largest),
        largest_size=int(largest_size),
        mode=mode,
        argmax=argmax,
        arg_offsets=arg_offsets,
        arg_workspace=int(arg_offsets[-1]),
        free=tuple(int(v) for v in order) if mode == "max" else (),
        max_inputs=max(max_inputs, 1),
        max_dims=max(max_dims, 1),
        lambdas=np.zeros((0, 2), dtype=np.int64),
        order=tuple(int(v) for v in order),
    )
