"""The network under the estimator contract: fit/fit_result_, concentration, save/load
through the base, predict_proba, and its graph (d-separation checked against the joint)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrobn import DiscreteBayesianNetwork, student_network
from pyrobn.datasets import student_samples
from pyrobn.errors import CheckpointError, ConfigurationError, ShapeError, UnknownVariableError
from pyrobn.graph import ModelGraph
from pyrobn.infer.result import FitResult
from tests.bayesnet_cases import brute_joint, networks_with_zeros
from tests.common import assert_close


def generic_networks(max_nodes: int = 6) -> st.SearchStrategy:
    """Random DAGs with generic tables (Dirichlet draws, no symmetry or zeros)."""
    return networks_with_zeros(max_nodes, zeros=0.0)


def dependence(joint: np.ndarray, a: int, b: int, given: tuple[int, ...]) -> float:
    """max |p(a, b | c) - p(a | c) p(b | c)| over the states of a, b and c."""
    keep = (a, b, *given)
    p = joint.sum(tuple(i for i in range(joint.ndim) if i not in keep))
    p = np.moveaxis(p, [sorted(keep).index(i) for i in keep], range(len(keep)))
    pc = p.sum((0, 1), keepdims=True)
    pa = p.sum(1, keepdims=True) / pc
    pb = p.sum(0, keepdims=True) / pc
    return float(np.abs(p / pc - pa * pb).max())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generic_networks())
def test_d_separation_is_exactly_the_independence_of_the_joint(case):
    """Implied independences hold to 1e-12 in the joint table; for generic tables every
    pair the graph does not separate is measurably dependent."""
    net, _ = case
    joint = brute_joint(net)
    names = list(net.variables)
    for a, b in itertools.combinations(range(len(names)), 2):
        rest = [i for i in range(len(names)) if i not in (a, b)]
        for cond in [(), *((c,) for c in rest)]:
            gap = dependence(joint, a, b, cond)
            if net.is_independent(names[a], names[b], [names[c] for c in cond]):
                assert gap < 1e-12
            else:
                assert gap > 1e-6, (names[a], names[b], cond)
    for x, others, parents in net.independences():  # the local Markov statements
        xi = names.index(x)
        for o in others:
            assert dependence(joint, xi, names.index(o), tuple(map(names.index, parents))) < 1e-12
    for x in names:  # given its Markov blanket, x is independent of everything else
        blanket = net.markov_blanket(x)
        outside = [n for n in names if n != x and n not in blanket]
        if outside:
            assert net.is_independent(x, outside, blanket)


def set_dependence(joint: np.ndarray, a: tuple, b: tuple, given: tuple) -> float:
    """max |p(A, B | C) - p(A | C) p(B | C)| over the joint states of the sets A, B, C."""
    keep = (*a, *b, *given)
    p = joint.sum(tuple(i for i in range(joint.ndim) if i not in keep))
    p = np.transpose(p, [sorted(keep).index(i) for i in keep])
    size = [int(np.prod([joint.shape[i] for i in s], dtype=int)) for s in (a, b, given)]
    p = p.reshape(size)
    pc = p.sum((0, 1), keepdims=True)
    pa = p.sum(1, keepdims=True) / pc
    pb = p.sum(0, keepdims=True) / pc
    return float(np.abs(p / pc - pa * pb).max())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generic_networks(), st.data())
def test_set_independences_blankets_and_pairs_hold_in_the_joint(case, data):
    """Sets of variables: an implied A ⟂ B | C holds to 1e-12 in the joint table, a
    non-implied one is measurably violated (generic tables); each Markov blanket screens
    its node off from all the rest, and every pair of independent_pairs(2) holds."""
    net, _ = case
    joint = brute_joint(net)
    names = list(net.variables)
    n = len(names)
    for _ in range(4):
        role = data.draw(st.lists(st.sampled_from("abcn"), min_size=n, max_size=n))
        if "a" not in role or "b" not in role:
            continue
        a, b, c = (tuple(i for i in range(n) if role[i] == r) for r in "abc")
        gap = set_dependence(joint, a, b, c)
        pick = [names[i] for i in a], [names[i] for i in b], [names[i] for i in c]
        if net.is_independent(*pick):
            assert gap < 1e-12, (pick, gap)
        else:
            assert gap > 1e-9, (pick, gap)
    for x in names:
        blanket = net.markov_blanket(x)
        outside = tuple(i for i, m in enumerate(names) if m != x and m not in blanket)
        if outside:
            gap = set_dependence(
                joint, (names.index(x),), outside, tuple(map(names.index, blanket))
            )
            assert gap < 1e-12, (x, blanket, gap)
    for u, v, cond in net.independent_pairs(max_given=2):
        gap = set_dependence(
            joint, (names.index(u),), (names.index(v),), tuple(map(names.index, cond))
        )
        assert gap < 1e-12, (u, v, cond, gap)


def test_independence_arguments_are_checked():
    net = student_network()
    assert net.is_independent("x2", "x3", given=None) is net.is_independent("x2", "x3")
    assert net.is_independent({"x2"}, ("x3",), given=["x1"])
    assert not net.is_independent(["x1", "x2"], "x2")  # a shared variable: dependent
    with pytest.raises(ConfigurationError, match="a names no variable"):
        net.is_independent([], "x1")
    with pytest.raises(ConfigurationError, match="b must be a variable name"):
        net.is_independent("x1", 3)
    with pytest.raises(ConfigurationError, match="given must be a variable name"):
        net.is_independent("x1", "x2", given=b"x3")
    with pytest.raises(ConfigurationError, match="a must be a variable name"):
        net.is_independent([["x1"]], "x2")
    with pytest.raises(UnknownVariableError, match="x9"):
        net.markov_blanket("x9")


def test_concentration_names_only_nodes_and_takes_no_booleans():
    data = student_samples(200, seed=1)
    net = student_network()
    with pytest.raises(UnknownVariableError, match="concentration is given for 'x9'"):
        net.fit(data, concentration={"x9": 2.0})
    with pytest.warns(DeprecationWarning), pytest.raises(UnknownVariableError, match="'x9'"):
        net.fit(data, prior={"x9": 1.0})
    for bad in (True, {"x1": False}, np.array([True, True])):
        with pytest.raises(ConfigurationError, match="boolean"):
            net.fit(data, concentration=bad)
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigurationError, match="boolean"):
        net.fit(data, prior=True)
    # per node: only x1 gets pseudo-counts, the other tables stay the MLE
    mle = student_network().fit(data)
    net.fit(data, concentration={"x1": 3.0})
    counts = torch.bincount(torch.as_tensor(data["x1"]), minlength=2).double()
    assert_close(net.table("x1"), (counts + 2) / (counts.sum() + 4), rtol=1e-12, atol=0)
    for name in ("x2", "x3", "x4"):
        assert torch.equal(net.table(name), mle.table(name))


def test_the_student_network_graph_independences_and_parameters():
    net = student_network()
    graph = net.graph()
    assert isinstance(graph, ModelGraph)
    assert set(graph.edges) == {("x1", "x2"), ("x1", "x3"), ("x2", "x4"), ("x3", "x4")}
    # the tutorial's statements (notes 2.1.2)
    assert net.is_independent("x2", "x3", given="x1")
    assert net.is_independent("x1", "x4", given=["x2", "x3"])
    assert not net.is_independent("x2", "x3")
    assert not net.is_independent("x2", "x3", given=["x1", "x4"])  # explaining away
    assert net.markov_blanket("x1") == ("x2", "x3")
    assert ("x4", ("x1",), ("x2", "x3")) in net.independences()
    # (K - 1) per row: 1 + 2 + 2 + 4 = 9 free parameters against 2^4 - 1 = 15
    assert net.n_parameters == 1 + 2 + 2 + 4
    assert net.n_parameters_joint == 15
    assert sum(t[..., :-1].numel() for t in net._tables()) == net.n_parameters
    with pytest.raises(UnknownVariableError, match="x9"):
        net.is_independent("x1", "x9")
    with pytest.raises(ConfigurationError, match="both tested and given"):
        net.is_independent("x1", "x2", given="x1")


def test_fit_returns_the_model_with_a_fit_result_and_keeps_the_callers_rng():
    data = student_samples(300, seed=0, hidden="x1")
    net = student_network()
    legacy = np.random.get_state
    before = (torch.get_rng_state(), random.getstate(), legacy()[1].copy())
    assert net.fit(data, restarts=2, max_iter=20, seed=5) is net
    after = (torch.get_rng_state(), random.getstate(), legacy()[1].copy())
    assert torch.equal(before[0], after[0]) and before[1] == after[1]
    assert np.array_equal(before[2], after[2])
    result = net.fit_result_
    assert isinstance(result, FitResult) and result.method == "em"
    assert len(result.restarts) == 2 and result.wall_time > 0
    assert result.final_objective == pytest.approx(float(net.log_prob(data).sum()), rel=1e-12)
    again = student_network().fit(data, restarts=2, max_iter=20, seed=5)
    for name in net.variables:  # the seed decides the restarts
        assert torch.equal(again.table(name), net.table(name))
    with pytest.raises(ConfigurationError, match="concentration for 'x1'"):
        net.fit(data, concentration=0.5)
    with pytest.raises(ShapeError, match="broadcast"):
        net.fit(data, concentration={"x4": torch.ones(3)})
    with pytest.raises(ConfigurationError, match="restarts"):
        net.fit(data, restarts=0)


def test_predict_proba_is_the_posterior_marginals():
    net = student_network()
    probs = net.predict_proba({"x4": 1})
    assert set(probs) == {"x1", "x2", "x3"}
    assert_close(probs["x1"], net.query("x1", {"x4": 1}), rtol=0, atol=1e-15)
    assert net.predict({"x4": 1}) == net.mpe({"x4": 1})


def test_save_and_load_go_through_the_base_and_validate_the_tables(tmp_path):
    net = student_network(named_states=True)
    net.fit(student_samples(400, seed=3))
    net.save(tmp_path / "net.pt")
    loaded = DiscreteBayesianNetwork.load(tmp_path / "net.pt")
    for n in net.variables:
        assert torch.equal(loaded.table(n), net.table(n))
    saved = torch.load(tmp_path / "net.pt", weights_only=True)
    saved["state_dict"]["table_0"] = torch.tensor([2.0, 3.0], dtype=torch.float64)
    torch.save(saved, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"p\(x1\).*sums to 5"):
        DiscreteBayesianNetwork.load(tmp_path / "bad.pt")
    saved["state_dict"]["table_0"] = torch.tensor([1.5, -0.5], dtype=torch.float64)
    torch.save(saved, tmp_path / "neg.pt")
    with pytest.raises(CheckpointError, match="negative"):
        DiscreteBayesianNetwork.load(tmp_path / "neg.pt")
