"""Exact queries on the student network: pyrobn against pgmpy's VariableElimination.

Both answer the same queries on the same network in the same run (answers checked
equal). Printed: the latency of one query (best of several repeats after a warm-up),
and the throughput of batched queries (10,000 evidence rows in one pyrobn call)
against pgmpy answering them one at a time; with the issue's targets (one query at
most half of pgmpy's time; batched throughput at least 1,000x pgmpy's).

    python bench/bayesnet_query.py            # full run
    python bench/bayesnet_query.py --quick    # a short run
    python bench/bayesnet_query.py --threads 2

Torch runs on one thread by default (pgmpy's numpy work on these tables is
single-threaded too, and the machine is shared).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

import pyrobn


def best_time(fn: Callable[[], object], repeats: int, number: int) -> float:
    """Seconds per call: the best of ``repeats`` timings of ``number`` calls, after a warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def pgmpy_model(net: pyrobn.DiscreteBayesianNetwork):
    """The same network in pgmpy (tables copied from ``net``)."""
    from pgmpy.factors.discrete import TabularCPD

    try:
        from pgmpy.models import DiscreteBayesianNetwork as PgmpyBN
    except ImportError:  # older pgmpy
        from pgmpy.models import BayesianNetwork as PgmpyBN

    edges = [(p, n) for n in net.variables for p in net.parents(n)]
    model = PgmpyBN(edges)
    for n in net.variables:
        table = net.table(n).cpu().numpy()
        parents = list(net.parents(n))
        card = table.shape[-1]
        values = table.reshape(-1, card).T  # columns: parent assignments, last parent fastest
        cpd = TabularCPD(
            n,
            card,
            values,
            evidence=parents or None,
            evidence_card=[net.cardinality(p) for p in parents] or None,
        )
        model.add_cpds(cpd)
    model.check_model()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--batch", type=int, default=10_000, help="evidence rows per batch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("pgmpy").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    from pgmpy.inference import VariableElimination

    repeats, number = (3, 50) if args.quick else (7, 300)
    pg_number = 20 if args.quick else 100
    net = pyrobn.student_network(device="cpu")
    ve = VariableElimination(pgmpy_model(net))

    queries = [
        ("x2", {}),
        ("x1", {"x2": 0}),
        ("x3", {"x2": 1}),
        ("x1", {"x4": 1}),
        ("x2", {"x3": 1, "x4": 0}),
    ]
    rows = []
    for var, evidence in queries:
        ours = net.query(var, evidence=evidence).numpy()
        theirs = ve.query([var], evidence=evidence or None, show_progress=False).values
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
        t_ours = best_time(lambda v=var, e=evidence: net.query(v, evidence=e), repeats, number)
        t_pg = best_time(
            lambda v=var, e=evidence: ve.query([v], evidence=e or None, show_progress=False),
            repeats,
            pg_number,
        )
        label = (
            f"p({var}"
            + (" | " + ", ".join(f"{k}={v}" for k, v in evidence.items()) if evidence else "")
            + ")"
        )
        rows.append((label, t_ours, t_pg))

    # batched: B evidence rows (x2, x4) answered in one call vs pgmpy one at a time
    gen = torch.Generator().manual_seed(0)
    B = args.batch
    x2 = torch.randint(0, 2, (B,), generator=gen)
    x4 = torch.randint(0, 2, (B,), generator=gen)
    batch = {"x2": x2, "x4": x4}
    answers = net.query("x1", evidence=batch)
    for b in range(0, B, max(1, B // 20)):
        single = ve.query(
            ["x1"], evidence={"x2": int(x2[b]), "x4": int(x4[b])}, show_progress=False
        ).values
        np.testing.assert_allclose(answers[b].numpy(), single, rtol=1e-9, atol=1e-12)
    t_batch = best_time(lambda: net.query("x1", evidence=batch), repeats, 5 if args.quick else 20)
    pg_rows = 50 if args.quick else 200

    def pgmpy_loop() -> None:
        for b in range(pg_rows):
            ve.query(["x1"], evidence={"x2": int(x2[b]), "x4": int(x4[b])}, show_progress=False)

    t_pg_loop = best_time(pgmpy_loop, max(2, repeats // 2), 1) / pg_rows

    # for reference: one exact query through a Pyro trace of the model/guide pair
    from pyro.infer import TraceEnum_ELBO

    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    one_row = {"x2": torch.tensor([0])}
    pyro_log_ev = -elbo.loss(net.model, net.guide, one_row)
    assert abs(pyro_log_ev - net.log_evidence({"x2": 0})) < 1e-12
    t_pyro = best_time(lambda: elbo.loss(net.model, net.guide, one_row), repeats, number // 10)
    t_log_ev = best_time(lambda: net.log_evidence({"x2": 0}), repeats, number)
    qps_ours, qps_pg = B / t_batch, 1 / t_pg_loop

    print(
        f"student network (notes 2.1.1); torch threads = {args.threads}; "
        f"pyrobn {pyrobn.__version__}, torch {torch.__version__}"
    )
    print()
    print(f"{'single query':28s} {'pyrobn (us)':>12s} {'pgmpy VE (us)':>14s} {'pyrobn/pgmpy':>13s}")
    for label, t_ours, t_pg in rows:
        print(f"{label:28s} {t_ours * 1e6:12.1f} {t_pg * 1e6:14.1f} {t_ours / t_pg:13.3f}")
    worst = max(t_ours / t_pg for _, t_ours, t_pg in rows)
    print(f"{'log p(x2=0), pyrobn':28s} {t_log_ev * 1e6:12.1f}")
    print(f"{'log p(x2=0), Pyro TraceEnum':28s} {t_pyro * 1e6:12.1f}   (one trace per query)")
    print()
    print(f"{'batched p(x1 | x2, x4)':28s} {'queries/s':>12s}")
    print(f"{'pyrobn, ' + str(B) + ' rows in one call':28s} {qps_ours:12.0f}")
    print(f"{'pgmpy VE, one at a time':28s} {qps_pg:12.0f}")
    print(f"{'ratio pyrobn/pgmpy':28s} {qps_ours / qps_pg:12.0f}x")
    print()
    ok_single = worst <= 0.5
    ok_batch = qps_ours / qps_pg >= 1000
    print(
        f"target: one query <= 0.5 x pgmpy's time: worst ratio {worst:.3f} "
        f"-> {'met' if ok_single else 'NOT met'}"
    )
    print(
        f"target: batched >= 1000 x pgmpy's throughput: {qps_ours / qps_pg:.0f}x "
        f"-> {'met' if ok_batch else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
