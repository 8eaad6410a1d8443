"""The compiled log-space contraction against brute force over the full table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrobn.errors import ConfigurationError, UnknownVariableError
from pyrobn.infer.enumeration import CompiledContraction


@st.composite
def factor_graphs(draw, max_vars: int = 6):
    """Random unnormalised factors (some entries exactly zero) over 1..max_vars variables."""
    n = draw(st.integers(1, max_vars))
    cards = [draw(st.integers(2, 4)) for _ in range(n)]
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scopes = []
    for _ in range(draw(st.integers(1, 6))):
        k = draw(st.integers(1, min(3, n)))
        scopes.append(tuple(int(v) for v in rng.permutation(n)[:k]))
    for v in range(n):  # every variable in some factor
        if not any(v in s for s in scopes):
            scopes.append((v,))
    tables = []
    for s in scopes:
        t = rng.gamma(1.0, size=[cards[v] for v in s])
        t[rng.random(t.shape) < 0.1] = 0.0
        tables.append(t)
    return cards, scopes, tables, rng


def brute_joint(cards, scopes, tables) -> np.ndarray:
    operands = []
    for s, t in zip(scopes, tables):
        operands += [t, [int(v) for v in s]]
    return np.einsum(*operands, list(range(len(cards))))


def logs(tables):
    with np.errstate(divide="ignore"):
        return [torch.as_tensor(np.log(t)) for t in tables]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(factor_graphs(), st.data())
def test_log_marginal_matches_brute_force(graph, data):
    cards, scopes, tables, rng = graph
    n = len(cards)
    joint = brute_joint(cards, scopes, tables)
    order = [int(v) for v in rng.permutation(n)]
    n_obs = data.draw(st.integers(0, n - 1))
    observed, rest = order[:n_obs], order[n_obs:]
    n_query = data.draw(st.integers(0, min(2, len(rest))))
    query, others = rest[:n_query], rest[n_query:]
    soft = others[: data.draw(st.integers(0, len(others)))]
    batch = 3
    evidence = {v: torch.as_tensor(rng.integers(0, cards[v], size=batch)) for v in observed}
    soft_ev = {v: torch.as_tensor(np.log(rng.random((batch, cards[v])) + 0.1)) for v in soft}
    engine = CompiledContraction(cards, scopes)
    got = engine.log_marginal(logs(tables), query, evidence, soft_ev)
    for b in range(batch):
        weighted = joint
        for v in range(n):  # evidence as one-hot (hard) or likelihood (soft) vectors
            if v in evidence:
                vector = np.eye(cards[v])[int(evidence[v][b])]
            elif v in soft_ev:
                vector = np.exp(soft_ev[v][b].numpy())
            else:
                continue
            shape = [1] * n
            shape[v] = cards[v]
            weighted = weighted * vector.reshape(shape)
        summed = weighted.sum(tuple(v for v in range(n) if v not in query))
        expected = np.transpose(summed, np.argsort(np.argsort(query))) if query else summed
        np.testing.assert_allclose(
            torch.exp(got[b % got.shape[0]]).numpy(), expected, rtol=1e-9, atol=1e-300
        )


@settings(max_examples=40, deadline=None)
@given(factor_graphs(max_vars=5))
def test_max_assignment_matches_brute_force(graph):
    cards, scopes, tables, rng = graph
    joint = brute_joint(cards, scopes, tables)
    # strictly positive tables avoid ties between maximisers
    tables = [t + rng.random(t.shape) * 1e-3 + 1e-3 for t in tables]
    joint = brute_joint(cards, scopes, tables)
    observed = {0: int(rng.integers(cards[0]))} if len(cards) > 1 else {}
    evidence = {v: torch.tensor([s]) for v, s in observed.items()}
    engine = CompiledContraction(cards, scopes)
    best, values = engine.max_assignment(logs(tables), evidence)
    sliced = joint[observed[0]] if observed else joint
    flat = int(np.argmax(sliced))
    free = [v for v in range(len(cards)) if v not in observed]
    expected = np.unravel_index(flat, sliced.shape)
    assert {v: int(values[v][0]) for v in free} == dict(zip(free, map(int, expected)))
    assert float(best[0]) == pytest.approx(np.log(sliced.max()), rel=1e-12)


def test_posterior_samples_match_exact_probabilities():
    rng = np.random.default_rng(3)
    cards, scopes = [2, 3, 2, 3], [(0,), (0, 1), (1, 2), (2, 3), (0, 3)]
    tables = [rng.gamma(1.0, size=[cards[v] for v in s]) for s in scopes]
    joint = brute_joint(cards, scopes, tables)[:, :, 1, :]  # evidence x2 = 1
    exact = joint / joint.sum()
    engine = CompiledContraction(cards, scopes)
    n = 60_000
    gen = torch.Generator().manual_seed(0)
    _, draws = engine.sample(logs(tables), n, {2: torch.tensor([1])}, generator=gen)
    flat = (draws[0] * 3 + draws[1]) * 3 + draws[3]
    freq = torch.bincount(flat, minlength=exact.size).double().numpy() / n
    se = np.sqrt(exact.ravel() * (1 - exact.ravel()) / n)
    assert np.all(np.abs(freq - exact.ravel()) <= 4 * se + 1e-12)


def test_plans_are_compiled_once_and_cached():
    engine = CompiledContraction([2, 2, 2], [(0,), (0, 1), (1, 2)])
    plan = engine.plan((0,), (2,))
    assert engine.plan((0,), (2,)) is plan
    assert engine.plan((0,), (1,)) is not plan
    assert len(plan.steps) == 1 and plan.steps[0].var == 1


def test_batched_and_broadcast_evidence():
    rng = np.random.default_rng(0)
    cards, scopes = [2, 3, 2], [(0,), (1, 0), (2, 1)]
    tables = logs([rng.random([cards[v] for v in s]) for s in scopes])
    engine = CompiledContraction(cards, scopes)
    ev = {2: torch.tensor([0, 1, 1, 0]), 1: torch.tensor([2])}  # B=4 with B=1 broadcast
    batched = engine.log_marginal(tables, (0,), ev)
    for b in range(4):
        single = engine.log_marginal(tables, (0,), {2: ev[2][b : b + 1], 1: ev[1]})
        torch.testing.assert_close(batched[b], single[0], rtol=0, atol=1e-14)


def test_zero_probability_is_minus_infinity_not_nan():
    engine = CompiledContraction([2, 2], [(0,), (0, 1)])
    tables = logs([np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.5, 0.5]])])
    out = engine.log_marginal(tables, (), {1: torch.tensor([1])})
    assert torch.isneginf(out).all()


def test_bad_plans_are_refused():
    engine = CompiledContraction([2, 2], [(0,), (0, 1)])
    with pytest.raises(ConfigurationError, match="both queried and observed"):
        engine.plan((0,), (0,))
    with pytest.raises(ConfigurationError, match="no query"):
        engine.plan((0,), (), mode="max")
    with pytest.raises(ConfigurationError, match="mode"):
        engine.plan((), (), mode="mean")
    with pytest.raises(UnknownVariableError, match="variable 5"):
        CompiledContraction([2], [(5,)])


# ---------------------------------------------------------------------------- orders, plans


def test_elimination_orders():
    from pyrobn.infer.enumeration import HEURISTICS, elimination_order, induced_cliques

    # a 4-cycle with a pendant node: the pendant (fill 0) goes first under the fill rules
    scopes = [(0, 1), (1, 2), (2, 3), (3, 0), (3, 4)]
    cards = [2, 3, 2, 3, 5]
    for heuristic in HEURISTICS:
        order = elimination_order(scopes, cards, range(5), heuristic)
        assert sorted(order) == list(range(5))
        assert order[0] == (4 if heuristic != "min-weight" else 1)  # (3 x 2 x 2 < 5 x 3)
        assert order == elimination_order(scopes, cards, range(5), heuristic)  # deterministic
        width = max(len(c) for _, c in induced_cliques(scopes, order)) - 1
        assert width == 2  # a cycle has treewidth 2
    # weighted min-fill prefers the cheap fill edge: eliminating 0 joins 1 and 3 (3 x 3),
    # eliminating 1 joins 0 and 2 (2 x 2): min-fill ties (both 1), the weights break it
    w = elimination_order(scopes[:4], cards, range(4), "weighted-min-fill")
    assert w[0] in (1, 3)
    assert elimination_order(scopes, cards, [], "min-fill") == []
    with pytest.raises(ConfigurationError, match="heuristic"):
        elimination_order(scopes, cards, [0], "min-degree")


def test_variables_only_the_product_holds_are_summed_in_its_walk():
    """p(a) p(b | a) p(c | b), everything summed in the order a, b, c: eliminating b
    multiplies the tables holding b into a walk over (b, c); c is then held by nothing
    else, so it is summed in that walk too: three steps, not four (the last, over no
    variable, multiplies what is left), in both compilers, and the total is 1."""
    from pyrobn.infer.enumeration_compiled import (
        StructureArrays,
        compile_elimination,
        compile_query,
        run,
    )

    cards, scopes = [2, 3, 2], [(0,), (0, 1), (1, 2)]
    reference = compile_elimination(cards, scopes, [0, 1, 2], (), (), [0, 1, 2])
    assert len(reference.starts) == 3
    second = reference.program.tolist()[reference.starts[1] :]
    assert second[1] == 2 and second[5:9] == [2, 1, 0, 0]  # walks c, b; keeps nothing
    plan = compile_query(StructureArrays(cards, scopes), [0, 1, 2], (), (), "sum", "min-fill")
    assert plan.order == (0, 1, 2) and np.array_equal(plan.program, reference.program)
    rng = np.random.default_rng(1)
    tables = [rng.dirichlet(np.ones(2)), rng.dirichlet(np.ones(3), 2), rng.dirichlet(np.ones(2), 3)]
    buffer = np.concatenate([*(t.ravel() for t in tables), np.empty(plan.workspace)])
    offsets = np.array([0, 2, 8, 14], dtype=np.int64)
    _, log_norms, _ = run(plan, buffer, offsets, np.zeros((1, 0), dtype=np.int64))
    assert log_norms[0, 0] == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(factor_graphs(), st.data())
def test_compiled_plans_equal_the_reference_builder_and_brute_force(graph, data):
    """The numba compile (order and encoding) gives the plan the Python builder gives with
    elimination_order; running it equals brute force (sum and max, batched evidence)."""
    from pyrobn.infer.enumeration import HEURISTICS, elimination_order
    from pyrobn.infer.enumeration_compiled import (
        StructureArrays,
        compile_elimination,
        compile_query,
        run,
    )

    cards, scopes, tables, rng = graph
    n = len(cards)
    joint = brute_joint(cards, scopes, tables)
    order = [int(v) for v in rng.permutation(n)]
    observed = sorted(order[: data.draw(st.integers(0, n - 1))])
    rest = [v for v in order if v not in observed]
    query = tuple(rest[: data.draw(st.integers(0, min(2, len(rest))))])
    heuristic = data.draw(st.sampled_from(HEURISTICS))
    mode = data.draw(st.sampled_from(["sum", "max"])) if not query else "sum"
    factors = list(range(len(scopes)))
    structure = StructureArrays(cards, scopes)
    plan = compile_query(structure, factors, query, observed, mode, heuristic)
    free = [v for v in range(n) if v not in observed]
    elim = elimination_order(
        [[v for v in s if v not in observed] for s in scopes],
        cards,
        set(free) - set(query),
        heuristic,
    )
    reference = compile_elimination(cards, scopes, factors, query, observed, elim, mode)
    assert np.array_equal(plan.program, reference.program)
    assert np.array_equal(plan.slot_sizes, reference.slot_sizes) and plan.free == reference.free
    flat = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in tables])
    offsets = np.concatenate([[0], np.cumsum([np.size(t) for t in tables])])
    buffer = np.concatenate([flat, np.empty(plan.workspace)])
    rows = np.array([[rng.integers(0, cards[v]) for v in observed] for _ in range(3)])
    rows = rows.reshape(3, len(observed)).astype(np.int64)
    results, log_norms, assignment = run(plan, buffer, offsets, rows)
    for b in range(3):
        sliced = joint
        for v, s in sorted(zip(observed, rows[b]), reverse=True):
            sliced = np.take(sliced, s, axis=v)
        if sliced.sum() == 0:
            assert np.isneginf(log_norms[b, 0])
            continue
        if mode == "sum":
            axes = [free.index(q) for q in query]
            table = sliced.sum(tuple(i for i in range(len(free)) if i not in axes))
            table = np.transpose(table, np.argsort(np.argsort(axes))) if query else table
            np.testing.assert_allclose(
                results[b].reshape(np.shape(table)), table / table.sum(), rtol=1e-9, atol=1e-12
            )
            assert log_norms[b, 0] == pytest.approx(np.log(sliced.sum()), rel=1e-9, abs=1e-12)
        else:
            assert log_norms[b, 0] == pytest.approx(np.log(sliced.max()), rel=1e-9, abs=1e-12)
            got = dict(zip(plan.free, assignment[b]))
            value = sliced[tuple(got[v] for v in free)]
            assert value == pytest.approx(sliced.max(), rel=1e-12)  # a joint maximiser


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1))
def test_steps_walk_merged_axes_and_products_of_any_number_of_inputs(seed):
    """One step out[x_O] = Σ Π of 1-5 tables over three variables, the tables laid
    out in random axis orders: axes every array steps through as one are merged (a
    table and an output in the walk's own order leave one axis, or two where the
    output cuts them), and each result equals numpy's einsum."""
    from pyrobn.infer.enumeration_compiled import _TABLE, PlanBuilder, run

    rng = np.random.default_rng(seed)
    cards = [int(c) for c in rng.integers(2, 5, size=3)]
    walk = [int(v) for v in rng.permutation(3)]
    scopes = [walk]  # the first table in the walk's order
    scopes += [[int(v) for v in rng.permutation(3)[: rng.integers(1, 4)]] for _ in range(4)]
    n_in = int(rng.integers(1, 6))
    out = sorted(int(v) for v in rng.permutation(3)[: rng.integers(0, 3)])
    out = [v for v in walk if v in out]  # the output keeps the walk's relative order
    tables = [rng.random([cards[v] for v in s]) for s in scopes]
    builder = PlanBuilder(cards, scopes, ())
    slot = builder.step([(_TABLE, t) for t in range(n_in)], walk, out)
    plan = builder.finish([slot], "sum")
    nd = int(plan.program[plan.starts[0] + 1])
    if n_in == 1 and out in ([], walk):  # one table, the output a prefix of the walk
        assert nd == 1
    assert 1 <= nd <= 3
    flat = np.concatenate([t.ravel() for t in tables])
    offsets = np.concatenate([[0], np.cumsum([t.size for t in tables])]).astype(np.int64)
    buffer = np.concatenate([flat, np.empty(plan.workspace)])
    result, log_norm, _ = run(plan, buffer, offsets, np.zeros((1, 0), dtype=np.int64))
    operands = []
    for t in range(n_in):
        operands += [tables[t], scopes[t]]
    expected = np.einsum(*operands, out).ravel()
    assert np.exp(log_norm[0, 0]) == pytest.approx(expected.sum(), rel=1e-12)
    np.testing.assert_allclose(result[0], expected / expected.sum(), rtol=1e-12)
