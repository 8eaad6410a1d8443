"""Benchmark: pyrobn.KDE against scikit-learn's KernelDensity, and the full GaussianMixture
against scikit-learn's GaussianMixture, measured in one run (warm-up, best of repeats).

    python bench/density.py            # 10,000 x 10,000 KDE in 2-D; 20,000-point mixture
    python bench/density.py --quick    # small sizes
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.neighbors import KernelDensity

from pyrobn import KDE, GaussianMixture
from pyrobn.datasets import gaussian_blobs


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls after one warm-up call; returns (seconds, result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def bench_kde(n: int, m: int, d: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(n, d))
    queries = rng.normal(size=(m, d)) * 1.2
    h = 0.25
    ours = KDE(torch.as_tensor(data), bandwidth=h)
    q = torch.as_tensor(queries)
    sk = KernelDensity(bandwidth=h, kernel="gaussian").fit(data)
    t_ours, lp_ours = best_time(lambda: ours.log_prob(q), repeats)
    t_sk, lp_sk = best_time(lambda: sk.score_samples(queries), repeats)
    err = float(np.abs(lp_ours.numpy() - lp_sk).max())
    pairs = n * m
    print(f"\nKDE log-density, {m:,} queries x {n:,} points in {d}-D, float64, h = {h}")
    print(f"{'':24s}{'seconds':>10s}{'Mpairs/s':>12s}")
    print(f"{'pyrobn.KDE':24s}{t_ours:10.3f}{pairs / t_ours / 1e6:12.1f}")
    print(f"{'sklearn KernelDensity':24s}{t_sk:10.3f}{pairs / t_sk / 1e6:12.1f}")
    print(f"speed-up (sklearn time / pyrobn time): {t_sk / t_ours:.2f}x; max |diff| = {err:.1e}")


def bench_mixture(n: int, repeats: int) -> None:
    x = gaussian_blobs(n, 0)
    xt = torch.as_tensor(x)
    tol = 1e-6

    def fit_ours() -> GaussianMixture:
        gm = GaussianMixture(3, dim=2, learn="all")
        gm.fit(xt, method="em", max_iter=1000, tol=tol, restarts=1, seed=0)
        return gm

    def fit_sk() -> SkGaussianMixture:
        return SkGaussianMixture(3, tol=tol, max_iter=1000, n_init=1, random_state=0).fit(x)

    t_ours, gm = best_time(fit_ours, repeats)
    t_sk, sk = best_time(fit_sk, repeats)
    ll_ours, ll_sk = gm.score(xt), float(sk.score(x))
    print(f"\nFull Gaussian mixture fit, K = 3, D = 2, N = {n:,}, EM to tol {tol} (1 init)")
    print(f"{'':28s}{'seconds':>10s}{'iterations':>12s}{'mean log-lik':>15s}")
    print(f"{'pyrobn (EM path)':28s}{t_ours:10.3f}{gm.fit_result_.n_iter:12d}{ll_ours:15.6f}")
    print(f"{'sklearn GaussianMixture':28s}{t_sk:10.3f}{sk.n_iter_:12d}{ll_sk:15.6f}")
    print(
        f"time ratio (sklearn / pyrobn): {t_sk / t_ours:.2f}x; log-lik gap {ll_ours - ll_sk:+.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.quick:
        bench_kde(2000, 2000, 2, repeats=1)
        bench_mixture(2000, repeats=1)
    else:
        bench_kde(10_000, 10_000, 2, repeats=3)
        bench_mixture(20_000, repeats=3)


if __name__ == "__main__":
    main()
