"""The DAG of a Bayesian network, layered by topological depth (as Figura 1 of the notes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyrobn.plots import PALETTE


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

    >>> plot_dag({"x1": [], "x2": ["x1"], "x3": ["x1"], "x4": ["x2", "x3"]})
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
    plate is a rectangle around its nodes with its size in the corner. Layers follow the
    topological order, as in Figura 1 of the notes. Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch, Polygon, Rectangle

    parents = graph.parent_map()
    layers = dag_layers(parents)
    if ax is None:
        width = max((len(layer) for layer in layers), default=1)
        _, ax = plt.subplots(figsize=(2.0 + 1.6 * width, 1.4 + 1.3 * len(layers)))
    position: dict[str, tuple[float, float]] = {}
    for row, layer in enumerate(layers):
        for col, node in enumerate(layer):
            position[node] = (col - (len(layer) - 1) / 2, -row)
    size = {n.name: (0.07 if n.role == "parameter" else radius) for n in graph.nodes}
    for node, pas in parents.items():
        for p in pas:
            (x0, y0), (x1, y1) = position[p], position[node]
            length = max(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5, 1e-9)
            ux, uy = (x1 - x0) / length, (y1 - y0) / length
            ax.add_patch(
                FancyArrowPatch(
                    (x0 + size[p] * ux, y0 + size[p] * uy),
                    (x1 - size[node] * ux, y1 - size[node] * uy),
                    arrowstyle="-|>",
                    mutation_scale=14,
                    shrinkA=0,
                    shrinkB=0,
                    color="0.25",
                    lw=1.2,
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
    for depth, (_plate, (members, label)) in enumerate(graph.plates.items()):
        pts = [position[m] for m in members if m in position]
        if not pts:
            continue
        pad = radius + 0.12 + 0.08 * depth
        x0, x1 = min(p[0] for p in pts) - pad, max(p[0] for p in pts) + pad
        y0, y1 = min(p[1] for p in pts) - pad, max(p[1] for p in pts) + pad
        ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="0.35", lw=1.0, zorder=1)
        )
        if show_labels:
            ax.text(x1 - 0.05, y0 + 0.05, label, ha="right", va="bottom", fontsize=9)
    xs = [x for x, _ in position.values()] or [0.0]
    ax.set_xlim(min(xs) - 1.0, max(xs) + 1.0)
    ax.set_ylim(-len(layers) + 0.3, 0.75)
    ax.set_aspect("equal")
    ax.axis("off")
    if title or graph.title:
        ax.set_title(title or graph.title)
    return ax


__all__ = ["dag_layers", "plot_dag", "plot_model_graph"]
