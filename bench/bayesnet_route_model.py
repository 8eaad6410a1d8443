"""Fit the cost model that picks the route of all posteriors (``net.marginals``).

For every network and several evidence sets (1-6 findings drawn from a forward sample),
time both routes — one junction-tree calibration, and the per-variable queries run as
one shared plan — each one run of the compiled kernel, and fit by least squares
(relative error), over both routes' runs,

    seconds ≈ KERNEL_SECONDS_PER_COST x plan cost + KERNEL_SECONDS_PER_STEP x steps

Prints each case with both times, the cases that ``marginals``' decision (with the
fitted constants, its bounds included) routes wrongly and what that costs, and the
constants to put in ``pyrobn/models/bayesnet/queries.py``.

    python bench/bayesnet_route_model.py                       # every network (long)
    python bench/bayesnet_route_model.py --networks alarm,water,pigs
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import math
import time

import numpy as np
import torch

import pyrobn
from pyrobn.models.bayesnet import queries

EXAMPLES = os.path.join(os.path.dirname(__import__("pgmpy").__file__), "utils", "example_models")
ALL = [
    "asia", "earthquake", "sachs", "alarm", "child", "insurance", "hailfinder", "water",
    "mildew", "barley", "pathfinder", "andes", "pigs", "win95pts", "hepar2", "diabetes",
    "munin2", "munin3", "munin4", "munin",
]  # fmt: skip
FINDINGS = (1, 2, 3, 3, 4, 6)


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cases(name: str) -> list[dict]:
    net = pyrobn.read_network(os.path.join(EXAMPLES, name + ".bif.gz"))
    rng = np.random.default_rng(11)
    sample = net.sample(len(FINDINGS), seed=5)
    out = []
    for k, n_obs in enumerate(FINDINGS):
        observed = [net.variables[i] for i in rng.permutation(len(net.variables))[:n_obs]]
        evidence = {v: int(sample[v][k]) for v in observed}
        ids = tuple(sorted(net.variables.index(v) for v in evidence))
        free = tuple(v for v in range(len(net.variables)) if v not in ids)
        if not free:
            continue
        tree = net._tree_for(ids)
        calibrated = tree.size <= queries.PER_VARIABLE_ENTRIES
        row = {"net": name, "findings": n_obs, "tree": math.inf}
        for route in (False, True) if calibrated else (True,):
            net._queries_cheaper = lambda *args, route=route: route
            net.marginals(evidence)  # plans and trees built
            row["queries" if route else "tree"] = best_of(
                lambda evidence=evidence: net.marginals(evidence)
            )
        del net._queries_cheaper
        shared = net._flat_engine.posteriors_plan(free, ids).flat
        row |= {
            "decide": (net, ids, free),
            "shared": (shared.cost, len(shared.starts)),
            "calibration": (tree.plan().cost, len(tree.plan().starts)) if calibrated else None,
        }
        out.append(row)
        print(
            f"{name:11s} findings {n_obs}: calibration {row['tree'] * 1e3:9.2f} ms, "
            f"queries {row['queries'] * 1e3:9.2f} ms",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", default=",".join(ALL))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [r for name in args.networks.split(",") for r in cases(name)]
    runs = [(r["shared"], r["queries"]) for r in rows]
    runs += [(r["calibration"], r["tree"]) for r in rows if r["calibration"] is not None]
    a = np.array([features for features, _ in runs], dtype=float)
    y = np.array([seconds for _, seconds in runs])
    fit = np.linalg.lstsq(a / y[:, None], np.ones(len(y)), rcond=None)[0]
    queries.KERNEL_SECONDS_PER_COST, queries.KERNEL_SECONDS_PER_STEP = fit
    wrong, lost, total, best = 0, [], 0.0, 0.0
    print()
    for r in rows:
        net, ids, free = r["decide"]
        picked = r["queries"] if net._decide_route(ids, free, True) else r["tree"]
        fastest = min(r["tree"], r["queries"])
        total, best = total + picked, best + fastest
        if picked > fastest:
            wrong += 1
            lost.append(picked / fastest)
            print(
                f"routed wrongly: {r['net']} findings {r['findings']}: "
                f"{picked * 1e3:.2f} ms instead of {fastest * 1e3:.2f} ms"
            )
    print(
        f"{len(rows)} cases; routed wrongly: {wrong} (worst {max(lost, default=1):.2f}x slower); "
        f"all cases {total * 1e3:.0f} ms as routed, {best * 1e3:.0f} ms by the faster route of each"
    )
    print(f"KERNEL_SECONDS_PER_COST = {fit[0]:.3g}")
    print(f"KERNEL_SECONDS_PER_STEP = {fit[1]:.3g}")


if __name__ == "__main__":
    main()
