"""Which tables a query needs: barren nodes and d-separated nodes are pruned.

For p(x_Q | e) only the ancestral set An(Q ∪ E) matters: a node outside it is barren
(nothing observed below it), its table sums to 1 and drops out (Koller & Friedman,
9.3.1.2). Inside it, slicing the evidence splits the product of tables into connected
pieces over the unobserved variables (the moral graph of the ancestral set with the
evidence removed, i.e. d-separation given E); pieces that hold no query variable
multiply p(x_Q, e) by a constant, which the normalisation cancels. They are dropped
too, but only after checking (when one of their tables holds a zero) that they do not
make the evidence impossible: pruning must never turn "probability zero" into an
answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["Relevance"]


class Relevance:
    """Pruning on a DAG given by each node's parents (node ids in topological order).

    Table ``i`` is the family of node ``i``: its parents and itself.

    >>> r = Relevance([(), (0,), (0,), (1, 2)])      # the student network
    >>> r.split(query=(1,), evidence=(0,))           # x2 given x1: x3, x4 drop out
    ((1,), (0,))
    """

    def __init__(self, parents: Sequence[Sequence[int]]) -> None:
        self.parents = tuple(tuple(p) for p in parents)
        self.families = tuple((*p, i) for i, p in enumerate(self.parents))
        tables_of: list[list[int]] = [[] for _ in self.parents]
        for table, family in enumerate(self.families):
            for v in family:
                tables_of[v].append(table)
        self.tables_of = tuple(tuple(t) for t in tables_of)

    def ancestral(self, variables: Iterable[int]) -> set[int]:
        """An(variables): the variables and all their ancestors."""
        seen: set[int] = set()
        stack = list(variables)
        parents = self.parents
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                stack.extend(parents[v])
        return seen

    def split(
        self, query: Sequence[int], evidence: Sequence[int]
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(tables that p(x_Q | e) needs, tables of An(Q ∪ E) that only scale it).

        With an empty query every table of An(E) is needed (p(e) itself).
        """
        ancestral = self.ancestral((*query, *evidence))
        if not query:
            return tuple(sorted(ancestral)), ()
        observed = set(evidence)
        kept: set[int] = set()
        reached = set(query)
        stack = list(query)
        families, tables_of = self.families, self.tables_of
        while stack:
            v = stack.pop()
            for t in tables_of[v]:
                if t in kept or t not in ancestral:
                    continue
                kept.add(t)
                for u in families[t]:
                    if u not in reached and u not in observed:
                        reached.add(u)
                        stack.append(u)
        return tuple(sorted(kept)), tuple(sorted(ancestral - kept))
