"""Real networks: pyrobn against pgmpy's VariableElimination and pyAgrum's LazyPropagation.

Every bnlearn network pgmpy ships (asia ... munin), in one run, one thread, medians.
Each library answers the same queries on the same tables (pgmpy gets pyrobn's tables
through ``to_pgmpy``; pyAgrum through its API), and pyrobn's answers are checked against
pgmpy's (the largest difference is printed). Per network:

* single queries: a stream of random queries (a random target, 0-4 evidence variables
  whose values come from a forward sample) in which every shape appears twice: first
  new (the plan is compiled), then again with other evidence values (the cached plan
  runs). Printed: pyrobn's median on new shapes, on repeated shapes, and on the mixed
  stream (half new, half repeated; the figure compared), pgmpy's and pyAgrum's medians
  on the same stream;
* all posteriors given evidence (three findings): pyrobn's ``marginals`` (one
  junction-tree calibration, or one compiled query per variable where its cost model
  says that is cheaper) against pgmpy answering one query per variable (timed on up to
  ``--pgmpy-vars`` variables and scaled to all of them, marked ~) and pyAgrum's
  LazyPropagation with every variable a target; pyrobn's and pyAgrum's times are the
  median of three calls after a first one (printed in brackets for pyrobn: it builds
  the tree for the set of observed variables, or the plans of its queries);
* batched throughput: ``--batch`` evidence rows of one query shape (the last variable
  given the three whose sampled states vary most) in one pyrobn call,
  against pgmpy and pyAgrum answering rows one at a time (rows per second); pyrobn
  answers each distinct row once, so the count of distinct rows and pyrobn's rate on
  the distinct rows alone (no repeats) are printed too, and its batched answers are
  checked against pgmpy's;
* the junction tree's size and treewidth bound, and pyrobn's time to read the file.

Also pgmpy's own benchmark queries (pgmpy-benchmarks: a 4-variable joint on alarm and on
munin), Pyro's ``pyro.ops.contract.einsum`` on alarm, and the peak memory of all
posteriors on munin.

    python bench/bayesnet_networks.py                        # every network (long)
    python bench/bayesnet_networks.py --networks asia,alarm --queries 40
    python bench/bayesnet_networks.py --quick                # small networks, few queries
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import logging
import math
import statistics
import time
import tracemalloc
import warnings
from collections.abc import Callable

import numpy as np
import torch

import pyrobn

EXAMPLES = os.path.join(os.path.dirname(__import__("pgmpy").__file__), "utils", "example_models")
ALL = [
    "asia", "cancer", "earthquake", "sachs", "survey", "alarm", "barley", "child",
    "insurance", "mildew", "water", "hailfinder", "hepar2", "win95pts", "andes",
    "diabetes", "link", "pathfinder", "pigs", "munin1", "munin2", "munin3", "munin4", "munin",
]  # fmt: skip
QUICK = ["asia", "sachs", "alarm", "child", "insurance", "hepar2", "win95pts"]


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1e3:.3g}" if seconds < 10 else f"{seconds * 1e3:.0f}"


def timed(fn: Callable[..., object], *args: object, **kwargs: object) -> tuple[float, object]:
    """(seconds, fn(*args, **kwargs))."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def timed_median(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """(median seconds over ``repeats`` calls, the last call's result): one call on a
    shared machine can be slowed twofold by a neighbour."""
    times, out = [], None
    for _ in range(repeats):
        t, out = timed(fn)
        times.append(t)
    return statistics.median(times), out


# ---------------------------------------------------------------------------- peers


def agrum_network(net):
    """The same network in pyAgrum (nodes n0, n1, ... with pyrobn's tables)."""
    import pyagrum as gum

    names = {v: f"n{i}" for i, v in enumerate(net.variables)}
    bn = gum.BayesNet()
    for v in net.variables:
        bn.add(gum.LabelizedVariable(names[v], names[v], net.cardinality(v)))
    for v in net.variables:
        for p in net.parents(v):
            bn.addArc(names[p], names[v])
    for v in net.variables:
        axes = list(reversed(bn.cpt(names[v]).names))
        order = [names[x] for x in (*net.parents(v), v)]
        table = np.transpose(net.table(v).numpy(), [order.index(a) for a in axes])
        bn.cpt(names[v]).fillWith(table.reshape(-1).tolist())
    return bn, names


def queries(net, n: int, seed: int):
    """n random query shapes, each twice: (target, evidence, repeated?) in stream order."""
    rng = np.random.default_rng(seed)
    sample = net.sample(2 * n, seed=seed)
    shapes = []
    for _ in range(n):
        order = rng.permutation(len(net.variables))
        target = net.variables[order[0]]
        observed = [net.variables[i] for i in order[1 : 1 + int(rng.integers(0, 5))]]
        shapes.append((target, observed))
    stream = []
    for k, (target, observed) in enumerate(shapes):  # each shape new, then repeated
        stream.append((target, {v: int(sample[v][k]) for v in observed}, False))
        stream.append((target, {v: int(sample[v][n + k]) for v in observed}, True))
    return stream


# ---------------------------------------------------------------------------- one network


def bench_network(name: str, args: argparse.Namespace) -> dict:
    import pyagrum as gum
    from pgmpy.inference import VariableElimination

    path = os.path.join(EXAMPLES, f"{name}.bif.gz")
    read_s, net = timed(lambda: pyrobn.read_network(path, device="cpu"))
    if name == "munin1":
        net.memory_budget = 8 * 2**30  # its junction tree needs about 3 GiB
    jt = net.junction_tree()
    row = {
        "name": name,
        "V": len(net.variables),
        "read_ms": read_s * 1e3,
        "jt_mib": jt.size * 8 / 2**20,
        "width": jt.width,
    }
    model = net.to_pgmpy()
    ve = VariableElimination(model)
    bn, names = agrum_network(net)
    single = gum.LazyPropagation(bn)
    single.setNumberOfThreads(1)
    nan = float("nan")

    def guarded(fn):  # pyAgrum may run out of memory (link: std::bad_alloc): NaN then
        try:
            return fn()
        except Exception as exc:
            row["agrum_error"] = f"{type(exc).__name__}: {str(exc)[:60]}"
            return None

    # --- single queries
    stream = queries(net, args.queries, seed=1)
    ours: list[tuple[float, bool]] = []
    theirs, agrum, worst = [], [], 0.0
    started = time.perf_counter()
    for target, evidence, repeated in stream:
        if not repeated and time.perf_counter() - started > args.budget_s and len(ours) >= 20:
            break  # a heavy network: fewer query shapes (the count is printed)
        t_ours, answer = timed(net.query, target, evidence)
        ours.append((t_ours, repeated))
        named = {v: net.state_names(v)[s] for v, s in evidence.items()}
        t_pgmpy, factor = timed(ve.query, [target], evidence=named, show_progress=False)
        theirs.append(t_pgmpy)
        worst = max(worst, float(np.abs(answer.numpy() - factor.values).max()))

        def agrum_query(target=target, evidence=evidence):
            single.eraseAllEvidence()
            single.eraseAllTargets()
            single.setEvidence({names[v]: s for v, s in evidence.items()})
            single.addTarget(names[target])
            single.makeInference()
            return single.posterior(names[target])

        t_agrum, ok = timed(guarded, agrum_query)
        agrum.append(t_agrum if ok is not None else nan)
    row["n_queries"] = len(ours)
    row["q_new"] = statistics.median(t for t, r in ours if not r)
    row["q_rep"] = statistics.median(t for t, r in ours if r)
    row["q_mix"] = statistics.median(t for t, _ in ours)
    row["q_pgmpy"] = statistics.median(theirs)
    row["q_agrum"] = statistics.median(agrum) if not any(map(math.isnan, agrum)) else nan
    row["q_faster_share"] = sum(p > o for (o, _), p in zip(ours, theirs)) / len(ours)
    row["max_diff"] = worst

    # --- all posteriors
    rng = np.random.default_rng(2)
    sample = net.sample(args.posteriors, seed=3)
    everything = gum.LazyPropagation(bn)
    everything.setNumberOfThreads(1)
    t_ours, t_first, t_pgmpy, t_agrum = [], [], [], []
    for k in range(args.posteriors):
        observed = [net.variables[i] for i in rng.permutation(len(net.variables))[:3]]
        evidence = {v: int(sample[v][k]) for v in observed}
        # the first call builds the tree and the potentials (and, on big networks, the
        # tree for this set of observed variables, or the plans of its queries)
        t, _ = timed(net.marginals, evidence)
        t_first.append(t)
        t, posteriors = timed_median(lambda evidence=evidence: net.marginals(evidence), 3)
        t_ours.append(t)
        free = [v for v in net.variables if v not in evidence]
        subset = free if len(free) <= args.pgmpy_vars else list(rng.choice(free, args.pgmpy_vars))
        named = {v: net.state_names(v)[s] for v, s in evidence.items()}
        start = time.perf_counter()
        for v in subset:
            factor = ve.query([v], evidence=named, show_progress=False)
            worst = max(worst, float(np.abs(posteriors[v].numpy() - factor.values).max()))
        t_pgmpy.append((time.perf_counter() - start) * len(free) / len(subset))

        def agrum_all(evidence=evidence):
            everything.eraseAllEvidence()
            everything.setEvidence({names[v]: s for v, s in evidence.items()})
            everything.makeInference()
            return [everything.posterior(names[v]) for v in net.variables]

        t, ok = timed_median(lambda agrum_all=agrum_all: guarded(agrum_all), 3)
        t_agrum.append(t if ok is not None else nan)
    row["all"] = statistics.median(t_ours)
    row["all_first"] = statistics.median(t_first)
    row["all_pgmpy"] = statistics.median(t_pgmpy)
    row["all_pgmpy_estimated"] = len(net.variables) - 3 > args.pgmpy_vars
    row["all_agrum"] = statistics.median(t_agrum) if not any(map(math.isnan, t_agrum)) else nan
    row["max_diff"] = worst

    # --- batched throughput: one shape, many rows
    target = net.variables[-1]
    rows = net.sample(args.batch, seed=4)
    # the three variables whose sampled values vary most (most distinct states, then
    # network order), so that the rows are not one scenario repeated
    variety = {v: len(torch.unique(rows[v])) for v in net.variables[:-1]}
    observed = sorted(net.variables[:-1], key=lambda v: -variety[v])[:3]
    batch = {v: rows[v] for v in observed}
    t_ten, _ = timed(net.query, target, {v: c[:10] for v, c in batch.items()})
    n_rows = args.batch
    if t_ten / 10 * args.batch > args.budget_s:  # a heavy network: fewer rows (printed)
        n_rows = max(100, int(args.budget_s / (t_ten / 10)))
    batch = {v: c[:n_rows] for v, c in batch.items()}
    t, answers = timed(net.query, target, batch)
    row["batch_rows"] = n_rows
    row["batch_rps"] = n_rows / t
    # pyrobn answers each distinct row once: its rate on the distinct rows alone too
    distinct = torch.unique(torch.stack([batch[v] for v in observed], 1), dim=0)
    row["batch_distinct"] = distinct.shape[0]
    t, _ = timed(net.query, target, {v: distinct[:, j] for j, v in enumerate(observed)})
    row["batch_distinct_rps"] = distinct.shape[0] / t
    n_one = min(n_rows, args.one_at_a_time)
    start = time.perf_counter()
    theirs = []
    for b in range(n_one):
        named = {v: net.state_names(v)[int(batch[v][b])] for v in observed}
        theirs.append(ve.query([target], evidence=named, show_progress=False).values)
    row["batch_pgmpy_rps"] = n_one / (time.perf_counter() - start)
    worst = max(worst, float(np.abs(answers[:n_one].numpy() - np.stack(theirs)).max()))
    row["max_diff"] = worst

    def agrum_rows():
        for b in range(n_one):
            single.eraseAllEvidence()
            single.eraseAllTargets()
            single.setEvidence({names[v]: int(batch[v][b]) for v in observed})
            single.addTarget(names[target])
            single.makeInference()
            single.posterior(names[target])
        return True

    t, ok = timed(guarded, agrum_rows)
    row["batch_agrum_rps"] = n_one / t if ok is not None else nan
    return row


# ---------------------------------------------------------------------------- extras


def pgmpy_published(args: argparse.Namespace) -> list[str]:
    """pgmpy-benchmarks' queries: a 4-variable joint without evidence on alarm and munin."""
    from pgmpy.inference import VariableElimination

    cases = {
        "alarm": ["VENTLUNG", "VENTALV", "ARTCO2", "CATECHOL"],
        "munin": [
            "L_LNLC8_ADM_MALOSS",
            "L_LNLLP_ADM_MALOSS",
            "L_LNLC8_LP_ADM_MALOSS",
            "L_LNLE_ADM_MALOSS",
        ],
    }
    lines = []
    for name, variables in cases.items():
        if name not in args.networks:
            continue
        net = pyrobn.read_network(os.path.join(EXAMPLES, f"{name}.bif.gz"), device="cpu")
        model = net.to_pgmpy()
        ours = []
        for _ in range(args.repeats):
            net._flat_engine.clear()  # a new shape every time (as a new engine would)
            t, joint = timed(net.query, variables)
            ours.append(t)
        theirs = []
        for _ in range(args.repeats):
            t, factor = timed(
                lambda m=model, v=variables: VariableElimination(m).query(v, show_progress=False)
            )
            theirs.append(t)
        factor = factor.marginalize([], inplace=False)
        expected = np.transpose(factor.values, [factor.variables.index(v) for v in variables])
        diff = float(np.abs(joint.numpy() - expected).max())
        lines.append(
            f"| {name}: p({', '.join(variables)}) | {ms(statistics.median(ours))} | "
            f"{ms(statistics.median(theirs))} | "
            f"{statistics.median(theirs) / statistics.median(ours):.0f}x | {diff:.1e} |"
        )
    return lines


def pyro_contract_row(args: argparse.Namespace) -> str:
    """Pyro's pyro.ops.contract.einsum on alarm's single queries (its own opt_einsum
    path per call; ``modulo_total``: the result is normalised here), against pyrobn on
    the same queries."""
    import opt_einsum
    from pyro.ops.contract import einsum

    net = pyrobn.read_network(os.path.join(EXAMPLES, "alarm.bif.gz"), device="cpu")
    symbol = {v: opt_einsum.get_symbol(i) for i, v in enumerate(net.variables)}
    tables = [net.table(v) for v in net.variables]
    t_pyro, t_ours, worst = [], [], 0.0
    for target, evidence, _ in queries(net, args.queries, seed=5):
        operands, terms = [], []
        for v, table in zip(net.variables, tables):
            scope = [*net.parents(v), v]
            index = tuple(evidence.get(u, slice(None)) for u in scope)
            operands.append(table[index])
            terms.append("".join(symbol[u] for u in scope if u not in evidence))
        equation = ",".join(terms) + "->" + symbol[target]
        t, (out,) = timed(einsum, equation, *operands, backend="torch", modulo_total=True)
        t_pyro.append(t)
        t2, ours = timed(net.query, target, evidence)
        t_ours.append(t2)
        worst = max(worst, float((out / out.sum() - ours).abs().max()))
    return (
        f"| alarm, {len(t_pyro)} single queries | {ms(statistics.median(t_ours))} | "
        f"{ms(statistics.median(t_pyro))} | "
        f"{statistics.median(t_pyro) / statistics.median(t_ours):.0f}x | {worst:.1e} |"
    )


def munin_memory() -> str:
    net = pyrobn.read_network(os.path.join(EXAMPLES, "munin.bif.gz"), device="cpu")
    tracemalloc.start()
    start = time.perf_counter()
    net.marginals({net.variables[0]: 0})
    first = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    jt = net.junction_tree()
    return (
        f"munin, all posteriors: peak {peak / 2**20:.0f} MiB of numpy/Python allocations "
        f"during the first call (tree, potentials, calibration: {first:.1f} s); junction "
        f"tree {jt.size:,} entries ({jt.size * 8 / 2**20:.0f} MiB), treewidth bound "
        f"{jt.width}, triangulated by {jt.heuristic}"
    )


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=None, help="comma-separated (default: all)")
    parser.add_argument("--queries", type=int, default=100, help="query shapes per network")
    parser.add_argument("--posteriors", type=int, default=5, help="evidence sets")
    parser.add_argument("--batch", type=int, default=10_000, help="rows in one call")
    parser.add_argument("--one-at-a-time", type=int, default=100, help="rows for the peers")
    parser.add_argument("--pgmpy-vars", type=int, default=40, help="pgmpy queries per set")
    parser.add_argument("--repeats", type=int, default=5, help="pgmpy's published queries")
    parser.add_argument(
        "--budget-s", type=float, default=120.0, help="seconds per network and section"
    )
    parser.add_argument("--quick", action="store_true", help="small networks, few queries")
    args = parser.parse_args()
    if args.quick:
        args.networks = args.networks or ",".join(QUICK)
        args.queries, args.posteriors, args.batch, args.one_at_a_time = 20, 2, 1000, 20
    args.networks = args.networks.split(",") if args.networks else ALL
    torch.set_num_threads(1)
    logging.getLogger("pgmpy").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    import pgmpy
    import pyagrum

    print(
        f"pyrobn {pyrobn.__version__}, pgmpy {pgmpy.__version__}, pyAgrum {pyagrum.__version__}, "
        f"torch {torch.__version__}; one thread; {args.queries} query shapes x 2 per network"
    )
    header = (
        "| network | V | JT MiB (tw) | read ms | pyrobn new / repeated / mixed ms | pgmpy ms "
        "| pyAgrum ms | vs pgmpy (medians; share of queries faster) "
        "| all posteriors: pyrobn (first call) / pgmpy / pyAgrum ms | vs pgmpy, vs pyAgrum "
        "| batched rows/s: pyrobn / pgmpy / pyAgrum | vs pgmpy "
        "| distinct rows: count, pyrobn rows/s, vs pgmpy | max diff |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    warm = pyrobn.student_network(device="cpu")  # load the compiled kernels before timing
    warm.query("x1", {"x4": 1}), warm.marginals({"x4": 1}), warm.mpe({"x4": 1})
    rows = []
    for name in args.networks:
        try:
            row = bench_network(name, args)
        except Exception as exc:
            print(f"| {name} | failed: {type(exc).__name__}: {str(exc)[:120]} |")
            continue
        rows.append(row)
        est = "~" if row["all_pgmpy_estimated"] else ""
        print(
            f"| {name} | {row['V']} | {row['jt_mib']:.1f} ({row['width']}) | "
            f"{row['read_ms']:.0f} | {ms(row['q_new'])} / {ms(row['q_rep'])} / "
            f"{ms(row['q_mix'])}{'' if row['n_queries'] == 2 * args.queries else '*'} | "
            f"{ms(row['q_pgmpy'])} | {ms(row['q_agrum'])} | "
            f"{row['q_pgmpy'] / row['q_mix']:.1f}x, {row['q_faster_share']:.0%} | "
            f"{ms(row['all'])} ({ms(row['all_first'])}) / {est}{ms(row['all_pgmpy'])} / "
            f"{ms(row['all_agrum'])} | "
            f"{est}{row['all_pgmpy'] / row['all']:.0f}x, {row['all_agrum'] / row['all']:.1f}x | "
            f"{row['batch_rps']:.3g}{'' if row['batch_rows'] == args.batch else '*'} / "
            f"{row['batch_pgmpy_rps']:.3g} / "
            f"{row['batch_agrum_rps']:.3g} | {row['batch_rps'] / row['batch_pgmpy_rps']:.0f}x | "
            f"{row['batch_distinct']}, {row['batch_distinct_rps']:.3g}, "
            f"{row['batch_distinct_rps'] / row['batch_pgmpy_rps']:.0f}x | "
            f"{row['max_diff']:.1e} |"
            + (f" pyAgrum: {row['agrum_error']}" if "agrum_error" in row else ""),
            flush=True,
        )
    print(
        "\n* fewer query shapes or rows than asked (the section's time budget, --budget-s); "
        "~ pgmpy's all-posteriors time scaled from --pgmpy-vars variables"
    )
    if rows:
        vs_agrum = [r["all_agrum"] / r["all"] for r in rows if not math.isnan(r["all_agrum"])]
        ratios = [r["q_pgmpy"] / r["q_mix"] for r in rows]
        vs_pgmpy = [r["all_pgmpy"] / r["all"] for r in rows]
        print(
            f"\nsingle queries vs pgmpy: median ratio {statistics.median(ratios):.1f}x, "
            f"lowest {min(ratios):.1f}x ({rows[int(np.argmin(ratios))]['name']}); "
            f"all posteriors vs pgmpy: lowest {min(vs_pgmpy):.1f}x "
            f"({rows[int(np.argmin(vs_pgmpy))]['name']}), vs pyAgrum: lowest "
            f"{min(vs_agrum):.2f}x; "
            f"largest difference from "
            f"pgmpy {max(r['max_diff'] for r in rows):.1e}"
        )
    print("\n| pgmpy's benchmark query | pyrobn ms | pgmpy ms | ratio | max diff |")
    print("|---|---|---|---|---|")
    for line in pgmpy_published(args):
        print(line)
    if "alarm" in args.networks:
        print("\n| Pyro's contract | pyrobn ms | pyro.ops.contract.einsum ms | ratio | max diff |")
        print("|---|---|---|---|---|")
        print(pyro_contract_row(args))
    if "munin" in args.networks:
        print("\n" + munin_memory())
    print(f"\nGPU: {'none' if not torch.cuda.is_available() else torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
