"""Time per epoch of pyrobn.VAE training against a plain-PyTorch loop of the same network,
and the categorical VAE on the book's digits benchmark in nats per image.

    python bench/vae.py            # digits, hidden (256, 128), latent 8, batch 128
    python bench/vae.py --quick    # fewer epochs and repeats
    python bench/vae.py --book     # the book's split, 17 levels: -ELBO and IW NLL, 3 seeds

``--book`` trains ``VAE(64, likelihood="categorical", levels=17)`` on
``load_digits().data[:1000]`` (original order), keeps the parameters of the epoch with the
best validation -ELBO (``[1000:1350]``; the book stops early the same way), and reports on
the test images ``[1350:]`` the -ELBO (10 draws per image) and the importance-weighted NLL
(K draws of the encoder), in nats per image, mean ± sd over seeds, beside the book's VAE
(-ELBO 96.4 on the same split, issue 17).

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


#: the book's VAE on this split (J. Tomczak's companion code, run here: issue 17)
BOOK_NEG_ELBO = 96.4


def book(args: argparse.Namespace) -> None:
    """The categorical VAE on the book's digits split, over seeds."""
    import copy

    import numpy as np
    from sklearn.datasets import load_digits

    device = torch.device(args.device) if args.device else pyrobn.device()
    data = torch.tensor(load_digits().data, dtype=torch.float32, device=device)
    x_train, x_val, x_test = data[:1000], data[1000:1350], data[1350:]
    hidden = tuple(int(h) for h in args.hidden.split(","))
    per_epoch = math.ceil(len(x_train) / args.batch)
    print(
        f"book digits (1000 / 350 / 447, 17 levels): VAE latent {args.latent}, hidden {hidden}, "
        f"{args.activation}, batch {args.batch}, lr {args.lr}, {args.epochs} epochs "
        f"(best validation epoch kept), loss {args.loss}, device {device}"
    )
    print(f"{'seed':>4} {'epoch':>5} {'val':>7} {'-ELBO':>7} {'IW NLL':>7} {'s/epoch':>8}")
    rows = []
    for seed in args.seeds:
        with pyrobn.random.seeded(seed):
            vae = pyrobn.VAE(
                64,
                latent_dim=args.latent,
                hidden=hidden,
                activation=args.activation,
                likelihood="categorical",
                levels=17,
            ).to(device)
        best = {"val": math.inf, "epoch": 0, "state": None}

        def keep_best(step: int, loss: float, vae=vae, best=best) -> None:
            if (step + 1) % per_epoch:
                return
            val = -vae.elbo(x_val, num_samples=10, seed=1).mean().item()
            if val < best["val"]:
                state = copy.deepcopy(vae.state_dict())
                best.update(val=val, epoch=(step + 1) // per_epoch, state=state)

        started = time.perf_counter()
        vae.fit(
            x_train,
            steps=args.epochs * per_epoch,
            batch_size=args.batch,
            lr=args.lr,
            loss=args.loss,
            seed=seed,
            progress=False,
            callback=keep_best,
        )
        seconds = (time.perf_counter() - started) / args.epochs
        vae.load_state_dict(best["state"])
        neg_elbo = -vae.elbo(x_test, num_samples=10, seed=2).mean().item()
        iw = -vae.log_likelihood(x_test, num_samples=args.iw_samples, seed=3).mean().item()
        rows.append((neg_elbo, iw))
        print(
            f"{seed:>4} {best['epoch']:>5} {best['val']:7.2f} {neg_elbo:7.2f} {iw:7.2f} "
            f"{seconds:8.3f}",
            flush=True,
        )
    values = np.array(rows)
    sd = values.std(0, ddof=1) if len(rows) > 1 else np.zeros(2)
    print(
        f"test -ELBO {values[:, 0].mean():.2f} ± {sd[0]:.2f}, importance-weighted NLL "
        f"(K = {args.iw_samples}) {values[:, 1].mean():.2f} ± {sd[1]:.2f} nats/image "
        f"({values[:, 1].mean() / (64 * math.log(2)):.4f} bits/dim) over {len(rows)} seeds; "
        f"the book's VAE: -ELBO {BOOK_NEG_ELBO}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats")
    parser.add_argument("--book", action="store_true", help="the book's digits benchmark")
    parser.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=None)
    parser.add_argument("--lr", type=float, default=3e-4, help="--book only")
    parser.add_argument("--activation", default="elu", help="--book only")
    parser.add_argument("--loss", default="meanfield", help="--book only")
    parser.add_argument("--iw-samples", type=int, default=1000, help="--book only")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--hidden", type=str, default="256,128")
    parser.add_argument("--device", type=str, default=None, help="cpu or cuda (default: auto)")
    args = parser.parse_args()
    if args.book:
        defaults = {"epochs": 150, "batch": 64, "latent": 16, "hidden": "256,256"}
        for name, value in defaults.items():  # the book's setting unless given
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
        args.seeds = args.seeds or [0, 1, 2]
        if args.quick:
            args.epochs, args.seeds = 10, args.seeds[:1]
        book(args)
        return
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
