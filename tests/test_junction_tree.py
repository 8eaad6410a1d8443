"""The junction tree: a valid tree of maximal cliques, and every marginal by brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrobn.errors import ConfigurationError
from pyrobn.infer.junction_tree import JunctionTree
from tests.common import assert_close, assert_no_step_twice


@st.composite
def factor_graphs(draw, max_vars: int = 7):
    """Random positive (some zero) factors over 1..max_vars variables, every variable in
    some factor; factors need not be normalised."""
    n = draw(st.integers(1, max_vars))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    cards = [int(rng.integers(2, 4)) for _ in range(n)]
    scopes = []
    for _ in range(int(rng.integers(1, 2 * n + 1))):
        k = int(rng.integers(1, min(3, n) + 1))
        scopes.append(tuple(int(v) for v in rng.permutation(n)[:k]))
    scopes += [(v,) for v in range(n) if not any(v in s for s in scopes)]
    tables = []
    for s in scopes:
        t = rng.gamma(1.0, size=[cards[v] for v in s])
        t[rng.random(t.shape) < 0.1] = 0.0
        tables.append(t)
    return cards, scopes, tables, rng


def brute_joint(cards, scopes, tables) -> np.ndarray:
    operands = []
    for s, t in zip(scopes, tables):
        operands += [t, list(s)]
    return np.einsum(*operands, list(range(len(cards))))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(factor_graphs())
def test_the_tree_is_a_junction_tree(graph):
    cards, scopes, _, _ = graph
    jt = JunctionTree(cards, scopes)
    sets = [set(c) for c in jt.cliques]
    for i, a in enumerate(sets):  # maximal
        assert not any(a <= b for j, b in enumerate(sets) if i != j)
    for c, tables in enumerate(jt.assigned):  # each table in a clique holding its scope
        assert all(set(scopes[t]) <= sets[c] for t in tables)
    assert sorted(t for ts in jt.assigned for t in ts) == list(range(len(scopes)))
    # a forest: following parents always ends at a root
    for c in range(len(sets)):
        seen = set()
        while c >= 0:
            assert c not in seen
            seen.add(c)
            c = jt.parent[c]
    # running intersection: the cliques holding a variable form a connected subtree
    for v in range(len(cards)):
        holding = {c for c, s in enumerate(sets) if v in s}
        tops = [c for c in holding if jt.parent[c] not in holding]
        assert len(tops) == 1, (v, holding, jt.parent)
    assert jt.width == max(len(c) for c in jt.cliques) - 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(factor_graphs(), st.data())
def test_a_tree_built_for_observed_variables_is_a_junction_tree_of_the_others(graph, data):
    """Triangulated without the observed variables: cliques over the free ones only,
    each table in a clique holding its free variables, running intersection."""
    cards, scopes, _, rng = graph
    n = len(cards)
    observed = sorted(int(v) for v in rng.permutation(n)[: data.draw(st.integers(0, n - 1))])
    jt = JunctionTree(cards, scopes, observed=observed)
    free = [v for v in range(n) if v not in observed]
    assert jt.free == tuple(free)
    assert {v for c in jt.cliques for v in c} == set(free)
    for c, tables in enumerate(jt.assigned):
        assert all({v for v in scopes[t] if v in free} <= set(jt.cliques[c]) for t in tables)
    assert sorted(t for ts in jt.assigned for t in ts) == list(range(len(scopes)))
    for v in free:
        holding = {c for c, clique in enumerate(jt.cliques) if v in clique}
        tops = [c for c in holding if jt.parent[c] not in holding]
        assert len(tops) == 1


def test_a_tree_needs_a_free_variable_and_its_own_observed_variables():
    with pytest.raises(ConfigurationError, match="unobserved"):
        JunctionTree([2, 2], [(0,), (0, 1)], observed=[0, 1])
    jt = JunctionTree([2, 2], [(0,), (0, 1)], observed=[1])
    jt.refresh(np.array([0.3, 0.7, 0.9, 0.1, 0.2, 0.8]), np.array([0, 2, 6]), key=0)
    with pytest.raises(ConfigurationError, match=r"observed variables \(1,\)"):
        jt.marginals([0], np.zeros((1, 1), dtype=np.int64))
    with pytest.raises(ConfigurationError, match="without observed"):
        jt.calibrate_torch([], [1], np.zeros((1, 1), dtype=np.int64))


def test_a_product_asked_for_again_is_read_or_summed_further():
    """PlanBuilder.step: the same product onto the same variables is the earlier slot;
    onto fewer of them, one step over that smaller table; the plan equals einsum."""
    from pyrobn.infer.enumeration_compiled import _SLOT, _TABLE, PlanBuilder, run

    cards, scopes = [2, 3, 4], [(0, 1), (1, 2)]
    rng = np.random.default_rng(0)
    tables = [rng.random((2, 3)), rng.random((3, 4))]
    builder = PlanBuilder(cards, scopes, ())
    inputs = [(_TABLE, 0), (_TABLE, 1)]
    first = builder.step(inputs, [0, 1, 2], [0, 1])
    assert builder.step(inputs, [1, 0, 2], [0, 1]) == first  # the walk's order aside
    again = builder.step(inputs, [0, 1, 2], [1])
    plan = builder.finish([first, again], "sum", reuse=True)
    assert len(plan.starts) == 2
    encoded = plan.program.tolist()[plan.starts[1] :]
    assert encoded[0] == 1 and encoded[3 + 3 * 2 : 3 + 3 * 2 + 2] == [_SLOT, first]
    buffer = np.concatenate([tables[0].ravel(), tables[1].ravel(), np.empty(plan.workspace)])
    offsets = np.array([0, 6, 18], dtype=np.int64)
    results, log_norms, _ = run(plan, buffer, offsets, np.zeros((1, 0), dtype=np.int64))
    joint = np.einsum("ab,bc->ab", *tables)
    assert_close(results[0, :6], (joint / joint.sum()).ravel(), rtol=1e-12, atol=0)
    assert_close(results[0, 6:], joint.sum(0) / joint.sum(), rtol=1e-12, atol=0)
    assert log_norms[0, 0] == pytest.approx(np.log(joint.sum()), rel=1e-12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    factor_graphs(),
    st.data(),
    st.sampled_from([4096, 0]),
    st.sampled_from([16, 1]),
    st.booleans(),
)
def test_every_marginal_and_the_normaliser_equal_brute_force(
    graph, data, lazy_above, fanout, specialised
):
    """Both calibrations: walking each clique whole (Hugin outwards) and, with the
    threshold at 0, eliminating inside every clique (lazy, Shafer-Shenoy); with a
    fan-out limit of 1, both kinds of clique in one tree; and the tree built for the
    observed variables (tables read at the evidence) as well as the general one
    (evidence as indicators)."""
    from pyrobn.infer import junction_tree

    cards, scopes, tables, rng = graph
    n = len(cards)
    joint = brute_joint(cards, scopes, tables)
    observed = sorted(int(v) for v in rng.permutation(n)[: data.draw(st.integers(0, n - 1))])
    saved = junction_tree.LAZY_CLIQUE, junction_tree.LAZY_FANOUT
    junction_tree.LAZY_CLIQUE, junction_tree.LAZY_FANOUT = lazy_above, fanout
    try:
        jt = JunctionTree(cards, scopes, observed=observed if specialised else ())
    finally:
        junction_tree.LAZY_CLIQUE, junction_tree.LAZY_FANOUT = saved
    homes = [jt.home.count(c) for c in range(len(jt.cliques))]
    sends = [len(jt.children[c]) + homes[c] for c in range(len(jt.cliques))]
    assert jt.lazy == [lazy_above == 0 and k <= fanout for k in sends]
    assert_no_step_twice(jt.plan())
    flat = np.concatenate([t.ravel() for t in tables])
    offsets = np.concatenate([[0], np.cumsum([t.size for t in tables])]).astype(np.int64)
    buffer = np.concatenate([flat, np.empty(jt.potential_plan().workspace)])
    jt.refresh(buffer, offsets, key=1)
    rows = np.array([[rng.integers(cards[v]) for v in observed] for _ in range(3)], dtype=np.int64)
    marginals, log_z = jt.marginals(observed, rows.reshape(3, len(observed)))
    for b in range(3):
        weighted = joint.copy()
        for v, s in zip(observed, rows[b]):
            mask = np.zeros(cards[v])
            mask[s] = 1
            weighted = weighted * mask.reshape([cards[v] if u == v else 1 for u in range(n)])
        total = weighted.sum()
        if total == 0:
            assert np.isneginf(log_z[b])
            continue
        assert log_z[b] == pytest.approx(np.log(total), rel=1e-9, abs=1e-12)
        start = 0
        for v in jt.free:
            expected = weighted.sum(tuple(u for u in range(n) if u != v)) / total
            assert_close(marginals[b, start : start + cards[v]], expected, rtol=1e-9, atol=1e-12)
            start += cards[v]


@st.composite
def bayesian_networks(draw, max_vars: int = 7):
    """Random Bayesian networks: each variable's table p(x | parents) over up to three
    earlier variables, rows normalised, some entries zero; scopes (parents..., x)."""
    n = draw(st.integers(2, max_vars))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    cards = [int(rng.integers(2, 4)) for _ in range(n)]
    scopes, tables = [], []
    for v in range(n):
        parents = sorted(int(u) for u in rng.permutation(v)[: int(rng.integers(0, min(v, 3) + 1))])
        table = rng.gamma(1.0, size=[cards[u] for u in parents] + [cards[v]])
        table[rng.random(table.shape) < 0.15] = 0.0
        table[..., 0] += table.sum(-1) == 0  # no row all zero
        scopes.append((*parents, v))
        tables.append(table / table.sum(-1, keepdims=True))
    return cards, scopes, tables, rng


def restricted(joint: np.ndarray, cards, observed, row) -> np.ndarray:
    for v, s in zip(observed, row):
        mask = np.zeros(cards[v])
        mask[s] = 1
        joint = joint * mask.reshape([cards[v] if u == v else 1 for u in range(len(cards))])
    return joint


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bayesian_networks(), st.data(), st.sampled_from([4096, 0]))
def test_quiet_messages_are_one_and_the_calibration_skipping_them_is_exact(graph, data, lazy):
    """With conditional tables and observed variables, every message the tree marks
    quiet is 1 (brute force: the tables on the sender's side of the edge, read at the
    evidence, summed to the separator), and the calibration that skips them gives every
    marginal and p(e) exactly, in cliques walked whole or eliminated lazily."""
    from pyrobn.infer import junction_tree

    cards, scopes, tables, rng = graph
    n = len(cards)
    observed = sorted(int(v) for v in rng.permutation(n)[: data.draw(st.integers(1, n - 1))])
    saved = junction_tree.LAZY_CLIQUE
    junction_tree.LAZY_CLIQUE = lazy
    try:
        jt = JunctionTree(cards, scopes, observed=observed, conditionals=True)
    finally:
        junction_tree.LAZY_CLIQUE = saved
    assert jt.quiet == JunctionTree(cards, scopes, observed=observed, conditionals=True).quiet
    assert not JunctionTree(cards, scopes, observed=observed).quiet  # only for conditionals
    row = [int(rng.integers(cards[v])) for v in observed]
    neighbours = [set() for _ in jt.cliques]
    for c, p in enumerate(jt.parent):
        if p >= 0:
            neighbours[c].add(p)
            neighbours[p].add(c)
    for c, m in jt.quiet:
        assert m in neighbours[c]
        side, stack = {c}, [c]
        while stack:
            for k in neighbours[stack.pop()] - side - {m}:
                side.add(k)
                stack.append(k)
        held = [t for k in side for t in jt.assigned[k]]
        sep = sorted(set(jt.cliques[c]) & set(jt.cliques[m]))
        operands = [np.ones([cards[v] for v in sep]), sep]
        for t in held:
            operands += [tables[t], list(scopes[t])]
        for v, s in zip(observed, row):
            operands += [np.eye(cards[v])[s], [v]]
        assert_close(np.einsum(*operands, sep), np.ones([cards[v] for v in sep]), rtol=1e-12)
    flat = np.concatenate([t.ravel() for t in tables])
    offsets = np.concatenate([[0], np.cumsum([t.size for t in tables])]).astype(np.int64)
    buffer = np.concatenate([flat, np.empty(jt.potential_plan().workspace)])
    jt.refresh(buffer, offsets, key=1)
    marginals, log_z = jt.marginals(observed, np.array([row], dtype=np.int64))
    weighted = restricted(brute_joint(cards, scopes, tables), cards, observed, row)
    total = weighted.sum()
    if total == 0:
        assert np.isneginf(log_z[0])
        return
    assert log_z[0] == pytest.approx(np.log(total), rel=1e-9, abs=1e-12)
    start = 0
    for v in jt.free:
        expected = weighted.sum(tuple(u for u in range(n) if u != v)) / total
        assert_close(marginals[0, start : start + cards[v]], expected, rtol=1e-9, atol=1e-12)
        start += cards[v]


def test_subtrees_without_evidence_send_nothing_and_the_root_moves_to_the_evidence():
    """A chain x0 → x1 → ... → x5 given x1: each message from the far end of x2..x5
    is 1 (a conditional distribution summed), so that part is rooted at x2's clique,
    next to the evidence, and its inward pass forms no message at all; without
    ``conditionals`` every message is formed."""
    cards = [2, 3, 2, 3, 2, 2]
    scopes = [(0,), *((v - 1, v) for v in range(1, 6))]
    jt = JunctionTree(cards, scopes, observed=[1], conditionals=True)
    inward = [(c, p) for c, p in enumerate(jt.parent) if p >= 0]
    assert len(inward) == 2 and set(inward) <= jt.quiet
    roots = sorted(jt.cliques[c] for c, p in enumerate(jt.parent) if p < 0)
    assert roots == [(0,), (2, 3)]  # x0 is cut off from the rest by the evidence
    assert len(jt.plan().starts) < len(JunctionTree(cards, scopes, observed=[1]).plan().starts)


def test_potentials_follow_the_tables():
    """refresh recomputes the clique potentials when the tables' key changes."""
    cards, scopes = [2, 2], [(0,), (0, 1)]
    jt = JunctionTree(cards, scopes)
    offsets = np.array([0, 2, 6], dtype=np.int64)
    room = np.empty(jt.potential_plan().workspace)
    first = np.concatenate([[0.3, 0.7], [0.9, 0.1, 0.2, 0.8], room])
    jt.refresh(first, offsets, key="a")
    p1, _ = jt.marginals([], np.zeros((1, 0), dtype=np.int64))
    second = np.concatenate([[0.5, 0.5], [0.9, 0.1, 0.2, 0.8], room])
    jt.refresh(second, offsets, key="a")  # same key: kept
    assert_close(jt.marginals([], np.zeros((1, 0), dtype=np.int64))[0], p1, rtol=0, atol=0)
    jt.refresh(second, offsets, key="b")
    p2, _ = jt.marginals([], np.zeros((1, 0), dtype=np.int64))
    assert_close(p2[0], [0.5, 0.5, 0.55, 0.45], rtol=1e-12, atol=1e-15)
