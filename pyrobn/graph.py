"""A model's Bayesian network as an object: nodes, edges, plates; d-separation; a drawing.

The chapter reads every model as a Bayesian network (notes 2.1, eq. 8): a DAG whose nodes
are variables, each with a distribution given its parents. :class:`ModelGraph` is that DAG
as data, the same for every model of the package (``model.graph()``): nodes carry their
role (observed, latent, parameter, deterministic) and whether they are discrete; plates
(Pyro's ``pyro.plate``) group the nodes repeated over data rows or time steps.
:meth:`ModelGraph.d_separated` answers which independences the graph implies (2.1.2), and
:meth:`ModelGraph.draw` draws it with matplotlib alone (no graphviz binary needed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyrobn.errors import ConfigurationError, CycleError, UnknownVariableError

__all__ = ["ROLES", "GraphNode", "ModelGraph"]

#: what a node can be: data (shaded in the figure), a hidden variable, a parameter
#: (drawn small), or a deterministic function of its parents (drawn as a diamond)
ROLES = ("observed", "latent", "parameter", "deterministic")


@dataclass(frozen=True)
class GraphNode:
    """One node: its name, role (:data:`ROLES`), whether it is discrete, and a label."""

    name: str
    role: str = "latent"
    discrete: bool = False
    label: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigurationError(f"node {self.name!r}: role must be one of {ROLES}")


@dataclass
class ModelGraph:
    """A DAG with roles and plates.

    Args:
        nodes: the nodes, in any order.
        edges: (parent, child) pairs.
        plates: plate name -> (member nodes, size label such as ``"N"`` or ``"T"``).
        title: shown above the figure.

    >>> g = ModelGraph([GraphNode("z", discrete=True), GraphNode("x", "observed")],
    ...                [("z", "x")], plates={"data": (["z", "x"], "N")})
    >>> g.parents("x")
    ('z',)
    """

    nodes: list[GraphNode]
    edges: list[tuple[str, str]]
    plates: dict[str, tuple[list[str], str]] = field(default_factory=dict)
    title: str = ""

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"a node name appears twice: {names}")
        known = set(names)
        for a, b in self.edges:
            for end in (a, b):
                if end not in known:
                    raise UnknownVariableError(f"edge ({a!r}, {b!r}) names an unknown node")
        for plate, (members, _) in self.plates.items():
            for m in members:
                if m not in known:
                    raise UnknownVariableError(f"plate {plate!r} holds an unknown node {m!r}")
        self.order()  # raises CycleError on a cycle

    # ------------------------------------------------------------------ structure
    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def node(self, name: str) -> GraphNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise UnknownVariableError(f"unknown node {name!r}; the nodes are {self.names}")

    def parents(self, name: str) -> tuple[str, ...]:
        self.node(name)
        return tuple(a for a, b in self.edges if b == name)

    def children(self, name: str) -> tuple[str, ...]:
        self.node(name)
        return tuple(b for a, b in self.edges if a == name)

    def order(self) -> list[str]:
        """A topological order (parents first), stable in the nodes' order."""
        placed: list[str] = []
        remaining = self.names
        while remaining:
            ready = [n for n in remaining if all(p in placed for p, c in self.edges if c == n)]
            if not ready:
                raise CycleError(f"the graph has a cycle among {remaining}")
            placed += ready
            remaining = [n for n in remaining if n not in ready]
        return placed

    def parent_map(self) -> dict[str, tuple[str, ...]]:
        """Node -> parents, in topological order."""
        return {n: self.parents(n) for n in self.order()}

    # ------------------------------------------------------------------ independence
    def d_separated(
        self, a: str | Iterable[str], b: str | Iterable[str], given: Iterable[str] = ()
    ) -> bool:
        """Whether every path between ``a`` and ``b`` is blocked by ``given`` (d-separation,
        notes 2.1.2): then p(a, b | given) = p(a | given) p(b | given) for every choice of
        the conditional distributions. Reachability ("Bayes ball", Koller & Friedman,
        Algorithm 3.1).

        >>> g = ModelGraph([GraphNode(n) for n in "abc"], [("a", "b"), ("b", "c")])
        >>> g.d_separated("a", "c"), g.d_separated("a", "c", given=["b"])
        (False, True)
        """
        sources = {a} if isinstance(a, str) else set(a)
        targets = {b} if isinstance(b, str) else set(b)
        observed = set(given)
        for name in sources | targets | observed:
            self.node(name)
        if sources & targets:
            return False
        return not (self.reachable(sources, observed) & targets)

    def reachable(self, sources: Iterable[str], given: Iterable[str] = ()) -> set[str]:
        """The nodes d-connected to ``sources`` given ``given`` (``given`` excluded)."""
        observed = set(given)
        # ancestors of the evidence: a collider is open when it or a descendant is observed
        ancestors: set[str] = set()
        stack = list(observed)
        while stack:
            n = stack.pop()
            if n not in ancestors:
                ancestors.add(n)
                stack.extend(self.parents(n))
        visited: set[tuple[str, str]] = set()
        reached: set[str] = set()
        stack2: list[tuple[str, str]] = [(s, "up") for s in sources]
        while stack2:
            name, direction = stack2.pop()
            if (name, direction) in visited:
                continue
            visited.add((name, direction))
            if name not in observed:
                reached.add(name)
            if direction == "up" and name not in observed:
                stack2 += [(p, "up") for p in self.parents(name)]
                stack2 += [(c, "down") for c in self.children(name)]
            elif direction == "down":
                if name not in observed:
                    stack2 += [(c, "down") for c in self.children(name)]
                if name in ancestors:
                    stack2 += [(p, "up") for p in self.parents(name)]
        return reached - set(sources)

    def markov_blanket(self, name: str) -> set[str]:
        """Parents, children and the children's other parents of ``name``."""
        blanket = set(self.parents(name)) | set(self.children(name))
        for child in self.children(name):
            blanket |= set(self.parents(child))
        blanket.discard(name)
        return blanket

    # ------------------------------------------------------------------ figure
    def draw(self, ax: Any = None, labels: bool = True, **kwargs: Any) -> Any:
        """Draw the graph (roles, plates) with matplotlib; returns the axes."""
        from pyrobn.plots.dag import plot_model_graph

        return plot_model_graph(self, ax=ax, show_labels=labels, **kwargs)

    def members(self, plate: str) -> Sequence[str]:
        return self.plates[plate][0]
