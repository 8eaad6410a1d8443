"""Discrete Bayesian networks: the notes' numbers, brute force, the Pyro route, learning."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pyro
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyro.infer import TraceEnum_ELBO, infer_discrete

import pyrobn
from pyrobn import CPT, DiscreteBayesianNetwork, student_network
from pyrobn.datasets import student_samples
from pyrobn.errors import (
    ConfigurationError,
    CycleError,
    InvalidDistributionError,
    OutOfSupportError,
    ShapeError,
    UnknownVariableError,
    ZeroProbabilityEvidence,
)
from pyrobn.models.bayesnet import parse_query
from tests.bayesnet_cases import (
    brute_joint,
    networks_with_zeros,
    random_networks,
    restrict,
    split,
)
from tests.common import assert_no_step_twice

# ---------------------------------------------------------------------------- helpers


# ---------------------------------------------------------------------------- the notes


def test_the_notes_four_numbers():
    net = student_network()
    assert net.query("x2")[1].item() == pytest.approx(0.695, abs=1e-9)  # eq. 3
    assert net.query("x1", evidence={"x2": 0})[1].item() == pytest.approx(
        0.225 / 0.305, abs=1e-9
    )  # eq. 5 (Bayes' rule; the notes number no eq. 4)
    assert net.probability({"x2": 1, "x3": 1}) == pytest.approx(0.546, abs=1e-9)  # eq. 6
    assert net.probability({"x3": 1}, evidence={"x2": 1}) == pytest.approx(
        0.546 / 0.695, abs=1e-9
    )  # eq. 7
    assert 0.225 / 0.305 == pytest.approx(0.7377049, abs=1e-7)
    assert 0.546 / 0.695 == pytest.approx(0.7856115, abs=1e-7)


def test_student_network_structure_and_tables():
    net = student_network()
    assert net.variables == ("x1", "x2", "x3", "x4")
    assert net.parents("x4") == ("x2", "x3")
    # the notes list p(x4 | x2, x3) by rows (x2, x3) = (0,0), (1,0), (0,1), (1,1)
    rows = [(0, 0, 0.05), (1, 0, 0.65), (0, 1, 0.60), (1, 1, 0.99)]
    for x2, x3, p_pass in rows:
        assert net.table("x4")[x2, x3, 1].item() == pytest.approx(p_pass, abs=1e-15)
    joint = net.query(["x2", "x3"])
    assert joint.shape == (2, 2)
    assert joint[1, 1].item() == pytest.approx(0.546, abs=1e-12)
    np.testing.assert_allclose(joint.sum().item(), 1.0, atol=1e-14)


def test_named_states_are_accepted_everywhere():
    net = student_network(named_states=True)
    assert net.probability({"x3": "yes"}, evidence={"x2": "yes"}) == pytest.approx(
        0.546 / 0.695, abs=1e-12
    )
    assert net.query("x1", evidence={"x2": "no"})[1].item() == pytest.approx(0.225 / 0.305)
    assert net.mpe({"x4": "yes"}) == student_network().mpe({"x4": 1})


# ---------------------------------------------------------------------------- brute force


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_networks())
def test_queries_probabilities_and_mpe_equal_brute_force(case):
    net, rng = case
    joint = brute_joint(net)
    query, evidence = split(net, rng)
    weighted = restrict(joint, net, evidence)
    axes = [net.variables.index(q) for q in query]
    marginal = weighted.sum(tuple(a for a in range(joint.ndim) if a not in axes))
    marginal = np.transpose(marginal, np.argsort(np.argsort(axes)))
    np.testing.assert_allclose(
        net.query(query, evidence).numpy(), marginal / marginal.sum(), rtol=1e-9, atol=1e-12
    )
    for name, table in net.marginals(evidence).items():
        torch.testing.assert_close(table, net.query(name, evidence), rtol=1e-9, atol=1e-12)
    net._refresh()
    net._linear_ok = False  # the log-space route (taken when linear space could underflow)
    np.testing.assert_allclose(
        net.query(query, evidence).numpy(), marginal / marginal.sum(), rtol=1e-9, atol=1e-12
    )
    # probability of a random assignment of the query variables
    assignment = {q: int(rng.integers(net.cardinality(q))) for q in query}
    expected = restrict(weighted, net, assignment).sum() / weighted.sum()
    assert net.probability(assignment, evidence) == pytest.approx(expected, rel=1e-9, abs=1e-14)
    assert net.log_evidence(evidence) == pytest.approx(math.log(weighted.sum()), rel=1e-9)
    # MPE of every unobserved variable
    best = np.unravel_index(int(np.argmax(weighted)), weighted.shape)
    expected_mpe = {v: int(best[i]) for i, v in enumerate(net.variables) if v not in evidence}
    mpe, log_max = net.mpe(evidence, return_log_prob=True)
    assert log_max == pytest.approx(math.log(weighted.max()), rel=1e-9)
    if np.sort(weighted.ravel())[-2] < weighted.max() * (1 - 1e-9):  # no tie
        assert mpe == expected_mpe


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_networks(max_nodes=6))
def test_log_prob_with_missing_entries_equals_brute_force(case):
    net, rng = case
    joint = brute_joint(net)
    rows = 5
    data = {
        v: torch.as_tensor(rng.integers(-1, net.cardinality(v), size=rows)) for v in net.variables
    }
    got = net.log_prob(data)
    for k in range(rows):
        evidence = {v: int(col[k]) for v, col in data.items() if col[k] >= 0}
        expected = math.log(restrict(joint, net, evidence).sum())
        assert got[k].item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_networks(max_nodes=5))
def test_fast_route_equals_the_pyro_route(case):
    """TraceEnum_ELBO on the model/guide pair gives -log p(data); infer_discrete (T=0) the MPE."""
    net, rng = case
    rows = 4
    data = {
        v: torch.as_tensor(rng.integers(-1, net.cardinality(v), size=rows)) for v in net.variables
    }
    if len(net.variables) > 1:
        del data[str(rng.choice(net.variables))]  # a wholly hidden variable
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(net.model, net.guide, data)
    assert loss == pytest.approx(-net.log_prob(data).sum().item(), rel=1e-9)
    # the MPE of everything given one row of evidence
    _, evidence = split(net, rng)
    mpe = net.mpe(evidence)
    weighted = restrict(brute_joint(net), net, evidence)
    if np.sort(weighted.ravel())[-2] < weighted.max() * (1 - 1e-9):
        decoder = infer_discrete(net.model, first_available_dim=-2, temperature=0)
        trace = pyro.poutine.trace(decoder).get_trace(
            {v: torch.tensor([s]) for v, s in evidence.items()} or None
        )
        for name, state in mpe.items():
            assert int(trace.nodes[name]["value"].reshape(-1)[0]) == state


def test_pyro_route_with_partly_missing_columns():
    net = student_network()
    data = student_samples(400, seed=2, missing=0.3)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(net.model, net.guide, data)
    assert loss == pytest.approx(-net.log_prob(data).sum().item(), rel=1e-12)


def test_long_chains_use_log_space_and_do_not_underflow():
    """p(all ones) = 0.5 * 1e-3^199 is below float64's range: the log route gets it exactly."""
    n, stay = 200, 1e-3
    cpts = {"c0": CPT([0.5, 0.5])}
    for i in range(1, n):
        cpts[f"c{i}"] = CPT([[0.5, 0.5], [1 - stay, stay]], parents=[f"c{i - 1}"])
    net = DiscreteBayesianNetwork(cpts, device="cpu")
    ones = {f"c{i}": 1 for i in range(n)}
    expected = math.log(0.5) + (n - 1) * math.log(stay)
    assert net.log_evidence(ones) == pytest.approx(expected, rel=1e-12)
    assert not net._linear_ok
    del ones["c0"]
    posterior = net.query("c0", evidence=ones)
    # p(c0 | rest) ∝ p(c0) p(c1=1 | c0): [0.5 * 0.5, 0.5 * 1e-3]
    np.testing.assert_allclose(posterior.numpy(), [0.5 / (0.5 + stay), stay / (0.5 + stay)])


def test_set_table_is_validated_and_seen_by_the_next_query():
    net = student_network()
    assert net.query("x2")[1].item() == pytest.approx(0.695)
    net.set_table("x1", [0.5, 0.5])
    assert net.query("x2")[1].item() == pytest.approx(0.5 * 0.2 + 0.5 * 0.75)
    with pytest.raises(InvalidDistributionError, match=r"p\(x1\)"):
        net.set_table("x1", [0.5, 0.6])


def test_student_samples_hide_and_drop_entries():
    full = student_samples(2000, seed=0)
    assert set(full) == {"x1", "x2", "x3", "x4"}
    assert all(bool(((v == 0) | (v == 1)).all()) for v in full.values())
    hidden = student_samples(2000, seed=0, hidden="x1")
    assert bool((hidden["x1"] == -1).all())
    assert torch.equal(hidden["x4"], full["x4"])  # same seed, same draws
    holes = student_samples(20_000, seed=0, missing=0.25)
    share = float((holes["x2"] == -1).double().mean())
    assert abs(share - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 20_000)
    with pytest.raises(ConfigurationError, match="x9"):
        student_samples(10, hidden="x9")


# ---------------------------------------------------------------------------- batches


def test_batched_evidence_equals_one_query_at_a_time():
    net = student_network()
    x2 = torch.tensor([0, 1, 1, 0, 1])
    x4 = torch.tensor([1, 1, 0, 0, 1])
    batched = net.query("x1", evidence={"x2": x2, "x4": x4})
    assert batched.shape == (5, 2)
    probs = net.probability({"x3": 1}, evidence={"x2": x2, "x4": x4})
    mpe = net.mpe({"x2": x2, "x4": x4})
    log_ev = net.log_evidence({"x2": x2, "x4": x4})
    marginals = net.marginals({"x2": x2, "x4": x4})
    torch.testing.assert_close(marginals["x1"], batched, rtol=1e-12, atol=1e-14)
    draws = net.sample(5, evidence={"x2": x2, "x4": x4}, seed=0)  # one draw per row
    assert torch.equal(draws["x2"], x2) and torch.equal(draws["x4"], x4)
    for b in range(5):
        ev = {"x2": int(x2[b]), "x4": int(x4[b])}
        torch.testing.assert_close(batched[b], net.query("x1", evidence=ev), rtol=0, atol=1e-14)
        assert probs[b].item() == pytest.approx(net.probability({"x3": 1}, ev), abs=1e-14)
        assert {k: int(v[b]) for k, v in mpe.items()} == net.mpe(ev)
        assert log_ev[b].item() == pytest.approx(net.log_evidence(ev), abs=1e-14)


def test_probability_of_an_assignment_that_contradicts_the_evidence_is_zero():
    net = student_network()
    assert net.probability({"x2": 1}, evidence={"x2": 0}) == 0.0
    assert net.probability({"x2": 1, "x3": 1}, evidence={"x2": 1}) == pytest.approx(0.546 / 0.695)


# ---------------------------------------------------------------------------- sampling


def _within_4_se(freq: np.ndarray, exact: np.ndarray, n: int) -> bool:
    se = np.sqrt(exact * (1 - exact) / n)
    return bool(np.all(np.abs(freq - exact) <= 4 * se + 1e-12))


def test_ancestral_samples_agree_with_exact_joint(device):
    net = student_network(device=device)
    n = 100_000
    s = net.sample(n, seed=0)
    assert all(v.device.type == device.type and v.shape == (n,) for v in s.values())
    flat = ((s["x1"] * 2 + s["x2"]) * 2 + s["x3"]) * 2 + s["x4"]
    freq = torch.bincount(flat.cpu(), minlength=16).double().numpy() / n
    assert _within_4_se(freq, brute_joint(net).ravel(), n)


def test_posterior_samples_are_exact_not_rejection(device):
    net = student_network(device=device)
    n = 100_000
    s = net.sample(n, evidence={"x4": 0}, seed=1)
    assert bool((s["x4"] == 0).all())
    exact = net.query(["x1", "x2", "x3"], evidence={"x4": 0}).cpu().numpy().ravel()
    flat = (s["x1"] * 2 + s["x2"]) * 2 + s["x3"]
    freq = torch.bincount(flat.cpu(), minlength=8).double().numpy() / n
    assert _within_4_se(freq, exact, n)
    again = net.sample(10, evidence={"x4": 0}, seed=1)
    assert all(torch.equal(again[k], net.sample(10, evidence={"x4": 0}, seed=1)[k]) for k in again)


def test_queries_run_on_the_device_of_the_tables(device):
    net = student_network(device=device)
    assert net.query("x2").device.type == device.type
    assert net.query("x2")[1].item() == pytest.approx(0.695, abs=1e-12)
    data = student_samples(50, seed=0, hidden="x1")
    assert net.log_prob(data).device.type == device.type


# ---------------------------------------------------------------------------- learning


def test_mle_from_50000_samples_recovers_the_tables():
    truth = student_network()
    data = truth.sample(50_000, seed=4)
    learned = student_network()
    for name in learned.variables:  # start far from the truth
        learned.set_table(name, torch.full_like(learned.table(name), 0.5))
    assert learned.fit(data) is learned
    result = learned.fit_result_
    assert result.method == "closed_form" and result.objective_name == "log_likelihood"
    for name in truth.variables:
        assert (learned.table(name) - truth.table(name)).abs().max().item() < 0.02
    assert result.final_objective == pytest.approx(learned.log_prob(data).sum().item())


def test_map_with_dirichlet_pseudo_counts_is_the_closed_form():
    net = DiscreteBayesianNetwork(
        {"a": CPT([0.5, 0.5]), "b": CPT([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]], parents=["a"])},
        device="cpu",
    )
    a = torch.tensor([0, 0, 0, 1, 1, 0])
    b = torch.tensor([2, 2, 0, 1, 1, 2])
    net.fit({"a": a, "b": b}, concentration=2.5)  # MAP adds alpha - 1 = 1.5 pseudo-counts
    counts = np.zeros((2, 3))
    np.add.at(counts, (a.numpy(), b.numpy()), 1)
    expected = (counts + 1.5) / (counts.sum(1, keepdims=True) + 3 * 1.5)
    np.testing.assert_allclose(net.table("b").numpy(), expected, rtol=1e-14)
    np.testing.assert_allclose(net.table("a").numpy(), [5.5 / 9, 3.5 / 9], rtol=1e-14)
    assert net.fit_result_.objective_name == "log_posterior"
    with pytest.warns(DeprecationWarning, match=r"concentration=a \+ 1"):
        net.fit({"a": a, "b": b}, prior=1.5)  # the deprecated pseudo-count, same MAP
    np.testing.assert_allclose(net.table("b").numpy(), expected, rtol=1e-14)
    # a parent state never seen gives a uniform row under plain MLE
    net.fit({"a": torch.zeros(4, dtype=torch.long), "b": torch.tensor([0, 1, 1, 2])})
    np.testing.assert_allclose(net.table("b")[1].numpy(), [1 / 3] * 3, rtol=1e-14)


def test_em_with_x1_hidden_reaches_the_true_log_likelihood():
    truth = student_network()
    data = student_samples(20_000, seed=0, hidden="x1")
    true_ll = truth.log_prob(data).sum().item()
    learned = student_network()
    result = learned.fit(data, restarts=3, seed=0).fit_result_
    assert result.method == "em" and len(result.restarts) == 3
    history = np.array(result.objective)
    assert np.all(np.diff(history) >= -1e-9 * abs(history[-1]))  # EM never goes down
    assert result.final_objective == pytest.approx(learned.log_prob(data).sum().item())
    assert result.final_objective >= true_ll - 0.005 * abs(true_ll)


def test_map_em_pseudo_counts_pull_towards_uniform():
    data = student_samples(300, seed=8, hidden="x1")
    net = student_network()
    net.fit(data, concentration=1e7 + 1, restarts=1, max_iter=5)
    for name in net.variables:
        table = net.table(name)
        uniform = torch.full_like(table, 1 / table.shape[-1])
        torch.testing.assert_close(table, uniform, rtol=0, atol=1e-4)


def test_svi_on_the_model_guide_pair_reaches_the_em_optimum():
    """The Pyro learning route: TraceEnum_ELBO with x1 enumerated is the exact -log p."""
    data = student_samples(500, seed=6, hidden="x1")
    em = student_network()
    em_result = em.fit(data, restarts=2, seed=0).fit_result_
    svi = student_network()
    result = svi.fit(data, method="svi", restarts=1, steps=80, lr=0.15, seed=0).fit_result_
    assert result.method == "svi" and len(result.objective) == 80
    learned = svi.log_prob(data).sum().item()
    assert learned == pytest.approx(result.final_objective, rel=1e-3)
    assert learned >= em_result.final_objective - 0.005 * abs(em_result.final_objective)
    assert learned <= em_result.final_objective + 1e-6 * abs(em_result.final_objective)
    with pytest.raises(ConfigurationError, match="method"):
        svi.fit(data, method="gibbs")


def test_em_with_missing_entries_stops_at_a_maximum():
    data = student_samples(3000, seed=5, missing=0.2)
    net = student_network()
    result = net.fit(data, restarts=2, seed=1).fit_result_
    assert result.method == "em"
    # at a maximum of the marginal likelihood one more EM step changes nothing
    again = student_network()
    again.load_state_dict(net.state_dict())
    step = again.fit(data, restarts=1, seed=7).fit_result_
    assert step.final_objective <= result.final_objective + 1e-6 * abs(result.final_objective)


# ---------------------------------------------------------------------------- errors


def test_bad_tables_are_refused_with_the_fault_named():
    with pytest.raises(InvalidDistributionError, match=r"'x4'.*x2=1, x3=0.*sums to 1.1"):
        DiscreteBayesianNetwork(
            {
                "x2": CPT([0.5, 0.5]),
                "x3": CPT([0.5, 0.5]),
                "x4": CPT([[[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.6], [0.5, 0.5]]], ["x2", "x3"]),
            }
        )
    with pytest.raises(InvalidDistributionError, match="negative"):
        DiscreteBayesianNetwork({"a": CPT([1.2, -0.2])})
    with pytest.raises(ShapeError, match=r"\(2, 2\).*got \(3, 2\)"):
        DiscreteBayesianNetwork({"a": CPT([0.5, 0.5]), "b": CPT([[1, 0]] * 3, ["a"])})
    with pytest.raises(UnknownVariableError, match="'b' has parent 'z'"):
        DiscreteBayesianNetwork({"b": CPT([[1, 0], [0, 1]], ["z"])})
    with pytest.raises(CycleError, match=r"a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c"):
        DiscreteBayesianNetwork(
            {
                "a": CPT([[1, 0], [0, 1]], ["c"]),
                "b": CPT([[1, 0], [0, 1]], ["a"]),
                "c": CPT([[1, 0], [0, 1]], ["b"]),
                "d": CPT([0.5, 0.5]),
            }
        )
    # rows summing to 1 within the tolerance pass
    DiscreteBayesianNetwork({"a": CPT([0.5 + 5e-7, 0.5])})


def test_bad_queries_are_refused():
    net = student_network(named_states=True)
    with pytest.raises(UnknownVariableError, match="x9"):
        net.query("x9")
    with pytest.raises(UnknownVariableError, match="'x2' has no state 'maybe'"):
        net.query("x1", evidence={"x2": "maybe"})
    with pytest.raises(OutOfSupportError, match="state 2 of 'x2'"):
        net.query("x1", evidence={"x2": 2})
    with pytest.raises(OutOfSupportError, match="'x3'"):
        net.log_prob({"x3": torch.tensor([0, 1, 2])})
    with pytest.raises(ShapeError, match="one length"):
        net.query("x1", evidence={"x2": torch.tensor([0, 1]), "x3": torch.tensor([0, 1, 1])})
    with pytest.raises(ConfigurationError, match="both queried"):
        net.query("x1", evidence={"x1": 0})


def test_zero_probability_evidence_raises_instead_of_nan():
    net = DiscreteBayesianNetwork(
        {"a": CPT([1.0, 0.0]), "b": CPT([[1.0, 0.0], [0.5, 0.5]], ["a"])}, device="cpu"
    )
    for call in (
        lambda: net.query("a", evidence={"b": 1}),
        lambda: net.probability({"a": 0}, evidence={"b": 1}),
        lambda: net.mpe({"b": 1}),
        lambda: net.sample(10, evidence={"b": 1}, seed=0),
        lambda: net.marginals({"b": 1}),
    ):
        with pytest.raises(ZeroProbabilityEvidence, match="'b': 1"):
            call()
    with pytest.raises(ZeroProbabilityEvidence, match=r"rows \[1\]"):
        net.query("a", evidence={"b": torch.tensor([0, 1])})
    assert net.probability({"b": 1}) == 0.0


# ---------------------------------------------------------------------------- persistence


def test_save_load_and_json_round_trips_are_exact(tmp_path):
    net = student_network(named_states=True)
    net.fit(student_samples(500, seed=3))
    net.save(tmp_path / "net.pt")
    loaded = DiscreteBayesianNetwork.load(tmp_path / "net.pt")
    text = net.to_json(tmp_path / "net.json")
    from_json = DiscreteBayesianNetwork.from_json(tmp_path / "net.json")
    from_text = DiscreteBayesianNetwork.from_json(text)
    for other in (loaded, from_json, from_text):
        assert other.variables == net.variables and other.states == net.states
        for name in net.variables:
            assert torch.equal(other.table(name), net.table(name))
            assert other.parents(name) == net.parents(name)
    with pytest.raises(ConfigurationError, match="format"):
        DiscreteBayesianNetwork.from_json('{"nodes": []}')


def test_parse_query_and_ask():
    assert parse_query("P(x2=1, x3=1)").assignment == {"x2": 1, "x3": 1}
    q = parse_query("P(x3=yes | x2=1)")
    assert q.kind == "probability" and q.assignment == {"x3": "yes"} and q.evidence == {"x2": 1}
    q = parse_query("x1 | x2=0")
    assert q.kind == "marginal" and q.variables == ("x1",) and q.evidence == {"x2": 0}
    assert parse_query("x2, x3").variables == ("x2", "x3")
    assert parse_query("mpe | x4=1").kind == "mpe"
    net = student_network()
    assert net.ask("P(x2=1, x3=1)") == pytest.approx(0.546, abs=1e-12)
    assert net.ask("x1 | x2=0")[1].item() == pytest.approx(0.225 / 0.305, abs=1e-12)
    assert net.ask("mpe | x4=1") == net.mpe({"x4": 1})
    assert parse_query("P(x1 | x2=0)") == parse_query("x1 | x2=0")
    with pytest.raises(pyrobn.errors.PyrobnValueError, match="name=value"):
        parse_query("P(x2=1, x3)")
    with pytest.raises(pyrobn.errors.PyrobnValueError, match="no variable"):
        parse_query("| x2=1")


def test_plot_draws_every_node_and_edge():
    import matplotlib

    matplotlib.use("Agg")
    ax = student_network().plot()
    from matplotlib.patches import Circle, FancyArrowPatch

    assert sum(isinstance(p, Circle) for p in ax.patches) == 4
    assert sum(isinstance(p, FancyArrowPatch) for p in ax.patches) == 4
    texts = {t.get_text() for t in ax.texts}
    assert {"x1", "x2", "x3", "x4"} <= texts


# ---------------------------------------------------------------------------- the engines


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros())
def test_compiled_and_torch_routes_agree_and_refuse_the_same_impossible_evidence(case):
    """Pruned, compiled queries (and the junction tree, and the MPE) against the torch
    route over the ancestral set and against brute force: equal answers, and
    ZeroProbabilityEvidence exactly when the brute-force p(e) is 0."""
    net, rng = case
    joint = brute_joint(net)
    query, evidence = split(net, rng)
    p_e = restrict(joint, net, evidence).sum()
    routes = []
    for compiled in (True, False):
        net.use_compiled = compiled
        if p_e == 0:
            for call in (
                lambda: net.query(query, evidence),
                lambda: net.marginals(evidence),
                lambda: net.mpe(evidence),
            ):
                with pytest.raises(ZeroProbabilityEvidence):
                    call()
            continue
        routes.append(
            (net.query(query, evidence), net.marginals(evidence), net.log_evidence(evidence))
        )
    if p_e == 0:
        return
    (q1, m1, l1), (q2, m2, l2) = routes
    torch.testing.assert_close(q1, q2, rtol=1e-9, atol=1e-12)
    assert l1 == pytest.approx(l2, rel=1e-9, abs=1e-12) and l1 == pytest.approx(math.log(p_e))
    for name in m1:
        torch.testing.assert_close(m1[name], m2[name], rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_networks(max_nodes=6))
def test_batched_rows_through_the_compiled_kernels_equal_row_by_row(case):
    net, rng = case
    query, evidence = split(net, rng, max_query=1)
    if not evidence:
        return
    rows = 4
    batch = {v: torch.as_tensor(rng.integers(0, net.cardinality(v), size=rows)) for v in evidence}
    q = net.query(query, batch)
    m = net.marginals(batch)
    _mpe, best = net.mpe(batch, return_log_prob=True)
    for b in range(rows):
        row = {v: int(c[b]) for v, c in batch.items()}
        torch.testing.assert_close(q[b], net.query(query, row), rtol=0, atol=1e-13)
        for name, table in net.marginals(row).items():
            torch.testing.assert_close(m[name][b], table, rtol=0, atol=1e-13)
        _single, single_best = net.mpe(row, return_log_prob=True)
        assert best[b].item() == pytest.approx(single_best, rel=1e-12)


def test_rows_are_normalised_exactly_and_normalised_rows_keep_their_bits():
    rounded = [0.1, 0.2, 0.7000001]  # a file's 7 digits
    net = DiscreteBayesianNetwork({"a": CPT(rounded)}, device="cpu")
    assert abs(float(net.table("a").sum()) - 1) < 1e-15
    np.testing.assert_allclose(net.table("a").numpy(), np.array(rounded) / sum(rounded))
    exact = [0.1, 0.2, 0.7]  # sums to 1 up to rounding: untouched
    assert net.table("a").dtype == torch.float64
    net.set_table("a", exact)
    assert net.table("a").tolist() == exact


def test_do_cuts_the_incoming_edges_on_a_confounded_example():
    """z -> x, z -> y, x -> y: p(y | do(x)) = Σ_z p(z) p(y | x, z) differs from
    p(y | x) = Σ_z p(z | x) p(y | x, z); both as pgmpy's CausalInference computes them."""
    pz = [0.7, 0.3]
    px_z = [[0.9, 0.1], [0.2, 0.8]]
    py_xz = [[[0.8, 0.2], [0.3, 0.7]], [[0.6, 0.4], [0.1, 0.9]]]  # [z, x, y]
    net = DiscreteBayesianNetwork(
        {"z": CPT(pz), "x": CPT(px_z, ["z"]), "y": CPT(py_xz, ["z", "x"])},
        states={"z": ["no", "yes"], "x": ["no", "yes"], "y": ["no", "yes"]},
        device="cpu",
    )
    do = net.do({"x": "yes"})
    assert do.parents("x") == () and do.parents("y") == ("z", "x")
    expected_do = sum(pz[z] * py_xz[z][1][1] for z in range(2))
    assert do.query("y")[1].item() == pytest.approx(expected_do, abs=1e-15)
    pzx = np.array([pz[z] * px_z[z][1] for z in range(2)])
    observed = sum(pzx[z] / pzx.sum() * py_xz[z][1][1] for z in range(2))
    assert net.query("y", {"x": "yes"})[1].item() == pytest.approx(observed, abs=1e-15)
    assert abs(expected_do - observed) > 0.05  # the confounder matters
    assert torch.equal(do.query("z"), net.query("z"))  # forcing x says nothing of z

    from pgmpy.inference import CausalInference

    ci = CausalInference(net.to_pgmpy())
    theirs = ci.query(["y"], do={"x": "yes"}, show_progress=False)
    np.testing.assert_allclose(do.query("y").numpy(), theirs.values, rtol=0, atol=1e-12)
    with pytest.raises(ConfigurationError, match="non-empty mapping"):
        net.do({})
    with pytest.raises(UnknownVariableError, match="'w'"):
        net.do({"w": 0})
    with pytest.raises(ShapeError, match="one state per variable"):
        net.do({"x": [0, 1]})


def test_heavy_route_rescales_messages_where_a_linear_product_underflows(monkeypatch):
    """The einsum route (forced with HEAVY_COST = 0) on a hidden chain of 200 nodes, each
    with an observed child of probability about 1e-3: p(e) is far below float64's
    range, so the plain linear product is 0; messages rescaled as they form give the
    log-space posterior without falling back to it, and impossible evidence still
    raises (decided in log space)."""
    import pyrobn.models.bayesnet.queries as queries

    monkeypatch.setattr(queries, "HEAVY_COST", 0.0)
    n = 200
    cpts = {"c0": CPT([0.5, 0.5])}
    for i in range(n):
        if i:
            cpts[f"c{i}"] = CPT([[0.9, 0.1], [0.2, 0.8]], parents=[f"c{i - 1}"])
        cpts[f"o{i}"] = CPT([[1 - 1e-3, 1e-3], [1 - 3e-3, 3e-3]], parents=[f"c{i}"])
    cpts["end"] = CPT([[1.0, 0.0], [1.0, 0.0]], parents=[f"c{n - 1}"])
    net = DiscreteBayesianNetwork(cpts, device="cpu")
    seen = {f"o{i}": 1 for i in range(n)}
    calls = []
    for method in ("scaled_marginal", "log_marginal"):
        original = getattr(net._engine, method)
        monkeypatch.setattr(
            net._engine,
            method,
            lambda *a, _m=method, _f=original, **k: calls.append(_m) or _f(*a, **k),
        )
    posterior = net.query("c0", evidence=seen)
    assert calls == ["scaled_marginal"] and not net._linear_ok  # no log-space fallback
    assert net.log_evidence(seen) < -1000  # p(e) itself underflows float64
    net.use_compiled = False
    torch.testing.assert_close(net.query("c0", evidence=seen), posterior, rtol=1e-12, atol=0)
    net.use_compiled = True
    calls.clear()
    with pytest.raises(ZeroProbabilityEvidence):
        net.query("c0", evidence={**seen, "end": 1})
    assert "log_marginal" in calls  # a vanished row: log space decides


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros(max_nodes=6), st.integers(2, 40))
def test_repeated_evidence_rows_are_answered_once_and_errors_name_the_callers_rows(case, rows):
    """Batched queries and marginals with few distinct rows (each distinct row answered
    once, then scattered back) equal row-by-row answers; a row of probability zero is
    named by its index in the caller's batch."""
    net, rng = case
    query, evidence = split(net, rng, max_query=1)
    if not evidence:
        return
    distinct = {v: rng.integers(0, net.cardinality(v), size=2) for v in evidence}
    pick = rng.integers(0, 2, size=rows)
    batch = {v: torch.as_tensor(c[pick]) for v, c in distinct.items()}
    row_p = [
        restrict(brute_joint(net), net, {v: int(c[b]) for v, c in batch.items()}).sum()
        for b in range(rows)
    ]
    impossible = [b for b in range(rows) if row_p[b] == 0]
    if impossible:
        with pytest.raises(ZeroProbabilityEvidence, match=rf"batch rows \[{impossible[0]}\b"):
            net.query(query, batch)
        return
    q = net.query(query, batch)
    m = net.marginals(batch)
    for b in range(rows):
        row = {v: int(c[b]) for v, c in batch.items()}
        torch.testing.assert_close(q[b], net.query(query, row), rtol=0, atol=1e-13)
        for name, table in net.marginals(row).items():
            torch.testing.assert_close(m[name][b], table, rtol=0, atol=1e-13)


def test_a_batch_of_repeated_rows_is_computed_on_its_distinct_rows_only(monkeypatch):
    net = student_network()
    batch = {"x2": torch.tensor([0, 1, 0, 1, 1, 0, 0, 1]), "x4": torch.tensor([1] * 8)}
    seen = []
    inner = net._query_ids
    monkeypatch.setattr(net, "_query_ids", lambda q, ev, b, e: seen.append(b) or inner(q, ev, b, e))
    answer = net.query("x1", batch)
    assert seen == [2] and answer.shape == (8, 2)
    for b in range(8):
        torch.testing.assert_close(answer[b], net.query("x1", {"x2": int(batch["x2"][b]), "x4": 1}))


def test_rows_too_wide_for_one_key_are_answered_as_they_are():
    from pyrobn.models.bayesnet.queries import _distinct_rows

    ones = {v: torch.ones(4, dtype=torch.long) for v in range(64)}
    assert _distinct_rows(ones, 4, [2] * 64) is None  # 2^64 joint values: no int64 key
    rows, inverse = _distinct_rows(dict(list(ones.items())[:63]), 4, [2] * 63)
    assert inverse.tolist() == [0] * 4 and all(c.tolist() == [1] for c in rows.values())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros(max_nodes=6), st.integers(2, 12))
def test_batches_answered_from_one_table_over_the_evidence_equal_brute_force(case, rows):
    """With the thresholds at 0 every batch is answered from p(x_Q, x_E | e_s): equal to
    brute force row by row, and a row of probability zero is named by its index."""
    import pyrobn.models.bayesnet.queries as queries

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(queries, "JOINT_ROWS", 2)
        patch.setattr(queries, "JOINT_GAIN", 0)
        assert_random_batch_equals_brute_force(*case, rows)


def assert_random_batch_equals_brute_force(net, rng, rows: int) -> None:
    """A random query and a batch of ``rows`` random evidence rows (some variables shared
    by all rows): the batched answer equals each row's own query, and a batch with a
    row of probability zero is refused, naming that row when the shared part is
    possible."""
    query, evidence = split(net, rng, max_query=2)
    if not evidence:
        return
    names = list(evidence)
    shared = names[: int(rng.integers(0, len(names)))]  # these stay scalar
    cases = [
        {v: evidence[v] if v in shared else int(rng.integers(net.cardinality(v))) for v in names}
        for _ in range(rows)
    ]
    batch = {v: evidence[v] if v in shared else torch.tensor([c[v] for c in cases]) for v in names}
    if all(v in shared for v in names):
        return
    totals = [restrict(brute_joint(net), net, c).sum() for c in cases]
    if min(totals) == 0:
        shared_total = restrict(brute_joint(net), net, {v: evidence[v] for v in shared}).sum()
        named = "" if shared_total == 0 else rf"batch rows \[{totals.index(0)}\b"
        with pytest.raises(ZeroProbabilityEvidence, match=named):
            net.query(query, batch)
        return
    got = net.query(query, batch)
    for b, row in enumerate(cases):
        torch.testing.assert_close(got[b], net.query(query, row), rtol=1e-9, atol=1e-13)


@contextlib.contextmanager
def evidence_checked_by_table(net):
    """Every batch's check that the tables a pruned query dropped leave p(e) > 0 read
    from one table over the batched evidence variables (thresholds at 0; batches not
    answered from one joint table, so that the rows' route runs); yields the list of the
    table's verdicts (None where it was not used)."""
    import pyrobn.models.bayesnet.queries as queries

    verdicts: list = []
    inner = net._zero_rows_by_table
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(queries, "JOINT_ROWS", 2)
        patch.setattr(queries, "JOINT_GAIN", 0)
        patch.setattr(net, "_batch_by_joint", lambda *args: None)
        patch.setattr(
            net, "_zero_rows_by_table", lambda *a: verdicts.append(inner(*a)) or verdicts[-1]
        )
        yield verdicts


def test_a_batch_whose_dropped_tables_make_a_row_impossible_is_caught_from_one_table():
    """p(c | b) keeps c's table alone; whether a row's b is possible is read from the
    table p(b) (not one elimination per row): b = 2 has probability zero and its row is
    named, the other rows are answered exactly."""
    net = DiscreteBayesianNetwork(
        {
            "a": CPT([0.3, 0.7]),
            "b": CPT([[0.2, 0.8, 0.0], [0.6, 0.4, 0.0]], ["a"]),
            "c": CPT([[0.1, 0.9], [0.5, 0.5], [0.7, 0.3]], ["b"]),
        },
        device="cpu",
    )
    with evidence_checked_by_table(net) as verdicts:
        with pytest.raises(ZeroProbabilityEvidence, match=r"rows \[3\]"):
            net.query("c", {"b": torch.tensor([0, 1, 0, 2, 1])})
        assert verdicts and all(verdicts)  # the distinct rows, then the user's rows
        verdicts.clear()
        got = net.query("c", {"b": torch.tensor([0, 1, 0, 1])})
        assert verdicts == [False]
    torch.testing.assert_close(got, torch.tensor([[0.1, 0.9], [0.5, 0.5]]).double()[[0, 1, 0, 1]])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros(max_nodes=6), st.integers(2, 12))
def test_batches_whose_evidence_is_checked_from_one_table_equal_brute_force(case, rows):
    """With the evidence check read from one table over the batched evidence variables,
    every row equals brute force, and a row of probability zero is named by its index."""
    net, rng = case
    with evidence_checked_by_table(net):
        assert_random_batch_equals_brute_force(net, rng, rows)


@contextlib.contextmanager
def trees_built_for_the_evidence():
    """Every all-posteriors call on a junction tree triangulated for its observed
    variables (the size thresholds that normally decide it set to always)."""
    import pyrobn.models.bayesnet.queries as queries

    saved = queries.SPECIALISE_ENTRIES_PER_VARIABLE, queries.SPECIALISE_GAIN
    queries.SPECIALISE_ENTRIES_PER_VARIABLE, queries.SPECIALISE_GAIN = 0, 0.0
    try:
        yield
    finally:
        queries.SPECIALISE_ENTRIES_PER_VARIABLE, queries.SPECIALISE_GAIN = saved


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros(), st.integers(1, 4))
def test_all_posteriors_on_a_tree_built_for_the_evidence_equal_brute_force(case, rows):
    """marginals on the tree triangulated without the observed variables: every
    posterior of every row equals brute force; impossible rows are refused
    (ZeroProbabilityEvidence) exactly when p(e) = 0; the tree is the one kept for that
    set of observed variables."""
    net, rng = case
    joint = brute_joint(net)
    _, first = split(net, rng)
    if not first:
        return
    batch = {
        v: torch.tensor([s] + [int(rng.integers(net.cardinality(v))) for _ in range(rows - 1)])
        for v, s in first.items()
    }
    row_list = [{v: int(c[b]) for v, c in batch.items()} for b in range(rows)]
    weights = [restrict(joint, net, row) for row in row_list]
    with trees_built_for_the_evidence():
        if any(w.sum() == 0 for w in weights):
            with pytest.raises(ZeroProbabilityEvidence):
                net.marginals(batch)
            return
        answers = net.marginals(batch)
        observed = tuple(sorted(net.variables.index(v) for v in first))
        assert net.junction_tree(list(first)).observed == observed
    assert set(answers) == set(net.variables) - set(first)
    for name, table in answers.items():
        axis = net.variables.index(name)
        for b, w in enumerate(weights):
            expected = w.sum(tuple(a for a in range(w.ndim) if a != axis)) / w.sum()
            np.testing.assert_allclose(table[b].numpy(), expected, rtol=1e-9, atol=1e-12)


def test_trees_built_for_the_evidence_are_kept_per_observed_set(monkeypatch):
    """One tree per set of observed variables, the least recently used dropped past
    SPECIALISED_TREES; the network's own tree where the specialised one is not smaller."""
    import pyrobn.models.bayesnet.queries as queries

    net = student_network()
    net._queries_cheaper = lambda *args: False  # every call calibrates its tree
    monkeypatch.setattr(queries, "SPECIALISE_ENTRIES_PER_VARIABLE", 0)
    monkeypatch.setattr(queries, "SPECIALISED_TREES", 2)
    monkeypatch.setattr(queries, "SPECIALISE_GAIN", 0.0)
    for observed in (["x1"], ["x2"], ["x1"], ["x3"]):
        net.marginals(dict.fromkeys(observed, 0))
    kept = net._observed_trees
    index = net.variables.index
    assert list(kept) == [(index("x1"),), (index("x3"),)]
    assert all(tree.observed == key for key, tree in kept.items())
    # past SPECIALISED_ENTRIES only the tree in use is kept
    monkeypatch.setattr(queries, "SPECIALISED_ENTRIES", 2 * kept[(index("x3"),)].size)
    net.marginals({"x2": 0})
    assert list(kept) == [(index("x2"),)]
    monkeypatch.setattr(queries, "SPECIALISE_GAIN", 1e9)  # never smaller enough
    net._observed_trees.clear()
    assert net.junction_tree(["x2"]) is net.junction_tree()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros())
def test_all_posteriors_by_per_variable_queries_equal_brute_force(case):
    """The per-variable route of marginals (its queries run as one shared plan, p(e) > 0
    checked once): every posterior equals brute force, and impossible evidence is
    refused exactly when p(e) = 0, pruned parts included."""
    net, rng = case
    joint = brute_joint(net)
    _, evidence = split(net, rng)
    net._queries_cheaper = lambda *args: True
    weighted = restrict(joint, net, evidence)
    if weighted.sum() == 0:
        with pytest.raises(ZeroProbabilityEvidence):
            net.marginals(evidence)
        return
    answers = net.marginals(evidence)
    assert set(answers) == set(net.variables) - set(evidence)
    for name, table in answers.items():
        axis = net.variables.index(name)
        expected = weighted.sum(tuple(a for a in range(weighted.ndim) if a != axis))
        np.testing.assert_allclose(table.numpy(), expected / weighted.sum(), rtol=1e-9, atol=1e-12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_with_zeros())
def test_the_shared_plan_makes_each_step_once_and_ends_with_p_of_e(case):
    """Engine.posteriors_plan: no step walked twice, no dearer than its queries apart,
    and its last output's normaliser is log p(e) (the query of nothing)."""
    from pyrobn.infer.enumeration_compiled import run

    net, rng = case
    _, evidence = split(net, rng)
    if not evidence:
        return
    ev, _ = net._evidence(evidence)
    observed = tuple(sorted(ev))
    free = tuple(v for v in range(len(net.variables)) if v not in ev)
    engine = net._flat_engine
    plan = engine.posteriors_plan(free, observed)
    assert_no_step_twice(plan.flat)
    apart = sum(engine.query_plan(q, observed).flat.cost for q in [(v,) for v in free] + [()])
    assert plan.flat.cost <= apart
    store = net._flat_tables
    store.update(net._tables(), None, plan.flat.workspace)
    row = np.array([[int(ev[v]) for v in plan.flat.evidence]], dtype=np.int64)
    _, log_norm, _ = run(plan.flat, store.buffer, store.offsets, row)
    total = restrict(brute_joint(net), net, evidence).sum()
    if total == 0:
        assert log_norm[0, -1] == -math.inf
    else:
        assert log_norm[0, -1] == pytest.approx(math.log(total), rel=1e-9, abs=1e-12)


def test_per_variable_posteriors_survive_an_underflow_in_the_kernel():
    """Two findings of probability 1e-200 each: the compiled product of one query step
    underflows to 0 (p(e) = 1e-400 is not a float64), so that query is answered again in
    log space; the posterior is the exact one."""
    tiny = 1e-200
    finding = CPT([[1 - tiny, tiny], [1 - 2 * tiny, 2 * tiny]], ["a"])
    net = DiscreteBayesianNetwork({"a": CPT([0.5, 0.5]), "b": finding, "c": finding}, device="cpu")
    net._queries_cheaper = lambda *args: True
    posterior = net.marginals({"b": 1, "c": 1})["a"]
    torch.testing.assert_close(posterior, torch.tensor([0.2, 0.8], dtype=torch.float64))
    torch.testing.assert_close(posterior, net.query("a", {"b": 1, "c": 1}))
