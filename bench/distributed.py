"""Samples per second of data-parallel VAE training with 1 and 2 processes, in one run.

    python bench/distributed.py [--steps 300] [--batch-size 128] [--quick]

Launches ``examples/distributed_vae.py`` under ``torchrun`` with 1 and then 2 processes
(Gloo on CPU, NCCL on GPUs) and prints the throughput of each and their ratio. Each
process runs with one CPU thread, so on a 2-core machine two processes can at best
double the single-process figure, less the cost of the per-step all-reduce.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "distributed_vae.py"


def run(processes: int, steps: int, batch_size: int) -> dict:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        str(EXAMPLE),
        f"--steps={steps}",
        f"--batch-size={batch_size}",
        "--json",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"torchrun with {processes} process(es) failed:\n{result.stderr[-3000:]}")
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128, help="rows per process per step")
    parser.add_argument("--quick", action="store_true", help="a short run (50 steps)")
    args = parser.parse_args()
    steps = 50 if args.quick else args.steps

    results = [run(p, steps, args.batch_size) for p in (1, 2)]
    print(f"VAE on digits, {steps} steps, {args.batch_size} rows per process per step")
    print(f"{'processes':>9} {'seconds':>9} {'samples/s':>11} {'final loss':>11}")
    for r in results:
        print(
            f"{r['processes']:>9} {r['seconds']:>9.2f} {r['samples_per_second']:>11.0f} "
            f"{r['final_loss']:>11.1f}"
        )
    speedup = results[1]["samples_per_second"] / results[0]["samples_per_second"]
    print(f"2 processes / 1 process throughput: {speedup:.2f}x")


if __name__ == "__main__":
    main()
