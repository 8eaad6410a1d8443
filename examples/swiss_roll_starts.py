"""Does a 2-D latent VAE order the swiss roll by its roll parameter t? Random vs Isomap start.

For each network initialisation (seed), the same VAE is trained twice on the standardised
roll for the same number of Adam steps:

- "random": ``fit`` alone (the usual start);
- "isomap": ``init_from_embedding`` on scikit-learn's Isomap chart, then ``fit``.

It prints, per start, the held-out ordering score |ρ| (Spearman, along the latent
direction fitted on the training points: ``pyrobn.datasets.best_direction_spearman``) and
the held-out ELBO per point. The README's swiss-roll figures come from

    python examples/swiss_roll_starts.py --seeds 0-19
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.manifold import Isomap

import pyrobn


def seed_range(text: str) -> range:
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_range, default=seed_range("0-4"), help="e.g. 0-19")
    parser.add_argument("--points", type=int, default=2000, help="training points")
    parser.add_argument("--chart-steps", type=int, default=500)
    parser.add_argument("--steps", type=int, default=2000, help="Adam steps in all, per start")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of fit")
    args = parser.parse_args()

    device = pyrobn.device()
    x, t = pyrobn.datasets.swiss_roll(args.points, noise=0.1, seed=0, device=device)
    x_test, t_test = pyrobn.datasets.swiss_roll(1000, noise=0.1, seed=1, device=device)
    mean, std = x.mean(0), x.std(0)
    x, x_test = (x - mean) / std, (x_test - mean) / std
    chart = Isomap(n_neighbors=10, n_components=2).fit_transform(x.cpu().numpy())

    results: dict[str, list[tuple[float, float]]] = {"random": [], "isomap": []}
    print(f"{'seed':>4} {'start':>7} {'|rho|':>6} {'test ELBO':>10} {'time s':>7}")
    for seed in args.seeds:
        for start in results:
            began = time.perf_counter()
            pyrobn.set_seed(seed)  # the same initial networks for both starts
            vae = pyrobn.VAE(
                3, latent_dim=2, hidden=(128, 128), likelihood="normal", obs_scale=0.05
            ).to(device)
            steps = args.steps
            if start == "isomap":
                vae.init_from_embedding(x, chart, steps=args.chart_steps, seed=seed, progress=False)
                steps -= args.chart_steps
            vae.fit(x, steps=steps, batch_size=256, lr=args.lr, seed=seed, progress=False)
            rho = pyrobn.datasets.best_direction_spearman(
                vae.encode(x), t, vae.encode(x_test), t_test
            )
            elbo = vae.elbo(x_test, num_samples=10, seed=0).mean().item()
            results[start].append((rho, elbo))
            elapsed = time.perf_counter() - began
            print(f"{seed:>4} {start:>7} {rho:6.3f} {elbo:10.2f} {elapsed:7.1f}", flush=True)

    print(f"\n{len(args.seeds)} initialisations, {args.points} points, lr {args.lr}:")
    for start, rows in results.items():
        rho, elbo = np.array(rows).T
        print(
            f"  {start:>6} start: |rho| {rho.min():.3f} .. {rho.max():.3f} "
            f"({int((rho >= 0.9).sum())} of {rho.size} >= 0.9), "
            f"test ELBO {elbo.min():.2f} .. {elbo.max():.2f}"
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
