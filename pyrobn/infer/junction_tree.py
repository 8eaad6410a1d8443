"""A junction tree: every posterior p(x_v | e) from one calibration (two passes).

The tables are gathered into cliques of a triangulation of the moral graph (the
tables an elimination order forms, :func:`pyrobn.infer.enumeration.induced_cliques`,
the non-maximal ones merged into their neighbour); cliques joined by the elimination
tree satisfy the running-intersection property, so passing messages

    μ_{c→n}(x_{S_cn}) = Σ_{x_c \\ x_S} ψ_c(x_c) Π_{m ∈ nb(c) \\ n} μ_{m→c}(x_{S_mc})

inwards to a root and back out (Shafer–Shenoy; ψ_c the product of the tables and the
evidence indicators assigned to c) leaves every clique with its belief
p(x_c, e) ∝ ψ_c Π_m μ_{m→c}, whose marginals are the posteriors (Koller & Friedman,
10.2-10.3; the notes' eq. 3-5 for all variables at once).

The tree is built once per network structure (the heuristic of the triangulation that
gives the smallest total clique size is kept); the calibration is compiled once into a
:class:`pyrobn.infer.enumeration_compiled.FlatPlan` in which evidence enters as indicator
vectors, so every evidence pattern and every row of a batch runs the same plan in the
compiled kernel (messages are normalised as they go: log p(e) comes out too).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np
import torch

from pyrobn.errors import ConfigurationError
from pyrobn.infer.enumeration import _LETTERS, HEURISTICS, elimination_order, induced_cliques
from pyrobn.infer.enumeration_compiled import (
    _DIVIDE,
    _SLOT,
    _TABLE,
    FlatPlan,
    PlanBuilder,
    eliminate_into,
    run,
)

__all__ = ["JunctionTree"]


#: cliques with more entries than this are never walked whole (see ``JunctionTree.lazy``)
LAZY_CLIQUE = 2**12
#: ... nor cliques sending more than this many messages and marginals
LAZY_FANOUT = 16


def _size(scope: Sequence[int], cards: Sequence[int]) -> int:
    n = 1
    for v in scope:
        n *= cards[v]
    return n


class JunctionTree:
    """The junction tree of a set of tables over discrete variables.

    Args:
        cards: cardinality of each variable 0..V-1 (each must appear in some table).
        scopes: each table's variables in axis order.
        heuristics: triangulation heuristics to try (the smallest total clique size wins).
        observed: variables observed in every row to come. The tree is then triangulated
            on the free variables alone (the moral graph without the observed ones, whose
            cliques are smaller: barley's tree has 3-12x fewer entries for three findings);
            its plan reads the tables of observed variables at the row's evidence (the
            other cliques' potentials are formed once), and its outputs are the free
            variables' marginals. Without them, evidence enters as indicator vectors, and
            one plan serves every evidence pattern.
        conditionals: each table is a conditional p(x | the rest of its scope) of the
            variable x of its last axis (a Bayesian network's tables). With ``observed``,
            the messages of subtrees that hold no evidence are then 1 and are skipped
            (``quiet``), and each component is rooted where the others cost least.

    Attributes: ``cliques`` (sorted variable tuples), ``parent`` (each clique's
    neighbour towards the root, -1 for the root), ``assigned`` (the tables of each
    clique), ``home`` (for each variable, the clique whose belief gives its marginal),
    ``indicator_home`` (the clique holding its evidence indicator: that of the table
    whose last axis it is),
    ``order`` and ``heuristic`` (the triangulation kept), ``size`` (total entries),
    ``width`` (largest clique size minus one: the treewidth bound).

    >>> jt = JunctionTree([2, 2, 2], [(0,), (0, 1), (1, 2)])
    >>> jt.cliques
    [(0, 1), (1, 2)]
    """

    def __init__(
        self,
        cards: Sequence[int],
        scopes: Sequence[Sequence[int]],
        heuristics: Sequence[str] = HEURISTICS,
        observed: Sequence[int] = (),
        conditionals: bool = False,
    ) -> None:
        self.cards = tuple(int(c) for c in cards)
        self.scopes = tuple(tuple(s) for s in scopes)
        self.observed = tuple(sorted(set(int(v) for v in observed)))
        self.conditionals = conditionals
        self._observed_set = frozenset(self.observed)
        self.free = tuple(v for v in range(len(self.cards)) if v not in self._observed_set)
        if not self.free:
            raise ConfigurationError("a junction tree needs at least one unobserved variable")
        free_scopes = [f for f in (self._free_scope(s) for s in self.scopes) if f]
        best = None
        for heuristic in heuristics:
            order = elimination_order(free_scopes, self.cards, self.free, heuristic)
            cliques = induced_cliques(free_scopes, order)
            total = sum(_size(c, self.cards) for _, c in cliques)
            if best is None or total < best[0]:
                best = (total, heuristic, order, cliques)
        assert best is not None
        _, self.heuristic, self.order, steps = best
        self._build(steps)

    def _free_scope(self, scope: Sequence[int]) -> tuple[int, ...]:
        return tuple(v for v in scope if v not in self._observed_set)

    def _build(self, steps: list[tuple[int, frozenset[int]]]) -> None:
        position = {v: i for i, v in enumerate(self.order)}
        # the elimination tree: step i's clique hangs under the step of the first of its
        # other members to be eliminated; then every tree edge whose one end contains the
        # other is contracted (this keeps the running intersection property) until all
        # cliques are maximal
        sets = [set(c) for _, c in steps]
        adj: list[set[int]] = [set() for _ in steps]
        for i, (v, clique) in enumerate(steps):
            j = min((position[u] for u in clique - {v}), default=-1)
            if j >= 0:
                adj[i].add(j)
                adj[j].add(i)
        alive = [True] * len(steps)
        work = [(i, j) for i in range(len(steps)) for j in adj[i] if i < j]
        while work:
            a, b = work.pop()
            if not (alive[a] and alive[b] and b in adj[a]):
                continue
            if sets[a] <= sets[b]:
                small, big = a, b
            elif sets[b] <= sets[a]:
                small, big = b, a
            else:
                continue
            alive[small] = False
            for n in adj[small] - {big}:
                adj[n].discard(small)
                adj[n].add(big)
                adj[big].add(n)
                work.append((big, n))
            adj[big].discard(small)
            adj[small] = set()
        kept = [i for i in range(len(steps)) if alive[i]]
        index = {i: k for k, i in enumerate(kept)}
        self.cliques: list[tuple[int, ...]] = [tuple(sorted(sets[i])) for i in kept]
        n = len(self.cliques)
        neighbours = [sorted(index[j] for j in adj[i]) for i in kept]
        # the last-eliminated clique of each component is its root (unless
        # :meth:`_quiet_roots` finds a cheaper one once the tables are placed)
        self.parent: list[int] = [-1] * n
        roots = []
        seen = [False] * n
        for c in reversed(range(n)):
            if not seen[c]:
                roots.append(c)
                self._hang(c, neighbours, seen)
        sizes = [_size(c, self.cards) for c in self.cliques]
        holding: list[list[int]] = [[] for _ in self.cards]
        for c, clique in enumerate(self.cliques):
            for v in clique:
                holding[v].append(c)
        self.assigned: list[list[int]] = [[] for _ in range(n)]
        self.indicator_home = [-1] * len(self.cards)
        smallest = min(range(n), key=lambda c: (sizes[c], c))
        for t, scope in enumerate(self.scopes):
            free = self._free_scope(scope)
            # a table of observed variables only is a number per row: any clique takes it
            fits = (
                [c for c in holding[free[0]] if set(free) <= set(self.cliques[c])]
                if free
                else [smallest]
            )
            c = min(fits, key=lambda c: (sizes[c], c))
            self.assigned[c].append(t)
            if free and free[-1] == scope[-1] and self.indicator_home[scope[-1]] < 0:
                self.indicator_home[scope[-1]] = c
        self.home = [-1] * len(self.cards)
        for v in self.free:
            self.home[v] = min(holding[v], key=lambda c: (sizes[c], c))
            if self.indicator_home[v] < 0:
                self.indicator_home[v] = self.home[v]
        #: directed edges (c, n) whose message μ_{c→n} is 1 and is never formed
        self.quiet: frozenset[tuple[int, int]] = frozenset()
        if self.conditionals and self.observed:
            roots, self.quiet = self._quiet_roots(roots, neighbours, sizes)
            self.parent = [-1] * n
            seen = [False] * n
            for root in roots:
                self._hang(root, neighbours, seen)
        self.children: list[list[int]] = [[] for _ in range(n)]
        for c, p in enumerate(self.parent):
            if p >= 0:
                self.children[p].append(c)
        self.size = sum(_size(c, self.cards) for c in self.cliques)
        largest = max(self.cliques, key=lambda c: _size(c, self.cards))
        self.largest = largest
        self.largest_size = _size(largest, self.cards)
        self.width = len(largest) - 1
        self.with_tables = [c for c in range(n) if self.assigned[c]]
        #: cliques too big to walk whole: their messages and marginals are variable
        #: eliminations over their own tables and the messages (lazy propagation)
        # ... unless they send many messages (a message per neighbour and a marginal per
        # variable at home there, each a fresh elimination over all the others: a hub
        # with 57 children, pathfinder's, is quicker formed once and divided, Hugin's way)
        fanout = [len(self.children[c]) for c in range(n)]
        for v in self.free:
            fanout[self.home[v]] += 1
        self.lazy = [sizes[c] > LAZY_CLIQUE and fanout[c] <= LAZY_FANOUT for c in range(n)]
        #: cliques whose tables are multiplied once into a potential Φ_c (not those
        #: holding a table of an observed variable: it is read at each row's evidence)
        self.phi_cliques = [
            c
            for c in self.with_tables
            if not self.lazy[c]
            and not any(self._observed_set.intersection(self.scopes[t]) for t in self.assigned[c])
        ]

        def root(c: int) -> int:
            while self.parent[c] >= 0:
                c = self.parent[c]
            return c

        first: dict[int, int] = {}
        for k, v in enumerate(self.free):  # the outputs are the free variables' marginals
            first.setdefault(root(self.home[v]), k)
        self._one_per_tree = sorted(first.values())
        self._plan: FlatPlan | None = None
        self._potential_plan: FlatPlan | None = None
        self._buffer: np.ndarray | None = None
        self._offsets = np.zeros(1, dtype=np.int64)
        self._log_scale = 0.0
        self._key: object = None
        self._lock = threading.Lock()
        self._columns: dict[tuple[int, ...], np.ndarray] = {}  # var_col per evidence order
        self._torch_key: object = None
        self._torch_potentials: dict[int, tuple[tuple[int, ...], torch.Tensor]] = {}

    def _hang(self, root: int, neighbours: list[list[int]], seen: list[bool]) -> None:
        """Set ``parent`` over the component of ``root`` (depth first), ``root`` at top."""
        seen[root] = True
        self.parent[root] = -1
        stack = [root]
        while stack:
            i = stack.pop()
            for j in neighbours[i]:
                if not seen[j]:
                    seen[j] = True
                    self.parent[j] = i
                    stack.append(j)

    def _quiet_roots(
        self, roots: list[int], neighbours: list[list[int]], sizes: list[int]
    ) -> tuple[list[int], frozenset[tuple[int, int]]]:
        """The quiet edges, and each component's root chosen so that the inward pass
        forms the fewest entries.

        The message from c's side of the edge c–n is Σ over that side's variables but
        S_cn of the tables placed there. When each of those tables is a conditional
        p(x | parents) of a free x outside S_cn (so none is read at evidence), they are
        the conditional distribution of that side's variables given S_cn and the sum is
        1 for every x_S (barren subtrees: Koller & Friedman 9.3.1.2): the edge is quiet.
        quiet(c→n) = every table at c is such a conditional ∧ quiet(m→c) for every
        other neighbour m; computed for both directions of every edge (one pass up from
        the default roots, one down). An edge c→n costs the entries of c when it is not
        quiet; the inward pass towards root r costs the sum over the edges pointing to
        r, so moving the root from p to its child k changes it by cost(p→k) - cost(k→p).
        """
        sep_cache: dict[tuple[int, int], frozenset[int]] = {}

        def sep(a: int, b: int) -> frozenset[int]:
            key = (min(a, b), max(a, b))
            if key not in sep_cache:
                sep_cache[key] = frozenset(self.cliques[a]) & frozenset(self.cliques[b])
            return sep_cache[key]

        def local(c: int, n: int) -> bool:
            s = sep(c, n)
            return all(
                self.scopes[t][-1] not in self._observed_set and self.scopes[t][-1] not in s
                for t in self.assigned[c]
            )

        children: list[list[int]] = [[] for _ in self.cliques]
        for c, p in enumerate(self.parent):
            if p >= 0:
                children[p].append(c)
        orders = []  # each component's cliques, parents before children
        for root in roots:
            order, stack = [], [root]
            while stack:
                c = stack.pop()
                order.append(c)
                stack.extend(children[c])
            orders.append(order)
        post = [c for order in orders for c in reversed(order)]
        up = [False] * len(self.cliques)  # quiet(c → parent)
        for c in post:
            p = self.parent[c]
            if p >= 0:
                up[c] = local(c, p) and all(up[k] for k in children[c])
        down = [False] * len(self.cliques)  # quiet(parent → c)
        for p in reversed(post):
            loud = sum(not up[k] for k in children[p])
            above = self.parent[p] < 0 or down[p]
            for k in children[p]:
                down[k] = above and loud - (not up[k]) == 0 and local(p, k)
        quiet = frozenset(
            edge
            for c, p in enumerate(self.parent)
            if p >= 0
            for edge, ok in (((c, p), up[c]), ((p, c), down[c]))
            if ok
        )
        cost = [0] * len(self.cliques)  # the inward pass's entries, rooted at each clique
        chosen = []
        for root, members in zip(roots, orders):
            cost[root] = sum(sizes[c] for c in members if c != root and not up[c])
            for c in members[1:]:
                p = self.parent[c]
                cost[c] = cost[p] - (0 if up[c] else sizes[c]) + (0 if down[c] else sizes[p])
            chosen.append(min(members, key=lambda c: (cost[c], c != root)))
        return chosen, quiet

    # ------------------------------------------------------------------ compile
    def _walk(self) -> tuple[list[int], list[int]]:
        """Cliques in post-order (children before parents) from every root."""
        post: list[int] = []
        for root in (c for c, p in enumerate(self.parent) if p < 0):
            stack = [(root, False)]
            while stack:
                c, done = stack.pop()
                if done:
                    post.append(c)
                else:
                    stack.append((c, True))
                    stack.extend((k, False) for k in self.children[c])
        return post, post[::-1]

    def _layouts(self) -> list[list[int]]:
        """Each clique's axis order: its separator towards the root first, so the inward
        message and the belief walk its potential in memory order."""
        out = []
        for c, clique in enumerate(self.cliques):
            p = self.parent[c]
            sep = sorted(set(clique) & set(self.cliques[p])) if p >= 0 else []
            out.append([*sep, *(u for u in clique if u not in sep)])
        return out

    def potential_plan(self) -> FlatPlan:
        """The product of each clique's tables, Φ_c (one output per clique that has
        tables, in the clique's layout): computed once per version of the tables."""
        if self._potential_plan is None:
            builder = PlanBuilder(self.cards, self.scopes, ())
            layouts = self._layouts()
            outputs = [
                builder.step([(_TABLE, t) for t in self.assigned[c]], layouts[c], layouts[c])
                for c in self.phi_cliques
            ]
            self._potential_plan = builder.finish(outputs, "sum")
        return self._potential_plan

    def plan(self) -> FlatPlan:
        """The calibration compiled for the kernel: its tables are the potentials Φ_c
        (:meth:`potential_plan`), or, when variables are observed, the tables themselves
        read at each row's evidence; outputs are the marginals of the free variables in
        order (cached)."""
        if self._plan is not None:
            return self._plan
        builder, outputs = self._build_plan(frozenset())
        repeated = frozenset(k for k, n in builder.asked.items() if n > 1)
        if repeated:  # products several messages start from: built again, kept whole
            builder, outputs = self._build_plan(repeated)
        self._plan = builder.finish(outputs, "sum", reuse=True)
        return self._plan

    def _build_plan(self, repeated: frozenset[tuple]) -> tuple[PlanBuilder, list[int]]:
        """:meth:`plan`'s steps: the builder and the output slots."""
        cards = self.cards
        layouts = self._layouts()
        n_tables = len(self.scopes)
        builder = PlanBuilder(
            cards, [*self.scopes, *(layouts[c] for c in self.phi_cliques)], self.observed
        )
        builder.repeated = repeated
        potential: list[list[tuple[int, int]]] = [[] for _ in self.cliques]
        for k, c in enumerate(self.phi_cliques):
            potential[c].append((_TABLE, n_tables + k))
        with_phi = set(self.phi_cliques)
        for c in range(len(self.cliques)):
            if c not in with_phi:
                potential[c] = [(_TABLE, t) for t in self.assigned[c]]
        if not self.observed:  # evidence enters as indicators (ones where unobserved)
            for v in range(len(cards)):
                potential[self.indicator_home[v]].append((_SLOT, builder.lambda_slot(v)))
        incoming: list[dict[int, int]] = [{} for _ in self.cliques]
        post, pre = self._walk()
        targets: dict[int, list[int]] = {}
        for v in self.free:
            targets.setdefault(self.home[v], []).append(v)
        outputs = dict.fromkeys(self.free, 0)

        def arranged(clique: Sequence[int], keep: Sequence[int]) -> list[int]:
            return [*keep, *(u for u in clique if u not in keep)]  # summed axes last

        def lazily(c: int, items: list[tuple[int, int]], keep: Sequence[int]) -> int:
            """Eliminate clique c's other variables from ``items`` (min-fill order)."""
            scopes = [builder.free_scope(kind, index) for kind, index in items]
            drop = set(self.cliques[c]) - set(keep)
            order = elimination_order(scopes, cards, drop, "min-fill")
            return eliminate_into(builder, items, list(keep), order)

        def merged(items: list[tuple[int, int]]) -> list[tuple[int, int]]:
            """The messages and indicators among ``items`` whose scope lies within
            another's multiplied into it first (a step over that scope, a separator:
            small), so that a clique's walk reads one input per group, not one per
            message (pathfinder's hub: 57 messages over one separator)."""
            slots = sorted(
                (item for item in items if item[0] == _SLOT),
                key=lambda item: -builder.slot_sizes[item[1]],
            )
            groups: list[tuple[set[int], list[tuple[int, int]]]] = []
            for item in slots:
                scope = set(builder.free_scope(*item))
                for held, members in groups:
                    if scope <= held:
                        members.append(item)
                        break
                else:
                    groups.append((scope, [item]))
            out = [item for item in items if item[0] != _SLOT]
            for _, members in groups:
                if len(members) == 1:
                    out.append(members[0])
                else:
                    scope = builder.free_scope(*members[0])
                    out.append((_SLOT, builder.step(members, scope, scope)))
            return out

        for c in post:  # inwards: each message multiplies the clique's potential with
            p = self.parent[c]  # the messages of its subtree (a quiet one is 1: skipped)
            if p >= 0 and (c, p) not in self.quiet:
                sep = sorted(set(self.cliques[c]) & set(self.cliques[p]))
                inputs = potential[c] + [(_SLOT, s) for s in incoming[c].values()]
                if self.lazy[c]:
                    incoming[p][c] = lazily(c, inputs, sep)
                else:
                    incoming[p][c] = builder.step(merged(inputs), layouts[c], sep)
        for c in pre:  # outwards: the clique's belief, then each child's message by
            clique = layouts[c]  # dividing out what that child sent (Hugin)
            wanted = targets.get(c, [])
            if self.lazy[c]:  # Shafer-Shenoy: each message leaves out its receiver
                for k in self.children[c]:
                    if (c, k) in self.quiet:
                        continue
                    sep = sorted(set(clique) & set(self.cliques[k]))
                    inputs = potential[c] + [(_SLOT, s) for m, s in incoming[c].items() if m != k]
                    incoming[k][c] = lazily(c, inputs, sep)
                inputs = potential[c] + [(_SLOT, s) for s in incoming[c].values()]
                for v in wanted:
                    outputs[v] = lazily(c, inputs, [v])
                continue
            inputs = merged(potential[c] + [(_SLOT, s) for s in incoming[c].values()])
            if not self.children[c] and len(wanted) == 1:
                v = wanted[0]
                outputs[v] = builder.step(inputs, arranged(clique, [v]), [v])
                continue
            belief = builder.step(inputs, clique, clique)
            # the belief summed to each separator once (children sharing a separator
            # share it), then divided by what the child sent, on the separator:
            # Σ_{c \ s} β_c / μ_{k→c} = (Σ_{c \ s} β_c) / μ_{k→c}, μ being over s
            summed: dict[tuple[int, ...], int] = {}
            for k in self.children[c]:
                if (c, k) in self.quiet:
                    continue
                sep = tuple(sorted(set(clique) & set(self.cliques[k])))
                if sep not in summed:
                    summed[sep] = builder.step([(_SLOT, belief)], arranged(clique, sep), sep)
                if k not in incoming[c]:  # k sent 1: nothing to divide out
                    incoming[k][c] = summed[sep]
                    continue
                incoming[k][c] = builder.step(
                    [(_SLOT, summed[sep]), (_DIVIDE, incoming[c][k])], sep, sep
                )
            for v in wanted:  # from the smallest table at hand that holds v
                source, scope = belief, tuple(clique)
                for sep, slot in summed.items():
                    if v in sep and builder.slot_sizes[slot] < builder.slot_sizes[source]:
                        source, scope = slot, sep
                outputs[v] = builder.step([(_SLOT, source)], arranged(scope, [v]), [v])
        return builder, [outputs[v] for v in self.free]

    # ------------------------------------------------------------------ run
    def refresh(self, buffer: np.ndarray, table_offsets: np.ndarray, key: object) -> None:
        """Recompute the potentials Φ_c from the tables (``buffer`` at ``table_offsets``,
        then room for :meth:`potential_plan`'s workspace) unless ``key`` (a version of
        the tables) is the one they were computed from."""
        if key == self._key:
            return
        plan = self.plan()
        n_tables = int(table_offsets[-1])  # the tables first (lazy cliques read them)
        sizes = self.potential_plan().output_sizes
        self._offsets = np.zeros(len(table_offsets) + len(sizes), dtype=np.int64)
        self._offsets[: len(table_offsets)] = table_offsets
        np.cumsum(sizes, out=self._offsets[len(table_offsets) :])
        self._offsets[len(table_offsets) :] += n_tables
        total = int(self._offsets[-1])
        if self._buffer is None or self._buffer.shape[0] != total + plan.workspace:
            self._buffer = np.empty(total + plan.workspace)
        self._key = None  # until the potentials are complete
        self._buffer[:n_tables] = buffer[:n_tables]
        self._log_scale = 0.0
        if self.phi_cliques:
            _, log_norms, _ = run(
                self.potential_plan(),
                buffer,
                table_offsets,
                np.zeros((1, 0), dtype=np.int64),
                out=self._buffer[n_tables:total].reshape(1, total - n_tables),
            )
            self._log_scale = float(log_norms.sum())
        self._key = key

    def marginals(
        self, evidence_vars: Sequence[int], evidence: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrate for each row of ``evidence`` (B, len(evidence_vars)) int64 states
        (after :meth:`refresh`). Returns (marginals (B, Σ cards): p(x_v | e) of every
        free variable in order; log p(e) (B,), -inf where the normaliser vanished). A
        tree built for observed variables takes exactly those, in sorted order."""
        if self._buffer is None:
            raise RuntimeError("JunctionTree.refresh must run before marginals")
        if self.observed and tuple(evidence_vars) != self.observed:
            raise ConfigurationError(
                f"this junction tree was built for the observed variables {self.observed}, "
                f"got {tuple(evidence_vars)}"
            )
        key = tuple(evidence_vars)
        var_col = self._columns.get(key)
        if var_col is None:  # each variable's column in ``evidence`` (-1: unobserved)
            var_col = np.full(len(self.cards), -1, dtype=np.int64)
            var_col[list(key)] = np.arange(len(key))
            if len(self._columns) < 64:
                self._columns[key] = var_col
        with self._lock:
            results, log_norms, _ = run(self.plan(), self._buffer, self._offsets, evidence, var_col)
        # each tree of the forest normalises its own variables: p(e) is their product
        trees = self._one_per_tree
        if len(trees) == 1:  # a plain column: quicker than a gather and a sum
            log_z = log_norms[:, trees[0]]
        else:
            log_z = log_norms[:, trees].sum(axis=1)
        return results, log_z + self._log_scale

    # ------------------------------------------------------------------ torch route
    def calibrate_torch(
        self,
        tables: Sequence[torch.Tensor],
        evidence_vars: Sequence[int],
        evidence: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same calibration with ``torch.einsum`` contractions on the tables' device:
        every message, belief and marginal is one einsum (batched over the evidence rows
        through ``...``), so big cliques run as matrix products and the rows as one
        batch; used for junction trees too large for the scalar kernel to be quick, and
        on CUDA. ``evidence`` is (B, len(evidence_vars)); returns (marginals (B, Σ
        cards), log p(e) (B,), -inf where it vanished). Messages are normalised as they
        go (their log normalisers carried), so nothing underflows. Only for a tree built
        without observed variables (evidence enters as indicators)."""
        if self.observed:
            raise ConfigurationError(
                "calibrate_torch needs a tree built without observed variables"
            )
        device, dtype = tables[0].device, tables[0].dtype
        rows = int(evidence.shape[0]) if evidence.dim() == 2 else 1
        layouts = self._layouts()
        letters: dict[int, str] = {}

        def sub(scope: Sequence[int]) -> str:
            for v in scope:
                if v not in letters:
                    letters[v] = _LETTERS[len(letters) % len(_LETTERS)]
            return "..." + "".join(letters[v] for v in scope)

        key = (device, tuple((t.data_ptr(), t._version) for t in tables))
        if self._torch_key != key:
            potentials = {}
            for c in self.with_tables:
                letters.clear()
                terms = [sub(self.scopes[t]) for t in self.assigned[c]]
                covered = set().union(*(self.scopes[t] for t in self.assigned[c]))
                scope = tuple(v for v in layouts[c] if v in covered)
                eq = ",".join(terms) + "->" + sub(scope)
                tensor = torch.einsum(eq, *(tables[t] for t in self.assigned[c]))
                potentials[c] = (scope, tensor)
            self._torch_potentials, self._torch_key = potentials, key
        potentials = self._torch_potentials
        indicators: dict[int, list[tuple[int, torch.Tensor]]] = {}
        for j, v in enumerate(evidence_vars):
            onehot = torch.zeros(rows, self.cards[v], device=device, dtype=dtype)
            onehot[torch.arange(rows, device=device), evidence[:, j].to(device)] = 1.0
            indicators.setdefault(self.indicator_home[v], []).append((v, onehot))

        def contract(
            c: int, messages: list[tuple[tuple[int, ...], torch.Tensor]], out: Sequence[int]
        ) -> torch.Tensor:
            letters.clear()
            operands, terms = [], []
            if c in potentials:
                scope, tensor = potentials[c]
                operands.append(tensor)
                terms.append(sub(scope))
            for v, onehot in indicators.get(c, []):
                operands.append(onehot)
                terms.append(sub((v,)))
            for scope, tensor in messages:
                operands.append(tensor)
                terms.append(sub(scope))
            present = [v for v in out if v in letters]  # the others: constant along them
            if operands:
                result = torch.einsum(",".join(terms) + "->" + sub(present), *operands)
            else:
                result = torch.ones((), device=device, dtype=dtype)
            if result.dim() == len(present):  # no batched operand: one row for all
                result = result.unsqueeze(0)
            shape = [result.shape[0]] + [self.cards[v] if v in present else 1 for v in out]
            result = result.reshape(shape)
            return result.expand(rows, *(self.cards[v] for v in out))

        def normalised(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            total = x.reshape(rows, -1).sum(1)
            safe = torch.where(total > 0, total, torch.ones_like(total))
            return x / safe.reshape(-1, *(1,) * (x.dim() - 1)), torch.where(
                total > 0, total.log(), torch.full_like(total, -math.inf)
            )

        def zero() -> torch.Tensor:
            return torch.zeros(rows, device=device, dtype=dtype)

        incoming: list[dict[int, tuple[tuple[int, ...], torch.Tensor, torch.Tensor]]] = [
            {} for _ in self.cliques
        ]
        post, pre = self._walk()
        for c in post:  # inwards
            p = self.parent[c]
            if p < 0:
                continue
            sep = tuple(sorted(set(self.cliques[c]) & set(self.cliques[p])))
            msgs = [(s, m) for s, m, _ in incoming[c].values()]
            scale = sum((s for _, _, s in incoming[c].values()), zero())
            message, log_norm = normalised(contract(c, msgs, sep))
            incoming[p][c] = (sep, message, scale + log_norm)
        out = torch.zeros(rows, sum(self.cards), device=device, dtype=dtype)
        starts = np.concatenate([[0], np.cumsum(self.cards)])
        log_z = torch.zeros(rows, device=device, dtype=dtype)
        roots_done: set[int] = set()
        targets: dict[int, list[int]] = {}
        for v in range(len(self.cards)):
            targets.setdefault(self.home[v], []).append(v)
        for c in pre:  # outwards
            msgs = [(s, m) for s, m, _ in incoming[c].values()]
            scale = sum((s for _, _, s in incoming[c].values()), zero())
            belief, log_norm = normalised(contract(c, msgs, tuple(layouts[c])))
            if self.parent[c] < 0 and c not in roots_done:  # p(e) of this tree
                roots_done.add(c)
                log_z = log_z + scale + log_norm
            for k in self.children[c]:
                sep = tuple(sorted(set(self.cliques[c]) & set(self.cliques[k])))
                _, sent, sent_log = incoming[c][k]
                ratio = torch.where(sent > 0, 1.0 / torch.where(sent > 0, sent, 1.0), 0.0)
                letters.clear()
                eq = f"{sub(layouts[c])},{sub(sep)}->{sub(sep)}"
                message, log_down = normalised(torch.einsum(eq, belief, ratio))
                incoming[k][c] = (sep, message, scale + log_norm - sent_log + log_down)
            for v in targets.get(c, []):
                letters.clear()
                eq = f"{sub(layouts[c])}->{sub((v,))}"
                marginal = torch.einsum(eq, belief)
                total = marginal.sum(-1, keepdim=True)
                out[:, starts[v] : starts[v + 1]] = marginal / torch.where(total > 0, total, 1.0)
        return out, log_z
