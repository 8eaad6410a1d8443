"""Real networks on a GPU: batched queries and all posteriors on CUDA against the CPU.

The same workloads as ``bench/bayesnet_networks.py`` (same seeds), answered by a network
on ``--device`` (torch's einsum routes) and by a copy on the CPU (the compiled kernel,
one thread), in one run; the answers are compared (largest difference printed). Per
network:

* batched throughput: ``--batch`` evidence rows of one query shape (the last variable
  given the three whose sampled states vary most) in one call: rows per second on the
  device (the first call in brackets: it plans) and on the CPU;
* all posteriors given three findings (the bench's three evidence sets): the median of
  three ``marginals`` calls after a first one, device and CPU;
* all posteriors for ``--batch-posteriors`` evidence rows in one call (the batch's
  three variables observed): rows per second, device and CPU (skipped where the CPU
  would take more than ``--budget-s``).

Needs no pgmpy when ``--files`` names a folder holding the ``.bif.gz`` files.

    python bench/bayesnet_cuda.py                                   # needs CUDA
    python bench/bayesnet_cuda.py --networks alarm,water --device cpu   # the torch route
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import pyrobn

NETWORKS = ["alarm", "water", "mildew", "barley", "pigs", "munin", "munin1"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> tuple:
    """(first call's seconds, median of ``repeats`` more, the last answer)."""
    times = []
    out = None
    for _ in range(1 + repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:]) if repeats else times[0], out


def largest_difference(a: object, b: object) -> float:
    if isinstance(a, dict):
        return max(largest_difference(a[k], b[k]) for k in a)
    return float((a.detach().cpu().double() - b.detach().cpu().double()).abs().max())


def bench_network(name: str, args: argparse.Namespace, device: torch.device) -> str:
    path = os.path.join(args.files, name + ".bif.gz")
    cpu = pyrobn.read_network(path, device="cpu")
    gpu = pyrobn.read_network(path, device=device)
    if device.type == "cpu":
        gpu.use_compiled = False  # the torch routes, on the CPU
    cells = [name]

    # batched throughput (bench_networks' batch: same seed, same variables)
    target = cpu.variables[-1]
    rows = cpu.sample(args.batch, seed=4)
    variety = {v: len(torch.unique(rows[v])) for v in cpu.variables[:-1]}
    observed = sorted(cpu.variables[:-1], key=lambda v: -variety[v])[:3]
    batch = {v: rows[v] for v in observed}
    on_device = {v: c.to(device) for v, c in batch.items()}
    first, t_gpu, answer = timed(lambda: gpu.query(target, on_device), device, args.repeats)
    _, t_cpu, expected = timed(lambda: cpu.query(target, batch), torch.device("cpu"), 1)
    diff = largest_difference(answer, expected)
    cells.append(
        f"{args.batch / t_gpu:.3g} ({args.batch / first:.3g}) / {args.batch / t_cpu:.3g} | "
        f"{t_cpu / t_gpu:.1f}x"
    )

    # all posteriors given three findings (bench_networks' evidence sets)
    rng = np.random.default_rng(2)
    sample = cpu.sample(3, seed=3)
    t_gpus, t_cpus, firsts = [], [], []
    for k in range(3):
        chosen = [cpu.variables[i] for i in rng.permutation(len(cpu.variables))[:3]]
        evidence = {v: int(sample[v][k]) for v in chosen}
        free = [v for v in cpu.variables if v not in evidence]
        if len(free) > 40:
            rng.choice(free, 40)  # keeps the generator in step with bench_networks
        first, t, answer = timed(lambda e=evidence: gpu.marginals(e), device, args.repeats)
        _, t_c, expected = timed(lambda e=evidence: cpu.marginals(e), torch.device("cpu"), 3)
        diff = max(diff, largest_difference(answer, expected))
        t_gpus.append(t)
        t_cpus.append(t_c)
        firsts.append(first)
    t_gpu, t_cpu = statistics.median(t_gpus), statistics.median(t_cpus)
    cells.append(
        f"{t_gpu * 1e3:.3g} ({statistics.median(firsts) * 1e3:.3g}) / {t_cpu * 1e3:.3g} | "
        f"{t_cpu / t_gpu:.1f}x"
    )

    # all posteriors for a batch of evidence rows (skipped where the CPU would take
    # longer than --budget-s at its one-set rate)
    n = args.batch_posteriors
    if t_cpu * n > args.budget_s:
        cells.append(f"- (CPU ~{t_cpu * n:.0f} s) | -")
        cells.append(f"{diff:.1e}")
        return "| " + " | ".join(cells) + " |"
    some = {v: c[:n] for v, c in batch.items()}
    first, t_gpu, answer = timed(
        lambda: gpu.marginals({v: c.to(device) for v, c in some.items()}), device, 1
    )
    _, t_cpu, expected = timed(lambda: cpu.marginals(some), torch.device("cpu"), 1)
    diff = max(diff, largest_difference(answer, expected))
    cells.append(f"{n / t_gpu:.3g} ({n / first:.3g}) / {n / t_cpu:.3g} | {t_cpu / t_gpu:.1f}x")
    cells.append(f"{diff:.1e}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--files", default=None, help="folder of .bif.gz (default: pgmpy's)")
    parser.add_argument("--batch", type=int, default=10_000, help="rows in one call")
    parser.add_argument("--batch-posteriors", type=int, default=100, help="rows, marginals")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the first")
    parser.add_argument("--budget-s", type=float, default=20.0, help="CPU time, batched posteriors")
    args = parser.parse_args()
    if args.files is None:
        pgmpy = os.path.dirname(__import__("pgmpy").__file__)
        args.files = os.path.join(pgmpy, "utils", "example_models")
    torch.set_num_threads(1)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (torch routes)"
    print(f"pyrobn {pyrobn.__version__}, torch {torch.__version__}; {name}; CPU: one thread")
    print(
        "| network | batched rows/s: device (first call) / CPU | device vs CPU "
        "| all posteriors ms: device (first call) / CPU | device vs CPU "
        f"| all posteriors, {args.batch_posteriors} rows, rows/s: device (first) / CPU "
        "| device vs CPU | max diff |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for net in args.networks.split(","):
        try:
            print(bench_network(net, args, device), flush=True)
        except Exception as exc:  # a network too big for the device: say so, go on
            print(f"| {net} | {type(exc).__name__}: {str(exc)[:200]} |", flush=True)


if __name__ == "__main__":
    main()
