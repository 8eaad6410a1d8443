"""The bnlearn repository's networks (the copies pgmpy ships) answered exactly.

Random queries (a random target, 0-4 evidence variables whose values come from a forward
sample, so the evidence is possible) against pgmpy's VariableElimination on the same
tables, to 1e-9; all posteriors against single queries; the joint MPE against pyAgrum;
the memory budget. The benchmark (bench/bayesnet_networks.py) covers every network.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch

from pyrobn.errors import SizeLimitError, ZeroProbabilityEvidence
from pyrobn.models.bayesnet import read_network

EXAMPLES = os.path.join(os.path.dirname(__import__("pgmpy").__file__), "utils", "example_models")
#: small and medium networks (the large ones are in the benchmark)
NETWORKS = ["asia", "cancer", "earthquake", "sachs", "survey", "alarm", "child", "insurance"]
MORE = ["hepar2", "win95pts", "hailfinder", "water"]


def load(name: str):
    return read_network(os.path.join(EXAMPLES, f"{name}.bif.gz"), device="cpu")


def random_queries(net, n: int, seed: int):
    """(target, evidence) pairs with possible evidence (states from a forward sample)."""
    rng = np.random.default_rng(seed)
    sample = net.sample(n, seed=seed)
    out = []
    for k in range(n):
        order = rng.permutation(len(net.variables))
        evidence = {
            net.variables[i]: int(sample[net.variables[i]][k])
            for i in order[1 : 1 + int(rng.integers(0, 5))]
        }
        out.append((net.variables[order[0]], evidence))
    return out


@pytest.mark.parametrize("name", NETWORKS + MORE)
def test_random_queries_equal_pgmpy_variable_elimination(name):
    from pgmpy.inference import VariableElimination

    logging.getLogger("pgmpy").setLevel(logging.ERROR)
    net = load(name)
    ve = VariableElimination(net.to_pgmpy())  # the same tables
    n = 12 if name in MORE else 20
    for target, evidence in random_queries(net, n, seed=len(name)):
        named = {v: net.state_names(v)[s] for v, s in evidence.items()}
        expected = ve.query([target], evidence=named, show_progress=False).values
        got = net.query(target, evidence)
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["alarm", "insurance", "hepar2"])
def test_all_posteriors_equal_single_queries_and_batches_equal_rows(name):
    net = load(name)
    queries = random_queries(net, 4, seed=1)
    for _, evidence in queries:
        posteriors = net.marginals(evidence)
        assert set(posteriors) == set(net.variables) - set(evidence)
        for v, p in posteriors.items():
            torch.testing.assert_close(p, net.query(v, evidence), rtol=0, atol=1e-12)
    # a batch of rows with one evidence pattern, through the compiled kernels (a few rows)
    # and through torch's vectorised route (many rows)
    from pyrobn.models.bayesnet.queries import BATCH_VECTORISED

    many = net.sample(BATCH_VECTORISED + 2, seed=7)
    wide = {v: many[v] for v in net.variables[:3]}
    answers = net.query(net.variables[-1], wide)
    for b in (0, BATCH_VECTORISED // 2, BATCH_VECTORISED + 1):
        row = {v: int(c[b]) for v, c in wide.items()}
        torch.testing.assert_close(
            answers[b], net.query(net.variables[-1], row), rtol=0, atol=1e-13
        )
    sample = net.sample(6, seed=2)
    observed = list(net.variables[:3])
    batch = {v: sample[v] for v in observed}
    target = net.variables[-1]
    batched_query = net.query(target, batch)
    batched_all = net.marginals(batch)
    for b in range(6):
        row = {v: int(sample[v][b]) for v in observed}
        torch.testing.assert_close(batched_query[b], net.query(target, row), rtol=0, atol=1e-14)
        torch.testing.assert_close(
            batched_all[target][b], net.marginals(row)[target], rtol=0, atol=1e-14
        )


def log_joint(net, assignment) -> float:
    return sum(
        float(net.table(v)[(*(assignment[p] for p in net.parents(v)), assignment[v])].log())
        for v in net.variables
    )


@pytest.mark.parametrize("name", ["alarm", "insurance", "child", "hepar2"])
def test_joint_mpe_on_real_networks(name):
    """The compiled max-product and the torch one (another order, log space) agree; the
    value is the joint log-probability of the assignment; no change of one variable
    improves it. (pyAgrum 3.3.1's LazyPropagation.mpe() fails with 'Empty tensor' on
    these networks: the comparison with it is on asia, below, and in the benchmark.)"""
    net = load(name)
    for _, evidence in random_queries(net, 3, seed=5):
        ours, log_p = net.mpe(evidence, return_log_prob=True)
        full = {**ours, **evidence}
        assert log_p == pytest.approx(log_joint(net, full), rel=1e-12)
        for v in ours:
            for s in range(net.cardinality(v)):
                assert log_joint(net, {**full, v: s}) <= log_p + 1e-12 * abs(log_p)
        net.use_compiled = False
        torch_mpe, torch_log_p = net.mpe(evidence, return_log_prob=True)
        net.use_compiled = True
        assert torch_log_p == pytest.approx(log_p, rel=1e-12)
        assert torch_mpe == ours  # (no ties in these networks' MPEs)


def test_joint_mpe_on_asia_equals_pyagrum_and_brute_force(tmp_path):
    import gzip
    import itertools

    import pyagrum as gum

    net = load("asia")
    path = tmp_path / "asia.bif"
    with gzip.open(os.path.join(EXAMPLES, "asia.bif.gz"), "rb") as f:
        path.write_bytes(f.read())
    bn = gum.loadBN(str(path))
    for evidence in [{"xray": "yes"}, {"dysp": "yes", "asia": "no"}, {"smoke": "no"}]:
        ours, log_p = net.mpe(evidence, return_log_prob=True)
        states = {v: net.state_names(v).index(s) for v, s in evidence.items()}
        free = [v for v in net.variables if v not in states]
        best = max(
            itertools.product(*(range(net.cardinality(v)) for v in free)),
            key=lambda xs: log_joint(net, {**states, **dict(zip(free, xs))}),
        )
        assert ours == dict(zip(free, best))
        assert log_p == pytest.approx(log_joint(net, {**states, **ours}), rel=1e-12)
        ie = gum.LazyPropagation(bn)
        ie.setEvidence(evidence)
        ie.makeInference()
        theirs = ie.mpe()
        assert {v: theirs[v] for v in free} == ours


def test_the_memory_budget_is_checked_before_allocating():
    net = load("insurance")
    net.memory_budget = 2**10  # 1 KiB: insurance's tables need more
    with pytest.raises(SizeLimitError, match=r"entries.*GiB.*treewidth bound \d+.*over the"):
        net.query("PropCost", {"Age": 0, "GoodStudent": 1, "Mileage": 2})
    with pytest.raises(SizeLimitError, match=r"junction tree .*largest clique .*treewidth"):
        net.junction_tree()
    with pytest.raises(SizeLimitError, match=r"entries.*treewidth bound \d+.*over the"):
        net.marginals({})  # the tree over budget: the per-variable queries, over it too
    with pytest.raises(SizeLimitError, match="the MPE"):
        net.mpe({})
    net.use_compiled = False  # the torch route checks too (tables x batch rows)
    with pytest.raises(SizeLimitError, match="row"):
        net.query("PropCost", {"Age": torch.tensor([0, 1])})
    net.memory_budget = None
    net.use_compiled = True
    assert net.query("PropCost").shape == (4,)


def test_all_posteriors_past_the_tree_limit_are_pruned_queries(monkeypatch):
    """A junction tree over PER_VARIABLE_ENTRIES (or over the memory budget) is never
    built: each posterior is its own pruned query, with the same answers and errors."""
    import pyrobn.models.bayesnet.queries as queries

    net = load("insurance")
    monkeypatch.setattr(queries, "KERNEL_SECONDS_PER_COST", 0.0)  # the tree where it fits
    monkeypatch.setattr(queries, "KERNEL_SECONDS_PER_STEP", 0.0)
    calls: list = []
    original = net._posteriors_by_queries
    monkeypatch.setattr(
        net, "_posteriors_by_queries", lambda *a, **k: calls.append(a) or original(*a, **k)
    )
    evidence = {"Age": torch.tensor([0, 1, 2, 0]), "Mileage": 2}
    tree = net.marginals(evidence)
    assert not calls
    monkeypatch.setattr(queries, "PER_VARIABLE_ENTRIES", 0)
    net._route_cache.clear()  # the decision is cached; the limit is a module constant
    one_by_one = net.marginals(evidence)
    assert len(calls) == 1 and one_by_one.keys() == tree.keys()
    for name, table in tree.items():
        torch.testing.assert_close(one_by_one[name], table, rtol=0, atol=1e-12)
    monkeypatch.setattr(queries, "PER_VARIABLE_ENTRIES", 2**40)
    net._route_cache.clear()
    net.marginals(evidence)
    assert len(calls) == 1  # the tree again
    # a budget the tree no longer fits decides afresh (the cached decision is per budget)
    net.memory_budget = net.junction_tree().size * 8
    for name, table in net.marginals(evidence).items():
        torch.testing.assert_close(table, tree[name], rtol=0, atol=1e-12)
    assert len(calls) == 2


def test_impossible_evidence_in_a_pruned_part_is_still_an_error():
    """asia: 'either' is the deterministic OR of 'tub' and 'lung', so either=no with
    tub=yes (or lung=yes) is impossible. In both queries below the table of 'either' is
    d-separated from the target by the evidence and pruned; the pruned part must still
    be checked, and the evidence refused, on both routes."""
    net = load("asia")
    with pytest.raises(ZeroProbabilityEvidence):
        net.query("asia", {"tub": "yes", "either": "no"})
    with pytest.raises(ZeroProbabilityEvidence):
        net.query("dysp", {"lung": "yes", "either": "no", "bronc": "yes"})
    net.use_compiled = False
    with pytest.raises(ZeroProbabilityEvidence):
        net.query("dysp", {"lung": "yes", "either": "no", "bronc": "yes"})


def test_heavy_plans_run_as_einsum_contractions_with_the_same_answers(monkeypatch):
    """water's large cliques: the fused torch.einsum route (plans past HEAVY_COST) equals
    the compiled walk and pgmpy."""
    from pyrobn.models.bayesnet import queries

    net = load("water")
    cases = random_queries(net, 8, seed=3)
    routed = [net.query(t, e) for t, e in cases]
    monkeypatch.setattr(queries, "HEAVY_COST", 0.0)  # every plan through einsum
    fused = [net.query(t, e) for t, e in cases]
    monkeypatch.setattr(queries, "HEAVY_COST", float("inf"))  # every plan walked
    walked = [net.query(t, e) for t, e in cases]
    for a, b, c in zip(routed, fused, walked):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        torch.testing.assert_close(b, c, rtol=0, atol=1e-12)


def test_heavy_batches_run_in_chunks_within_the_budget(monkeypatch):
    """A batch whose rows x largest table pass VECTORISED_ENTRIES on a heavy plan runs in
    chunks (no SizeLimitError, the same rows as one at a time)."""
    from pyrobn.models.bayesnet import queries

    net = load("water")
    monkeypatch.setattr(queries, "HEAVY_COST", 0.0)
    monkeypatch.setattr(queries, "VECTORISED_ENTRIES", 64)
    sample = net.sample(5, seed=9)
    batch = {v: sample[v] for v in net.variables[:2]}
    target = net.variables[-1]
    answers = net.query(target, batch)
    assert answers.shape == (5, net.cardinality(target))
    for b in range(5):
        row = {v: int(c[b]) for v, c in batch.items()}
        torch.testing.assert_close(answers[b], net.query(target, row), rtol=0, atol=1e-13)


def test_the_cost_model_picks_the_route_once_per_observed_set(monkeypatch):
    """All posteriors by per-variable queries when the model says the calibration costs
    more (and by the calibration otherwise), decided once per set of observed
    variables; both routes give the same posteriors."""
    import pyrobn.models.bayesnet.queries as queries

    net = load("insurance")
    evidence = {"Age": 1, "Mileage": 2}
    tree = net.junction_tree(list(evidence)).plan()
    routes = []
    for scale, route in ((1e9, True), (1e-30, False)):  # the tree modelled dear, then cheap
        monkeypatch.setattr(
            queries,
            "_kernel_seconds",
            lambda plan, s=scale: plan.cost * (s if plan is tree else 1e-9),
        )
        net._route_cache.clear()
        calls: list = []
        original = net._posteriors_by_queries
        monkeypatch.setattr(
            net,
            "_posteriors_by_queries",
            lambda *a, _c=calls, _q=original, **k: _c.append(a) or _q(*a, **k),
        )
        routes.append(net.marginals(evidence))
        assert bool(calls) == route
        observed = tuple(sorted(net.variables.index(v) for v in evidence))
        ((key, picked),) = net._route_cache.items()
        assert key[:2] == (observed, True) and picked == route
        monkeypatch.setattr(net, "_posteriors_by_queries", original)
    for name, table in routes[0].items():
        torch.testing.assert_close(routes[1][name], table, rtol=0, atol=1e-12)
