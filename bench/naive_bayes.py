"""Gaussian naive Bayes: fit + predict_proba time, pyrobn against scikit-learn's GaussianNB.

Data: N x D float64 (default 100,000 x 50) drawn from a Gaussian naive Bayes model with
C classes. Each row of the table is the best of ``--repeats`` runs after one warm-up;
both libraries are timed in the same process, interleaved, so machine load hits both.
The predictions are checked to agree (max |p_pyrobn - p_sklearn|) before timing.

    python bench/naive_bayes.py            # C in {2, 10}, 7 repeats
    python bench/naive_bayes.py --quick    # smaller, 3 repeats
    python bench/naive_bayes.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.naive_bayes import GaussianNB

import pyrobn


def best_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def data(n: int, d: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(c, d))
    scales = 0.5 + rng.random((c, d))
    y = rng.integers(0, c, n)
    return means[y] + scales[y] * rng.normal(size=(n, d)), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 3 repeats")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--classes", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 20_000, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Gaussian naive Bayes, {args.rows:,} x {args.features} float64; best of {args.repeats}; "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads; "
        f"load average {load:.1f} on {os.cpu_count()} cores"
    )
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    header = (
        f"{'C':>3} {'library':<16} {'fit s':>9} {'predict s':>10} {'total s':>9} {'speed-up':>9}"
    )
    print(header)
    print("-" * len(header))
    for c in args.classes:
        X, y = data(args.rows, args.features, c)
        sk_fit = best_time(lambda X=X, y=y: GaussianNB().fit(X, y), args.repeats, lambda: None)
        sk_model = GaussianNB().fit(X, y)
        sk_pred = best_time(lambda X=X, m=sk_model: m.predict_proba(X), args.repeats, lambda: None)
        sk_total = sk_fit + sk_pred
        print(f"{c:>3} {'scikit-learn':<16} {sk_fit:9.4f} {sk_pred:10.4f} {sk_total:9.4f} {1:9.2f}")
        for dev in devices:
            Xt, yt = torch.as_tensor(X, device=dev), torch.as_tensor(y, device=dev)
            sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
            model = pyrobn.NaiveBayes("gaussian").fit(Xt, yt)
            diff = np.abs(model.predict_proba(Xt).cpu().numpy() - sk_model.predict_proba(X)).max()
            assert diff < 1e-6, f"pyrobn and scikit-learn disagree by {diff}"
            fit = best_time(
                lambda Xt=Xt, yt=yt: pyrobn.NaiveBayes("gaussian").fit(Xt, yt), args.repeats, sync
            )
            pred = best_time(lambda Xt=Xt, m=model: m.predict_proba(Xt), args.repeats, sync)
            name = f"pyrobn ({dev.type})"
            print(
                f"{c:>3} {name:<16} {fit:9.4f} {pred:10.4f} {fit + pred:9.4f} "
                f"{sk_total / (fit + pred):9.2f}"
            )
    print("speed-up = scikit-learn's fit + predict_proba time / pyrobn's, measured in this run")


if __name__ == "__main__":
    main()
