"""The DAG of a Bayesian network: layered by topological depth (as Figura 1 of the notes), or
where a :class:`pyrobn.graph.ModelGraph` places its nodes; edges that would cross a node bend
around it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pyrobn.plots import PALETTE

__all__ = ["ARC_CLEARANCE", "ARC_RADS", "dag_layers", "plot_dag", "plot_model_graph", "route_edge"]

Point = tuple[float, float]
#: how far (in node spacings) an arc keeps from the nodes it goes around
ARC_CLEARANCE = 0.08
#: the bends tried for an arc, smallest first (``rad`` of matplotlib's ``arc3``: the
#: control point of the quadratic Bezier curve sits rad x chord length off the chord)
ARC_RADS = tuple(round(0.1 + 0.05 * i, 2) for i in range(19))


def dag_layers(parents: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Nodes grouped by depth: roots at depth 0, every other node one below its deepest parent.

    ``parents`` must list the nodes in a topological order (a network's ``variables``).
    """
    depth: dict[str, int] = {}
    for node, pas in parents.items():
        depth[node] = 1 + max((depth[p] for p in pas), default=-1)
    layers: list[list[str]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for node, d in depth.items():
        layers[d].append(node)
    return layers


def plot_dag(
    parents: Mapping[str, Sequence[str]],
    ax: Any = None,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    node_color: str = PALETTE[0],
    radius: float = 0.22,
) -> Any:
    """Draw nodes as circles, one row per topological layer, and an arrow per edge.

    ``labels`` maps a node to the text drawn under it (e.g. its meaning). Returns the axes.

    >>> ax = plot_dag({"x1": [], "x2": ["x1"], "x3": ["x1"], "x4": ["x2", "x3"]})
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch

    layers = dag_layers(parents)
    if ax is None:
        width = max((len(layer) for layer in layers), default=1)
        _, ax = plt.subplots(figsize=(1.8 + 1.6 * width, 1.2 + 1.3 * len(layers)))
    position: dict[str, tuple[float, float]] = {}
    for row, layer in enumerate(layers):
        for col, node in enumerate(layer):
            position[node] = (col - (len(layer) - 1) / 2, -row)
    for node, pas in parents.items():
        for p in pas:
            (x0, y0), (x1, y1) = position[p], position[node]
            length = max(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5, 1e-9)
            ux, uy = (x1 - x0) / length, (y1 - y0) / length
            arrow = FancyArrowPatch(
                (x0 + radius * ux, y0 + radius * uy),
                (x1 - radius * ux, y1 - radius * uy),
                arrowstyle="-|>",
                mutation_scale=16,
                shrinkA=0,
                shrinkB=0,
                color="0.25",
                lw=1.4,
            )
            ax.add_patch(arrow)
    for node, (x, y) in position.items():
        ax.add_patch(Circle((x, y), radius, facecolor=node_color, edgecolor="black", zorder=3))
        ax.text(x, y, node, ha="center", va="center", color="white", fontsize=12, zorder=4)
        if labels and node in labels:
            ax.text(x, y - radius - 0.08, labels[node], ha="center", va="top", fontsize=8)
    xs = [x for x, _ in position.values()] or [0.0]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(-len(layers) + 0.4, 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


# ---------------------------------------------------------------------- edge routing
def _shape(node: Any) -> str:
    """How a node is drawn: a dot (parameter), diamond (deterministic), square
    (discrete) or circle."""
    if node.role == "parameter":
        return "dot"
    if node.role == "deterministic":
        return "diamond"
    return "square" if node.discrete else "circle"


def _to_boundary(shape: str, size: float, ux: float, uy: float) -> float:
    """Distance from a node's centre to its outline along the unit direction (ux, uy)."""
    if shape == "square":
        return size / max(abs(ux), abs(uy), 1e-9)
    if shape == "diamond":
        return size / max(abs(ux) + abs(uy), 1e-9)
    return size


def _reach(shape: str, size: float) -> float:
    """The radius of the smallest circle around a node's outline."""
    return size * math.sqrt(2) if shape == "square" else size


def _unit(dx: float, dy: float) -> Point:
    length = max(math.hypot(dx, dy), 1e-9)
    return dx / length, dy / length


def _control(start: Point, end: Point, rad: float) -> Point:
    """The control point of matplotlib's ``arc3,rad=rad``: midpoint + rad (dy, -dx)."""
    (x0, y0), (x1, y1) = start, end
    return (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)


def _bezier(start: Point, end: Point, rad: float, n: int = 41) -> list[Point]:
    """Points of the curve ``arc3,rad=rad`` draws from ``start`` to ``end`` (in axes of
    equal aspect): B(s) = (1-s)^2 A + 2s(1-s) C + s^2 B with C from :func:`_control`."""
    (x0, y0), (x1, y1) = start, end
    cx, cy = _control(start, end, rad)
    points = []
    for i in range(n):
        s = i / (n - 1)
        a, b, c = (1 - s) ** 2, 2 * s * (1 - s), s**2
        points.append((a * x0 + b * cx + c * x1, a * y0 + b * cy + c * y1))
    return points


def _segment_distance(point: Point, start: Point, end: Point) -> float:
    (px, py), (x0, y0), (x1, y1) = point, start, end
    dx, dy = x1 - x0, y1 - y0
    s = ((px - x0) * dx + (py - y0) * dy) / max(dx * dx + dy * dy, 1e-18)
    s = min(1.0, max(0.0, s))
    return math.hypot(px - x0 - s * dx, py - y0 - s * dy)


def route_edge(
    tail: Point,
    head: Point,
    ends: tuple[tuple[str, float], tuple[str, float]],
    others: Sequence[tuple[Point, float]],
) -> tuple[Point, Point, float]:
    """Where to draw the arrow ``tail`` -> ``head``: (start, end, rad).

    ``ends`` are the (shape, size) of the two nodes, ``others`` the (centre, reach) of
    every other node. An edge clear of the other nodes is straight (rad = 0), from outline
    to outline. One that would cross a node is an arc (matplotlib's ``arc3``): the smallest
    bend of :data:`ARC_RADS` whose curve keeps :data:`ARC_CLEARANCE` away from every other
    node, bending up (for an edge left to right; to the right for a vertical one) when
    both sides are as good.

    >>> start, end, rad = route_edge((0, 0), (2, 0), (("circle", 0.2),) * 2, [((1, 0), 0.2)])
    >>> [round(v, 3) for v in (*start, *end)], rad   # around (1, 0): an arc over it
    ([0.179, 0.089, 1.821, 0.089], -0.25)
    """
    (x0, y0), (x1, y1) = tail, head
    (shape0, size0), (shape1, size1) = ends

    def trimmed(rad: float) -> tuple[Point, Point]:
        # the ends leave the outlines along the curve's tangents (towards its control point)
        cx, cy = _control(tail, head, rad)
        ux, uy = _unit(cx - x0, cy - y0)
        vx, vy = _unit(x1 - cx, y1 - cy)
        d0, d1 = _to_boundary(shape0, size0, ux, uy), _to_boundary(shape1, size1, vx, vy)
        return (x0 + d0 * ux, y0 + d0 * uy), (x1 - d1 * vx, y1 - d1 * vy)

    start, end = trimmed(0.0)
    if all(_segment_distance(c, start, end) >= reach for c, reach in others):
        return start, end, 0.0
    dx, dy = x1 - x0, y1 - y0
    up = -1.0 if dx > 1e-9 else 1.0 if dx < -1e-9 else (-1.0 if dy < 0 else 1.0)
    for magnitude in ARC_RADS:
        for rad in (up * magnitude, -up * magnitude):
            start, end = trimmed(rad)
            if all(
                math.hypot(px - cx, py - cy) >= reach + ARC_CLEARANCE
                for px, py in _bezier(start, end, rad)
                for (cx, cy), reach in others
            ):
                return start, end, rad
    rad = up * ARC_RADS[-1]
    return (*trimmed(rad), rad)


def _grow(
    box: tuple[float, float, float, float], points: Sequence[Point], pad: float
) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) grown to hold every point with ``pad`` around it."""
    x0, x1, y0, y1 = box
    for x, y in points:
        x0, x1, y0, y1 = min(x0, x - pad), max(x1, x + pad), min(y0, y - pad), max(y1, y + pad)
    return x0, x1, y0, y1


# ---------------------------------------------------------------------- the figure
def plot_model_graph(
    graph: Any,
    ax: Any = None,
    show_labels: bool = True,
    radius: float = 0.24,
    title: str | None = None,
) -> Any:
    """Draw a :class:`pyrobn.graph.ModelGraph` in the usual Bayesian-network style.

    Observed nodes are shaded, latent ones white; discrete nodes are squares, continuous
    ones circles; parameters are small black dots, deterministic nodes diamonds; each
    plate is a rectangle around its nodes (and the arcs between them) with its size in the
    corner. Nodes sit where ``graph.positions`` puts them, or else in layers that follow
    the topological order, as in Figura 1 of the notes. An edge that would pass through
    another node is an arc around it (:func:`route_edge`: a ``FancyArrowPatch`` with
    ``connectionstyle="arc3,rad=..."``), so that no edge hides behind a node. Returns the
    axes.

    >>> from pyrobn.graph import GraphNode, ModelGraph
    >>> g = ModelGraph([GraphNode(n, "observed") for n in "abc"],
    ...                [("a", "b"), ("b", "c"), ("a", "c")],
    ...                positions={"a": (0, 0), "b": (1, 0), "c": (2, 0)})
    >>> ax = plot_model_graph(g)
    >>> [round(p.get_connectionstyle().rad, 2) for p in ax.patches[:3]]  # a -> c bends up
    [0.0, 0.0, -0.3]
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch, Polygon, Rectangle

    parents = graph.parent_map()
    layers = None
    if graph.positions is not None:
        position = dict(graph.positions)
    else:
        layers = dag_layers(parents)
        position = {}
        for row, layer in enumerate(layers):
            for col, node in enumerate(layer):
                position[node] = (col - (len(layer) - 1) / 2, -row)
    size = {n.name: (0.07 if n.role == "parameter" else radius) for n in graph.nodes}
    shape = {n.name: _shape(n) for n in graph.nodes}
    routes = []
    for node, pas in parents.items():
        for p in pas:
            ends = ((shape[p], size[p]), (shape[node], size[node]))
            others = [
                (position[m], _reach(shape[m], size[m])) for m in position if m not in (p, node)
            ]
            routes.append((p, node, *route_edge(position[p], position[node], ends, others)))
    curves = {(p, c): _bezier(a, b, rad) for p, c, a, b, rad in routes if rad}
    boxes = []
    for depth, (_plate, (members, label)) in enumerate(graph.plates.items()):
        pts = [position[m] for m in members if m in position]
        if not pts:
            continue
        pad = radius + 0.12 + 0.08 * depth
        box = _grow((math.inf, -math.inf, math.inf, -math.inf), pts, pad)
        inside = set(members)
        arcs = [q for (p, c), curve in curves.items() if {p, c} <= inside for q in curve]
        boxes.append((*_grow(box, arcs, 0.1 + 0.08 * depth), label))
    xs = [x for x, _ in position.values()] or [0.0]
    ys = [y for _, y in position.values()] or [0.0]
    limits = (min(xs) - 1.0, max(xs) + 1.0, min(ys) - 0.7, max(ys) + 0.75)
    extra = [q for curve in curves.values() for q in curve]
    extra += [q for x0, x1, y0, y1, _ in boxes for q in ((x0, y0), (x1, y1))]
    left, right, bottom, top = _grow(limits, extra, 0.15)
    if ax is None:
        if layers is not None:
            width = max((len(layer) for layer in layers), default=1)
            figsize = (2.0 + 1.6 * width, 1.4 + 1.3 * len(layers))
        else:
            figsize = (max(2.5, 1.1 * (right - left)), max(1.8, 1.1 * (top - bottom)))
        _, ax = plt.subplots(figsize=figsize)
    for _p, _c, start, end, rad in routes:
        style = {"connectionstyle": f"arc3,rad={rad}"} if rad else {}
        ax.add_patch(
            FancyArrowPatch(
                start,
                end,
                arrowstyle="-|>",
                mutation_scale=14,
                shrinkA=0,
                shrinkB=0,
                color="0.25",
                lw=1.2,
                **style,
            )
        )
    for n in graph.nodes:
        x, y = position[n.name]
        face = {"observed": "0.75", "latent": "white", "deterministic": "white"}.get(
            n.role, "black"
        )
        text = n.label or n.name
        if n.role == "parameter":
            ax.add_patch(Circle((x, y), size[n.name], facecolor="black", zorder=3))
            ax.text(x + 0.1, y + 0.08, text, ha="left", va="bottom", fontsize=10, zorder=4)
            continue
        if n.role == "deterministic":
            r = radius
            patch = Polygon([(x, y + r), (x + r, y), (x, y - r), (x - r, y)], closed=True)
        elif n.discrete:
            patch = Rectangle((x - radius, y - radius), 2 * radius, 2 * radius)
        else:
            patch = Circle((x, y), radius)
        patch.set(facecolor=face, edgecolor="black", zorder=3, lw=1.3)
        ax.add_patch(patch)
        ax.text(x, y, text, ha="center", va="center", fontsize=10, zorder=4)
    for x0, x1, y0, y1, label in boxes:
        ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="0.35", lw=1.0, zorder=1)
        )
        if show_labels:
            ax.text(x1 - 0.05, y0 + 0.05, label, ha="right", va="bottom", fontsize=9)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")
    if title or graph.title:
        ax.set_title(title or graph.title)
    return ax
