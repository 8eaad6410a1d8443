"""Benchmark: pyrobn's HMM kernels against hmmlearn's fastest setting, in one run.

hmmlearn 0.3 ``CategoricalHMM(implementation="scaling")``: ``score`` (forward algorithm)
and ``decode`` (Viterbi), against ``HiddenMarkovModel.log_prob`` and ``.viterbi`` on the
same random model and data (float64 both). Cases: one sequence of T = 100,000 steps and a
batch of 256 sequences of T = 200, for K in {4, 16, 64} states and 50 symbols. Each time
is the best of several repeats after a warm-up; ratio = hmmlearn time / pyrobn time (> 1:
pyrobn is faster). Results are checked to agree before they are timed. On CPU, pyrobn's
kernels are chosen by ``pyrobn.infer.hmm_ops.BACKEND`` ("auto": the numba-compiled Viterbi,
and the compiled forward algorithm on batches of many sequences with few states);
``--backend torch`` times the chunked torch kernels (the ones CUDA runs), ``--backend
compiled`` the compiled loops.

    python bench/hmm.py            # full run
    python bench/hmm.py --quick    # fewer repeats, smaller single sequence
    python bench/hmm.py --kernel-threads   # torch's threads pinned to 1 in a kernel, or not

``--kernel-threads`` times each query of ``HiddenMarkovModel`` with
``hmm_ops.KERNEL_THREADS = 1`` (torch's intra-op threads pinned to 1 while a kernel runs,
the default) against ``None`` (the caller's count), interleaved, medians of 7: the
measurement behind ``pyrobn.infer.hmm_ops.kernel_threads``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from hmmlearn import hmm

import pyrobn
from pyrobn.infer import hmm_ops


def best_times(first: Callable[[], object], second: Callable[[], object], repeats: int):
    """Best-of-``repeats`` times of two functions, run alternately after a warm-up of each
    (so that a change in the machine's load hits both sides alike)."""
    first()
    second()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for i, fn in enumerate((first, second)):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def random_models(k: int, v: int, seed: int, device: torch.device):
    rng = np.random.default_rng(seed)
    start = rng.dirichlet(np.ones(k))
    trans = rng.dirichlet(np.ones(k), size=k)
    emission = rng.dirichlet(np.ones(v), size=k)
    ref = hmm.CategoricalHMM(n_components=k, implementation="scaling")
    ref.startprob_, ref.transmat_, ref.emissionprob_ = start, trans, emission
    ref.n_features = v
    ours = pyrobn.HiddenMarkovModel(
        k,
        emission="categorical",
        n_symbols=v,
        init_probs=torch.tensor(start),
        trans_probs=torch.tensor(trans),
        emission_probs=torch.tensor(emission),
    ).to(device)
    return ref, ours, rng


def run_case(k: int, n_seq: int, length: int, repeats: int, device: torch.device) -> list[str]:
    v = 50
    ref, ours, rng = random_models(k, v, seed=k * 1000 + n_seq, device=device)
    x = rng.integers(0, v, size=(n_seq, length))
    x_ref = x.reshape(-1, 1)
    lengths = [length] * n_seq
    x_ours = torch.as_tensor(x, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    ref_score = ref.score(x_ref, lengths)
    ours_score = float(ours.log_prob(x_ours).sum())
    assert abs(ours_score - ref_score) <= 1e-6 * abs(ref_score), (ours_score, ref_score)
    ref_best, _ = ref.decode(x_ref, lengths)
    _, ours_best = ours.viterbi(x_ours)
    assert abs(float(ours_best.sum()) - ref_best) <= 1e-6 * abs(ref_best)

    def ours_log_prob():
        ours.log_prob(x_ours)
        sync()

    def ours_viterbi():
        ours.viterbi(x_ours)
        sync()

    rows = []
    for name, ref_fn, ours_fn in [
        ("score/log_prob", lambda: ref.score(x_ref, lengths), ours_log_prob),
        ("decode/viterbi", lambda: ref.decode(x_ref, lengths), ours_viterbi),
    ]:
        t_ref, t_ours = best_times(ref_fn, ours_fn, repeats)
        rows.append(
            f"| {n_seq} x {length:>6} | {k:>3} | {name:<15} | {t_ref * 1e3:9.2f} | "
            f"{t_ours * 1e3:9.2f} | {t_ref / t_ours:6.2f}x | {device.type} |"
        )
        print(rows[-1], flush=True)
    return rows


def kernel_threads_check(threads: int) -> None:
    """Each query with torch's threads pinned to 1 during the kernels, and with the caller's
    ``threads``: medians of 7 interleaved runs; ratio = caller's / pinned (> 1: pinning
    is faster)."""
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, caller's threads {threads}; float64; 50 symbols")
    print("| backend | K | sequences | query | pinned ms | caller's ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    saved = hmm_ops.BACKEND, hmm_ops.KERNEL_THREADS
    try:
        for backend in ("auto", "torch"):
            hmm_ops.BACKEND = backend
            for k in (4, 16, 64):
                model = pyrobn.HiddenMarkovModel(k, "categorical", n_symbols=50, seed=k)
                for n, t in ((1, 20_000), (256, 200)):
                    x = torch.randint(50, (n, t), generator=torch.Generator().manual_seed(0))
                    queries = {"log_prob": model.log_prob, "viterbi": model.viterbi}
                    if backend == "auto":  # forward-backward has the torch kernel only
                        queries["predict_proba"] = model.predict_proba
                    for name, fn in queries.items():
                        times: dict[int | None, list[float]] = {1: [], None: []}
                        for setting in (1, None):
                            hmm_ops.KERNEL_THREADS = setting
                            fn(x)
                        for _ in range(7):
                            for setting in (1, None):
                                hmm_ops.KERNEL_THREADS = setting
                                start = time.perf_counter()
                                fn(x)
                                times[setting].append(time.perf_counter() - start)
                        pinned, caller = (statistics.median(times[s]) for s in (1, None))
                        print(
                            f"| {backend} | {k} | {n} x {t} | {name} | {pinned * 1e3:.2f} | "
                            f"{caller * 1e3:.2f} | {caller / pinned:.2f}x |",
                            flush=True,
                        )
    finally:
        hmm_ops.BACKEND, hmm_ops.KERNEL_THREADS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, T = 20,000")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--backend", choices=hmm_ops.BACKENDS, default=hmm_ops.BACKEND)
    parser.add_argument(
        "--kernel-threads",
        type=int,
        nargs="?",
        const=2,
        default=None,
        metavar="THREADS",
        help="time the queries with torch's threads pinned to 1 in the kernels against the "
        "caller's THREADS (default 2), instead of against hmmlearn",
    )
    args = parser.parse_args()
    if args.kernel_threads is not None:
        kernel_threads_check(args.kernel_threads)
        return
    hmm_ops.BACKEND = args.backend
    repeats = args.repeats or (2 if args.quick else 5)
    long_t = 20_000 if args.quick else 100_000
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; float64; 50 symbols; "
        f"kernel backend {args.backend}"
    )
    print("| sequences      |   K | operation       | hmmlearn ms | pyrobn ms | ratio | device |")
    print("|----------------|-----|-----------------|-----------|-----------|-------|--------|")
    for device in devices:
        for n_seq, length in [(1, long_t), (256, 200)]:
            for k in (4, 16, 64):
                run_case(k, n_seq, length, repeats, device)


if __name__ == "__main__":
    main()
