"""Issue 18's swiss-roll column: the six paradigms on the 2-D swiss roll, one table.

    python bench/paradigms_swissroll.py                  # seed 0, the full run
    python bench/paradigms_swissroll.py --seeds 0,1,2 --json out.json
    python bench/paradigms_swissroll.py --smoke          # tiny: does it run?

The models, data and training are :mod:`pyrobn.paradigms`'s (the ones tutorial 17's
section 3 trains): 3000 training points, 1000 held-out points. Per paradigm and seed:

* held-out NLL in nats per point (``pyrobn.evaluation.nll_score``): exact, a stated upper
  bound, or none (the GAN), as the model's ``nll_kind`` says;
* the energy distance (``pyrobn.evaluation.energy_distance``, V-statistic) of 1000
  samples to the 1000 held-out points, beside its floor: the energy distance of 1000
  training points to the same held-out points, and the mean ± sd of a perfect sampler's
  (30 fresh draws of 1000 points of the spiral): the score's noise at this size;
* samples per second (``samples_per_second``: 1000 draws, median of 3) and the training
  time (the KDE's: its cross-validated bandwidth).

One Markdown row per paradigm (mean ± sd over the seeds when there are several).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import pyrobn
import pyrobn.evaluation as ev
from pyrobn import paradigms


def _pm(values: list[float], fmt: str) -> str:
    if any(v != v for v in values):  # NaN: no likelihood
        return "none"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format(statistics.stdev(values), fmt)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--rows", default=",".join(paradigms.PARADIGMS))
    parser.add_argument("--smoke", action="store_true", help="tiny models: not a measurement")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = [r.strip() for r in args.rows.split(",")]
    for name in names:
        if name not in paradigms.PARADIGMS:
            parser.error(f"unknown row {name!r}; choose from {paradigms.PARADIGMS}")
    train, held = paradigms.swiss_roll_split(smoke=args.smoke)
    n = min(args.samples, len(held))
    floor = ev.energy_distance(train[:n], held[:n])
    print(f"energy distance floor ({n} training points to the held-out points): {floor:.4f}")
    # the score of a perfect sampler: fresh draws of the data's own distribution
    perfect = []
    for k in range(30):
        x, _ = pyrobn.datasets.swiss_roll(n, noise=paradigms.NOISE, seed=100 + k)
        perfect.append(ev.energy_distance(x[:, [0, 2]], held[:n]))
    print(f"a perfect sampler ({n} fresh draws of the spiral, 30 times): "
          f"{statistics.fmean(perfect):.4f} ± {statistics.stdev(perfect):.4f} "
          f"(min {min(perfect):.4f}, max {max(perfect):.4f})")  # fmt: skip
    results: list[dict] = []
    for name in names:
        for seed in seeds:
            start = time.perf_counter()
            model = paradigms.fit(name, train, smoke=args.smoke, seed=seed)
            fit_seconds = time.perf_counter() - start
            score = ev.nll_score(model, held, seed=seed)
            draws = model.sample(n, seed=seed + 2).detach()  # seed 0: tutorial 17's draws
            energy = ev.energy_distance(draws, held[:n])
            rate = ev.samples_per_second(model, n, seed=seed)
            row = {"name": name, "seed": seed, "nll": score.nats, "nll_stderr": score.stderr,
                   "nll_kind": score.kind, "energy": energy, "samples_per_second": rate,
                   "fit_seconds": fit_seconds}  # fmt: skip
            results.append(row)
            print(f"{name} seed {seed}: NLL {score.nats:.3f} ± {score.stderr:.3f} "
                  f"({score.kind}), energy distance {energy:.4f}, {rate:.0f} samples/s, "
                  f"fit {fit_seconds:.1f} s", flush=True)  # fmt: skip
    print()
    print(f"| paradigm | held-out NLL (nats/point) | energy distance (floor {floor:.4f}) "
          "| samples/s | training time (s) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for name in names:
        group = [r for r in results if r["name"] == name]
        kind = group[0]["nll_kind"]
        nll = _pm([r["nll"] for r in group], ".3f")
        nll = nll if kind == "none" else f"{nll} ({kind})"
        print(f"| {name} | {nll} | {_pm([r['energy'] for r in group], '.4f')} | "
              f"{_pm([r['samples_per_second'] for r in group], ',.0f')} | "
              f"{_pm([r['fit_seconds'] for r in group], '.0f')} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"floor": floor, "perfect_sampler": perfect, "rows": results,
                       "smoke": args.smoke}, f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
