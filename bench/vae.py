"""Time per epoch of pyrobn.VAE training against a plain-PyTorch loop of the same network.

    python bench/vae.py            # digits, hidden (256, 128), latent 8, batch 128
    python bench/vae.py --quick    # fewer epochs and repeats

Every contender trains the same network (pyrobn.nn.encoder_decoder) on the same data
with Adam, one minibatch of ``--batch`` rows per step; an epoch is ceil(N / batch)
steps. Times are taken inside the run by a per-step callback, after the warm-up steps
(so the JIT compilation and the first allocations are excluded), best of ``--repeats``.
Rows:

    reference        tests/vae_reference.py: ReferenceVAE trained by plain PyTorch
    VAE.fit          the default: fit_svi + JitTrace_ELBO
    VAE.fit eager    fit_svi + Trace_ELBO (jit=False)
    VAE.fit mf       fit_svi + TraceMeanField_ELBO (closed-form KL; its default, eager)
    SVI.step jit     Pyro's own SVI.step + JitTrace_ELBO, without fit_svi's guard
    ELBO + torch     JitTrace_ELBO.loss_and_grads + one torch.optim.Adam over all params

The last two rows split the overhead: ELBO + torch is the cost of Pyro's model/guide
machinery alone; SVI.step adds Pyro's optimiser (one torch Adam per parameter tensor);
VAE.fit adds fit_svi's divergence guard (finite checks and a parameter snapshot every
step).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI, JitTrace_ELBO
from pyro.optim import Adam

import pyrobn

# the plain-PyTorch reference VAE is test code: tests/vae_reference.py
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from vae_reference import ReferenceVAE


def _timed_steps(run, steps: int, warmup: int) -> float:
    """Seconds per step after ``warmup`` steps; ``run(steps, tick)`` calls tick each step."""
    stamps: list[float] = []

    def tick(*_):
        stamps.append(time.perf_counter())

    run(steps, tick)
    return (stamps[-1] - stamps[warmup - 1]) / (steps - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--hidden", type=str, default="256,128")
    parser.add_argument("--device", type=str, default=None, help="cpu or cuda (default: auto)")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.repeats = 5, 2
    device = torch.device(args.device) if args.device else pyrobn.device()
    hidden = tuple(int(h) for h in args.hidden.split(","))
    x = pyrobn.datasets.digits(binarize=True, device=device).x_train
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / args.batch)
    warmup = 2 * steps_per_epoch
    steps = warmup + args.epochs * steps_per_epoch
    config = {"latent_dim": args.latent, "hidden": hidden}

    def fresh_vae() -> pyrobn.VAE:
        pyro.clear_param_store()
        torch.manual_seed(0)
        return pyrobn.VAE(64, **config).to(device)

    def reference(steps, tick):
        torch.manual_seed(0)
        ref = ReferenceVAE(64, **config).to(device)
        optimizer = torch.optim.Adam(ref.parameters(), lr=1e-3)
        scale = n / args.batch
        for _ in range(steps):
            xb = x[torch.randperm(n, device=device)[: args.batch]]
            loss = -scale * ref.elbo(xb).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()  # fit_svi reads every loss too
            tick()

    def fit(**kwargs):
        def run(steps, tick):
            fresh_vae().fit(
                x, steps=steps, batch_size=args.batch, progress=False, callback=tick, **kwargs
            )

        return run

    def svi_step(steps, tick):
        vae = fresh_vae()
        svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), JitTrace_ELBO(ignore_jit_warnings=True))
        for _ in range(steps):
            svi.step(x, batch_size=args.batch)
            tick()

    def elbo_torch_adam(steps, tick):
        vae = fresh_vae()
        elbo = JitTrace_ELBO(ignore_jit_warnings=True)
        model, guide = vae.model, vae.guide  # one bound method: JIT keys on its id
        elbo.loss(model, guide, x, batch_size=args.batch)  # creates the params
        optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
        for _ in range(steps):
            elbo.loss_and_grads(model, guide, x, batch_size=args.batch)
            optimizer.step()
            optimizer.zero_grad()
            tick()

    contenders = {
        "reference (plain PyTorch)": reference,
        "VAE.fit (default: JitTrace_ELBO, FusedAdam)": fit(),
        "VAE.fit with pyro.optim.Adam": fit(optim=Adam({"lr": 1e-3})),
        "VAE.fit eager (Trace_ELBO)": fit(jit=False),
        "VAE.fit mf (TraceMeanField)": fit(loss="meanfield"),
        "SVI.step jit (no fit_svi guard)": svi_step,
        "JitTrace_ELBO + torch Adam, no fit_svi": elbo_torch_adam,
    }
    best = {name: math.inf for name in contenders}
    for _ in range(args.repeats):  # interleaved, so load changes hit every contender
        for name, run in contenders.items():
            best[name] = min(best[name], _timed_steps(run, steps, warmup))
    base = best["reference (plain PyTorch)"]
    print(
        f"VAE training on digits ({n} x 64, binarized), hidden {hidden}, latent {args.latent}, "
        f"batch {args.batch}, {steps_per_epoch} steps/epoch, device {device}, "
        f"torch threads {torch.get_num_threads()}, best of {args.repeats} x {args.epochs} epochs"
    )
    print(f"{'contender':36s} {'ms/epoch':>10s} {'ms/step':>9s} {'ratio':>7s}")
    for name, per_step in best.items():
        print(
            f"{name:36s} {1e3 * per_step * steps_per_epoch:10.2f} {1e3 * per_step:9.3f} "
            f"{per_step / base:7.2f}x"
        )


if __name__ == "__main__":
    main()
