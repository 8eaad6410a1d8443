"""The network's graph: its DAG as a :class:`pyrobn.graph.ModelGraph`, the independences
it implies (d-separation, Markov blankets), its parameter count, interventions.

The chapter's argument for factorising (notes 2.1.1-2.1.2): the DAG implies conditional
independences, so p(x) = Π_n p(x_n | Pa(x_n)) (eq. 8) needs Σ_n (K_n - 1) Π_{p ∈ Pa(n)} K_p
free parameters instead of the full joint's Π_n K_n - 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any

import numpy as np
import torch

from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.graph import GraphNode, ModelGraph
from pyrobn.models.bayesnet._types import Evidence
from pyrobn.models.bayesnet.cpt import CPT

__all__ = ["StructureMixin"]


class StructureMixin:
    """Graph queries (mixed into :class:`~pyrobn.models.bayesnet.DiscreteBayesianNetwork`)."""

    def graph(self) -> ModelGraph:
        """The DAG (Figura 1 for the student network): one discrete node per variable,
        an edge from each parent.

        >>> pyrobn.student_network().graph().parents("x4")
        ('x2', 'x3')
        """
        nodes = [GraphNode(n, "observed", discrete=True) for n in self.variables]
        edges = [(p, n) for n in self.variables for p in self.parents(n)]
        return ModelGraph(nodes, edges, title="discrete Bayesian network")

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Draw the DAG layered by topological depth (as Figura 1); returns the axes."""
        from pyrobn.plots.dag import plot_dag

        return plot_dag({n: self.parents(n) for n in self.variables}, ax=ax, **kwargs)

    def _names(
        self, names: str | Iterable[str] | None, what: str, *, empty: bool = False
    ) -> set[str]:
        """A variable or a collection of them as a set of known names (``empty``: the
        empty set, or None, is allowed)."""
        if names is None and empty:
            return set()
        try:
            if isinstance(names, str):
                out = {names}
            elif isinstance(names, Iterable) and not isinstance(names, bytes | Mapping):
                out = set(names)
            else:
                raise TypeError
        except TypeError:  # not iterable, or an item that cannot be a name
            raise ConfigurationError(
                f"{what} must be a variable name or a collection of names, got {names!r}"
            ) from None
        if not out and not empty:
            raise ConfigurationError(f"{what} names no variable")
        for n in out:
            self._var(n)
        return out

    def is_independent(
        self,
        a: str | Iterable[str],
        b: str | Iterable[str],
        given: str | Iterable[str] | None = (),
    ) -> bool:
        """Whether the DAG implies a ⟂ b | given (d-separation, notes 2.1.2): then
        p(a, b | given) = p(a | given) p(b | given) for every choice of the tables.
        ``a``, ``b`` and ``given`` are names or collections of names (sets of variables:
        the joint of ``a`` against the joint of ``b``); ``a`` and ``b`` share no variable
        with ``given``; a variable shared by ``a`` and ``b`` makes them dependent.

        >>> net = pyrobn.student_network()
        >>> net.is_independent("x2", "x3", given="x1"), net.is_independent("x2", "x3")
        (True, False)
        """
        sa, sb = self._names(a, "a"), self._names(b, "b")
        sg = self._names(given, "given", empty=True)
        if (sa | sb) & sg:
            raise ConfigurationError(
                f"{sorted((sa | sb) & sg)} are both tested and given as the condition"
            )
        return self.graph().d_separated(sa, sb, sg)

    def markov_blanket(self, x: str) -> tuple[str, ...]:
        """Parents, children and the children's other parents of ``x``: given them, x is
        independent of every other variable.

        >>> pyrobn.student_network().markov_blanket("x2")
        ('x1', 'x3', 'x4')
        """
        self._var(x)
        children = [n for n in self.variables if x in self.parents(n)]
        blanket = set(self.parents(x)) | set(children)
        for c in children:
            blanket |= set(self.parents(c))
        blanket.discard(x)
        return tuple(n for n in self.variables if n in blanket)

    def independences(self) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        """The local Markov statements the DAG implies: (x, its non-descendants that are
        not its parents, its parents) for each x with any, meaning
        x ⟂ non-descendants | parents; every other implied independence follows from
        these (and :meth:`is_independent` decides any one).

        >>> pyrobn.student_network().independences()[:2]
        [('x2', ('x3',), ('x1',)), ('x3', ('x2',), ('x1',))]
        """
        children: dict[str, list[str]] = {n: [] for n in self.variables}
        for n in self.variables:
            for p in self.parents(n):
                children[p].append(n)
        out = []
        for x in self.variables:
            below, stack = set(), list(children[x])
            while stack:
                c = stack.pop()
                if c not in below:
                    below.add(c)
                    stack.extend(children[c])
            others = tuple(
                n for n in self.variables if n != x and n not in below and n not in self.parents(x)
            )
            if others:
                out.append((x, others, tuple(self.parents(x))))
        return out

    def independent_pairs(self, max_given: int = 1) -> list[tuple[str, str, tuple[str, ...]]]:
        """Every (a, b, given) with |given| <= ``max_given`` that the DAG implies (a < b in
        the variables' order): the table the notes work by hand for small networks."""
        out = []
        names = list(self.variables)
        for a, b in combinations(names, 2):
            rest = [n for n in names if n not in (a, b)]
            for k in range(max_given + 1):
                for given in combinations(rest, k):
                    if self.is_independent(a, b, given):
                        out.append((a, b, given))
        return out

    @property
    def n_parameters(self) -> int:
        """Free parameters of the tables: Σ_n (K_n - 1) Π_{p ∈ Pa(n)} K_p (each row sums
        to 1). The student network needs 1 + 2 + 2 + 4 = 9.

        >>> pyrobn.student_network().n_parameters, pyrobn.student_network().n_parameters_joint
        (9, 15)
        """
        total = 0
        for n in self.variables:
            rows = 1
            for p in self.parents(n):
                rows *= self.cardinality(p)
            total += rows * (self.cardinality(n) - 1)
        return total

    @property
    def n_parameters_joint(self) -> int:
        """Free parameters of the full joint table over the same variables: Π_n K_n - 1."""
        size = 1
        for n in self.variables:
            size *= self.cardinality(n)
        return size - 1

    def do(self, intervention: Evidence) -> Any:
        """The mutilated network of the intervention do(X = x) (Pearl's truncated
        factorisation): each intervened variable's table becomes a point mass on its
        value and loses its parents (incoming edges are cut); every other table is
        kept. ``net.do({"x": 1}).query("y")`` is p(y | do(x = 1)), which differs from
        p(y | x = 1) when x and y share a cause.

        >>> net = pyrobn.student_network()
        >>> net.do({"x2": 1}).query("x1")     # = p(x1): forcing x2 says nothing of x1
        tensor([0.1000, 0.9000], dtype=torch.float64)
        """
        if not isinstance(intervention, Mapping) or not intervention:
            raise ConfigurationError(
                f"an intervention is a non-empty mapping name -> state, got {intervention!r}"
            )
        fixed = {}
        for name, value in intervention.items():
            var = self._var(name)
            if isinstance(value, torch.Tensor | np.ndarray | list | tuple) and np.ndim(value):
                raise ShapeError(f"do() takes one state per variable, got {value!r} for {name!r}")
            fixed[self.variables[var]] = self._state(var, value)
        cpts = {}
        for n in self.variables:
            if n in fixed:
                point = torch.zeros(self.cardinality(n), dtype=torch.float64)
                point[fixed[n]] = 1.0
                cpts[n] = CPT(point)
            else:
                cpts[n] = CPT(self.table(n).detach().cpu(), parents=self.parents(n))
        states = {n: list(s) for n, s in self.states.items() if s}
        return type(self)(cpts, states=states or None, device=self.device)
