"""ModelGraph: structure, d-separation against numeric independence, the figure."""

from __future__ import annotations

import itertools

import matplotlib
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrobn.errors import ConfigurationError, CycleError, UnknownVariableError
from pyrobn.graph import GraphNode, ModelGraph

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
