"""ModelGraph: structure, d-separation against numeric independence, positions, the figure
(arcs around the nodes an edge would cross)."""

from __future__ import annotations

import itertools

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.patches import FancyArrowPatch

from pyrobn.errors import ConfigurationError, CycleError, UnknownVariableError
from pyrobn.graph import GraphNode, ModelGraph
from pyrobn.models.hmm import HiddenMarkovModel
from pyrobn.models.markov import MarkovChain

matplotlib.use("Agg")


def _random_dag(draw_edges: list[bool], n: int) -> ModelGraph:
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    edges = [(f"v{i}", f"v{j}") for (i, j), keep in zip(pairs, draw_edges) if keep]
    return ModelGraph([GraphNode(f"v{i}", discrete=True) for i in range(n)], edges)


def _random_joint(graph: ModelGraph, gen: torch.Generator) -> torch.Tensor:
    """p(x) = prod p(x_i | pa_i) with generic random binary tables."""
    names = graph.names
    joint = torch.ones([2] * len(names), dtype=torch.float64)
    for i, name in enumerate(names):
        pas = [names.index(p) for p in graph.parents(name)]
        table = torch.rand([2] * len(pas) + [2], generator=gen, dtype=torch.float64) + 0.05
        table = table / table.sum(-1, keepdim=True)
        shape = [1] * len(names)
        for p in pas:
            shape[p] = 2
        shape[i] = 2
        perm = sorted([*pas, i])
        joint = joint * table.permute(*[[*pas, i].index(k) for k in perm]).reshape(shape)
    return joint


def _independent(joint: torch.Tensor, a: int, b: int, given: list[int]) -> float:
    """max |p(a, b | c) - p(a | c) p(b | c)| over everything."""
    keep = sorted({a, b, *given})
    drop = [k for k in range(joint.dim()) if k not in keep]
    marg = joint.sum(drop) if drop else joint
    order = [keep.index(a), keep.index(b), *[keep.index(g) for g in given]]
    marg = marg.permute(*order)  # (a, b, *given)
    pc = marg.sum((0, 1), keepdim=True)
    cond = marg / pc
    pa = cond.sum(1, keepdim=True)
    pb = cond.sum(0, keepdim=True)
    return float((cond - pa * pb).abs().max())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 5),
    edges=st.lists(st.booleans(), min_size=10, max_size=10),
    seed=st.integers(0, 1000),
    data=st.data(),
)
def test_d_separation_matches_the_joint_table(n, edges, seed, data):
    graph = _random_dag(edges, n)
    joint = _random_joint(graph, torch.Generator().manual_seed(seed))
    a, b = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    rest = [k for k in range(n) if k not in (a, b)]
    given_ = data.draw(st.lists(st.sampled_from(rest), unique=True, max_size=len(rest)))
    gap = _independent(joint, a, b, given_)
    names = graph.names
    if graph.d_separated(names[a], names[b], [names[g] for g in given_]):
        assert gap < 1e-12
    else:
        assert gap > 1e-6  # generic tables: an independence the graph does not imply fails


def test_markov_blanket_and_structure():
    g = ModelGraph(
        [GraphNode(n) for n in ["a", "b", "c", "d", "e"]],
        [("a", "c"), ("b", "c"), ("c", "d"), ("e", "d")],
    )
    assert g.markov_blanket("c") == {"a", "b", "d", "e"}
    assert g.parents("c") == ("a", "b") and g.children("c") == ("d",)
    assert g.order().index("a") < g.order().index("c") < g.order().index("d")
    # explaining away: a and b are independent, dependent given the collider or its child
    assert g.d_separated("a", "b") and not g.d_separated("a", "b", ["d"])


def test_bad_graphs_are_named():
    with pytest.raises(CycleError):
        ModelGraph([GraphNode("a"), GraphNode("b")], [("a", "b"), ("b", "a")])
    with pytest.raises(UnknownVariableError, match="'z'"):
        ModelGraph([GraphNode("a")], [("a", "z")])
    with pytest.raises(ConfigurationError, match="twice"):
        ModelGraph([GraphNode("a"), GraphNode("a")], [])
    with pytest.raises(ConfigurationError, match="role"):
        GraphNode("a", role="hidden")
    with pytest.raises(UnknownVariableError):
        ModelGraph([GraphNode("a")], []).d_separated("a", "q")


def test_draw_makes_a_figure_with_every_node():
    g = ModelGraph(
        [
            GraphNode("pi", "parameter", label="π"),
            GraphNode("z", "latent", discrete=True),
            GraphNode("x", "observed"),
            GraphNode("f", "deterministic"),
        ],
        [("pi", "z"), ("z", "x"), ("x", "f")],
        plates={"data": (["z", "x", "f"], "N")},
        title="t",
    )
    ax = g.draw()
    texts = {t.get_text() for t in ax.texts}
    assert {"π", "z", "x", "f", "N"} <= texts
    assert ax.get_title() == "t"
    matplotlib.pyplot.close(ax.figure)


def test_every_pair_of_a_chain():
    g = ModelGraph([GraphNode(n) for n in "abcd"], list(itertools.pairwise("abcd")))
    assert not g.d_separated("a", "d")
    assert g.d_separated("a", "d", ["b"]) and g.d_separated("a", "d", ["c"])


# ---------------------------------------------------------------------- positions, arcs
def _chain(n: int, edges: list[tuple[int, int]], spacing: float = 1.0) -> ModelGraph:
    return ModelGraph(
        [GraphNode(f"x_{t}", "observed", discrete=True) for t in range(n)],
        [(f"x_{a}", f"x_{b}") for a, b in edges],
        plates={"data": ([f"x_{t}" for t in range(n)], "N")},
        positions={f"x_{t}": (spacing * t, 0.0) for t in range(n)},
    )


def _arrows(ax) -> list[FancyArrowPatch]:
    return [p for p in ax.patches if isinstance(p, FancyArrowPatch)]


def _distance_to_path(point: tuple[float, float], arrow: FancyArrowPatch) -> float:
    """The least distance from ``point`` to the drawn arrow: to every segment of its path
    in data coordinates (curves flattened into segments)."""
    p = np.asarray(point, dtype=float)
    best = np.inf
    for polyline in arrow.get_path().to_polygons(closed_only=False):
        a, b = polyline[:-1], polyline[1:]
        d = b - a
        s = np.clip(((p - a) * d).sum(1) / np.maximum((d * d).sum(1), 1e-18), 0, 1)
        best = min(best, float(np.hypot(*(a + s[:, None] * d - p).T).min()))
    return best


@pytest.mark.parametrize(
    "positions, error, match",
    [
        ({"a": (0, 0)}, ConfigurationError, r"missing \['b'\]"),
        ({"a": (0, 0), "b": (1, 0), "q": (2, 0)}, UnknownVariableError, "'q'"),
        ({"a": (0, 0), "b": (float("nan"), 0)}, ConfigurationError, "'b'.*nan"),
        ({"a": (0, float("inf")), "b": (1, 0)}, ConfigurationError, "'a'.*inf"),
        ({"a": (0, 0), "b": ("1", 0)}, ConfigurationError, "'b'"),
        ({"a": (0, 0), "b": (True, 0)}, ConfigurationError, "'b'"),
        ({"a": (0, 0), "b": (1, 0, 2)}, ConfigurationError, "'b'"),
        ({"a": (0, 0), "b": 1.0}, ConfigurationError, "'b'"),
        ({"a": (0, 0), "b": (1j, 0)}, ConfigurationError, "'b'"),
        ({"a": (0, 0), "b": (0.0, 0.0)}, ConfigurationError, "'a' and 'b' share"),
        ([(0, 0), (1, 0)], ConfigurationError, "map node names"),
    ],
)
def test_positions_are_validated(positions, error, match):
    with pytest.raises(error, match=match):
        ModelGraph([GraphNode("a"), GraphNode("b")], [("a", "b")], positions=positions)


@settings(max_examples=60, deadline=None)
@given(
    bad=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not np.isfinite(v)),
        st.text(max_size=3),
        st.booleans(),
        st.none(),
        st.complex_numbers(allow_nan=False).filter(lambda v: v.imag != 0),
        st.lists(st.floats(-5, 5), max_size=4).filter(lambda v: len(v) != 2),
    ),
    as_x=st.booleans(),
    which=st.sampled_from(["a", "b", "c"]),
)
def test_a_bad_position_names_its_node(bad, as_x, which):
    positions = {"a": (0.0, 0.0), "b": (1.0, 0.0), "c": (2.0, 0.0)}
    if isinstance(bad, list):
        positions[which] = bad
    else:
        positions[which] = (bad, 5.0) if as_x else (5.0, bad)
    with pytest.raises(ConfigurationError, match=f"node '{which}'"):
        ModelGraph([GraphNode(n) for n in "abc"], [("a", "b")], positions=positions)


def test_positions_are_kept_as_floats_and_used_by_the_figure():
    g = ModelGraph(
        [GraphNode("a"), GraphNode("b", "observed")],
        [("a", "b")],
        positions={"a": (np.int64(3), 2), "b": [5, -1.5]},
    )
    assert g.positions == {"a": (3.0, 2.0), "b": (5.0, -1.5)}
    assert all(type(v) is float for p in g.positions.values() for v in p)
    ax = g.draw()
    centres = {t.get_text(): t.get_position() for t in ax.texts}
    assert centres["a"] == (3.0, 2.0) and centres["b"] == (5.0, -1.5)
    (arrow,) = _arrows(ax)
    assert arrow.get_connectionstyle().rad == 0  # nothing in between: straight
    matplotlib.pyplot.close(ax.figure)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_markov_chain_graph_runs_left_to_right_with_skip_edges_as_arcs(order):
    steps = order + 3
    g = MarkovChain(order=order).graph(steps)
    assert [g.positions[f"x_{t}"] for t in range(1, steps + 1)] == [
        (float(t), 0.0) for t in range(1, steps + 1)
    ]
    ax = MarkovChain(order=order).plot_graph()
    drawn = MarkovChain(order=order).graph()
    ax.figure.canvas.draw()
    arrows = _arrows(ax)
    assert len(arrows) == len(drawn.edges)
    routes = [(p, c) for c, ps in drawn.parent_map().items() for p in ps]
    for (parent, child), arrow in zip(routes, arrows, strict=True):
        gap = int(child[2:]) - int(parent[2:])
        rad = arrow.get_connectionstyle().rad
        assert (rad != 0) == (gap > 1), (parent, child, rad)
        for skipped in range(int(parent[2:]) + 1, int(child[2:])):
            # the arc clears the square of every node it skips (half-diagonal 0.24 * sqrt 2)
            centre = drawn.positions[f"x_{skipped}"]
            assert _distance_to_path(centre, arrow) > 0.24 * np.sqrt(2)
    texts = {t.get_text() for t in ax.texts}
    assert {n.label for n in drawn.nodes} | {"N"} <= texts
    matplotlib.pyplot.close(ax.figure)


@pytest.mark.parametrize("emission", ["categorical", "gaussian"])
def test_hmm_graph_puts_the_chain_above_the_emissions(emission):
    model = HiddenMarkovModel(2, emission, n_symbols=3)
    g = model.graph(5)
    for t in range(1, 6):
        assert g.positions[f"z_{t}"] == (float(t), 1.0) and g.positions[f"x_{t}"] == (t, 0.0)
    ax = model.plot_graph()
    arrows = _arrows(ax)
    assert len(arrows) == len(model.graph().edges)
    assert all(a.get_connectionstyle().rad == 0 for a in arrows)  # nothing to go around
    texts = {t.get_text() for t in ax.texts}
    assert {n.label for n in model.graph().nodes} | {"N"} <= texts
    matplotlib.pyplot.close(ax.figure)


def test_layered_layout_bends_an_edge_around_a_node_in_its_way():
    g = ModelGraph([GraphNode(n) for n in "abc"], [("a", "b"), ("b", "c"), ("a", "c")])
    ax = g.draw()
    ax.figure.canvas.draw()
    ab, bc, ac = _arrows(ax)  # child by child, in the edges' order: b's parents, c's
    assert ab.get_connectionstyle().rad == 0 and bc.get_connectionstyle().rad == 0
    assert ac.get_connectionstyle().rad != 0
    centre_b = next(t.get_position() for t in ax.texts if t.get_text() == "b")
    assert _distance_to_path(centre_b, ac) > 0.24
    matplotlib.pyplot.close(ax.figure)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 7),
    keep=st.lists(st.booleans(), min_size=21, max_size=21),
    spacing=st.floats(0.8, 2.5),
)
def test_no_edge_of_a_chain_passes_through_a_node(n, keep, spacing):
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    g = _chain(n, [pair for pair, k in zip(pairs, keep) if k], spacing)
    ax = g.draw()
    ax.figure.canvas.draw()
    routes = [(p, c) for c, ps in g.parent_map().items() for p in ps]
    for (parent, child), arrow in zip(routes, _arrows(ax), strict=True):
        for other, centre in g.positions.items():
            if other not in (parent, child):
                assert _distance_to_path(centre, arrow) > 0.24 * np.sqrt(2), (parent, child)
    matplotlib.pyplot.close(ax.figure)
