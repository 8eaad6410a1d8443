"""Heavy queries on opt_einsum's pairwise path (pyrobn.models.bayesnet.contraction)
against brute force: plain and rescaled, one row and batches, impossible evidence."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyrobn
import pyrobn.models.bayesnet.contraction as contraction
import pyrobn.models.bayesnet.queries as queries
from pyrobn.errors import ZeroProbabilityEvidence
from pyrobn.models.bayesnet.contraction import PathContraction
from pyrobn.models.bayesnet.formats import bnlearn_path
from tests.bayesnet_cases import brute_joint, networks_with_zeros, restrict, split


def brute_posterior(net, query, evidence):
    joint = restrict(brute_joint(net), net, evidence)
    keep = [net.variables.index(q) for q in query]
    drop = tuple(i for i in range(joint.ndim) if i not in keep)
    table = joint.sum(axis=drop)
    order = np.argsort(np.argsort(keep))  # sum keeps axes in ascending order
    return np.transpose(table, order), joint.sum()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros(), st.booleans(), st.integers(0, 3))
def test_the_path_joint_is_the_brute_force_joint(case, rescale, rows):
    """PathContraction.joint over every table: p(x_Q, e) exactly (up to a positive factor
    per row when rescaled), for one row and for batches of rows."""
    net, rng = case
    query, evidence = split(net, rng)
    ids = [net.variables.index(q) for q in query]
    observed = sorted(net.variables.index(v) for v in evidence)
    path = PathContraction(
        net.cards, net._flat_engine.scopes, range(len(net.variables)), ids, observed
    )
    batch = {net.variables.index(v): torch.tensor([s]) for v, s in evidence.items()}
    cases = [dict(evidence)]
    if rows and evidence:
        cases = [{v: int(rng.integers(net.cardinality(v))) for v in evidence} for _ in range(rows)]
        batch = {net.variables.index(v): torch.tensor([c[v] for c in cases]) for v in evidence}
    joint = path.joint(net._tables(), batch, len(cases) if rows and evidence else None, rescale)
    assert joint.shape == (len(cases), *(net.cardinality(q) for q in query))
    for b, row in enumerate(cases):
        expected, total = brute_posterior(net, query, row)
        got = joint[b].numpy()
        if rescale and total > 0:
            got, expected = got / got.sum(), expected / total
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-14)


@contextlib.contextmanager
def every_plan_heavy(net, path_gain: float, spied: str) -> Iterator[list]:
    """HEAVY_COST and PATH_COST at 0 (every plan heavy, every one planned as a path),
    PATH_GAIN as given, and the calls of the network's method ``spied`` counted in the
    list yielded."""
    calls: list = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(queries, "HEAVY_COST", 0.0)
        patch.setattr(queries, "PATH_COST", 0.0)
        patch.setattr(contraction, "PATH_GAIN", path_gain)
        original = getattr(type(net), spied)
        patch.setattr(type(net), spied, lambda *a, **k: calls.append(1) or original(*a, **k))
        yield calls


def assert_brute_answer(net, query, evidence, expected, total) -> None:
    """net.query equals the brute-force posterior, or refuses evidence of p(e) = 0."""
    if total == 0:
        with pytest.raises(ZeroProbabilityEvidence):
            net.query(query, evidence)
        return
    got = net.query(query, evidence).numpy()
    np.testing.assert_allclose(got, expected / total, rtol=1e-9, atol=1e-14)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros())
def test_queries_on_the_path_equal_brute_force_and_refuse_impossible_evidence(case):
    """With every plan sent down the path (thresholds at 0), net.query equals brute
    force on both the linear and the rescaled route, from the compiled route and from
    the torch route (other devices), and impossible evidence raises."""
    net, rng = case
    query, evidence = split(net, rng)
    expected, total = brute_posterior(net, query, evidence)
    with every_plan_heavy(net, 0, "_path_joint") as calls:
        for compiled, linear in itertools.product((True, False), (True, False)):
            net.use_compiled = compiled
            net._refresh()
            net._linear_ok = linear
            calls.clear()
            assert_brute_answer(net, query, evidence, expected, total)
            assert total == 0 or calls  # the path answered
    net.use_compiled = True


def test_the_path_beats_elimination_where_the_orders_blow_up():
    """munin1's last node given three findings: the best elimination order forms a
    table of 56 million entries, the greedy pairwise path one of about a million; the
    query takes the path and matches pgmpy."""
    from pgmpy.inference import VariableElimination

    net = pyrobn.read_network(bnlearn_path("munin1"), device="cpu")
    target = "R_APB_SPONT_DENERV_ACT"
    evidence = {"R_APB_REPSTIM_CMAPAMP": 3, "R_MEDD2_CV_EW": 5, "R_APB_QUAN_MUPAMP": 7}
    ids = tuple(sorted(net.variables.index(v) for v in evidence))
    plan = net._flat_plan("the query", "query_plan", (net.variables.index(target),), ids)
    answer = net.query(target, evidence)
    assert plan.flat.largest_size > 5e7 and plan.extra["path"].largest < 2e6
    named = {v: net.state_names(v)[s] for v, s in evidence.items()}
    theirs = VariableElimination(net.to_pgmpy()).query(
        [target], evidence=named, show_progress=False
    )
    np.testing.assert_allclose(answer.numpy(), theirs.values, rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros(zeros=0.0), st.integers(2, 6), st.sampled_from([1, 2**22]))
def test_batches_on_the_path_in_chunks_equal_brute_force(case, rows, entries):
    """Batched evidence on the path, in chunks of rows (one row each when the entry
    budget is 1), equals brute force row by row."""
    net, rng = case
    query, evidence = split(net, rng, max_query=1)
    if not evidence:
        return
    cases = [{v: int(rng.integers(net.cardinality(v))) for v in evidence} for _ in range(rows)]
    batch = {v: torch.tensor([c[v] for c in cases]) for v in evidence}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(queries, "HEAVY_COST", 0.0)
        patch.setattr(queries, "PATH_COST", 0.0)
        patch.setattr(queries, "VECTORISED_ENTRIES", entries)
        patch.setattr(queries, "_distinct_rows", lambda *a: None)  # every row computed
        patch.setattr(contraction, "PATH_GAIN", 0)
        got = net.query(query, batch)
    for b, row in enumerate(cases):
        expected, total = brute_posterior(net, query, row)
        np.testing.assert_allclose(got[b].numpy(), expected / total, rtol=1e-9, atol=1e-14)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros())
def test_heavy_queries_without_a_lean_path_stay_in_the_kernel(case):
    """Every plan heavy but no path lean enough (PATH_GAIN huge): one row is walked by
    the compiled kernel (torch's route is not called unless the kernel's normaliser
    vanished), equal to brute force; impossible evidence still raises."""
    net, rng = case
    query, evidence = split(net, rng)
    expected, total = brute_posterior(net, query, evidence)
    with every_plan_heavy(net, 1e30, "_query_torch") as calls:
        assert_brute_answer(net, query, evidence, expected, total)
    assert total == 0 or not calls  # p(e) = 0 is decided in log space


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros(), st.integers(1, 3))
def test_all_posteriors_with_heavy_queries_on_their_paths_equal_brute_force(case, rows):
    """The per-variable route of marginals with every query heavy and its path lean and
    modelled quick (the thresholds at 0): each query takes its pairwise path, the shared
    plan keeps p(e) alone; every posterior of every row equals brute force, and
    impossible evidence is refused exactly when p(e) = 0."""
    net, rng = case
    _, first = split(net, rng)
    if not first:
        return
    cases = [first] + [
        {v: int(rng.integers(net.cardinality(v))) for v in first} for _ in range(rows - 1)
    ]
    evidence = {v: torch.tensor([c[v] for c in cases]) for v in first}
    net._queries_cheaper = lambda *args: True
    joint = brute_joint(net)
    totals = [restrict(joint, net, c) for c in cases]
    with every_plan_heavy(net, 0.0, "_path_posterior") as calls:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(queries, "PATH_MARGIN", 0.0)
            if any(t.sum() == 0 for t in totals):
                with pytest.raises(ZeroProbabilityEvidence):
                    net.marginals(evidence)
                return
            answers = net.marginals(evidence)
        assert len(calls) == len(answers)  # every posterior from its path
    for name, table in answers.items():
        axis = net.variables.index(name)
        for b, w in enumerate(totals):
            expected = w.sum(tuple(a for a in range(w.ndim) if a != axis)) / w.sum()
            np.testing.assert_allclose(table[b].numpy(), expected, rtol=1e-9, atol=1e-12)
