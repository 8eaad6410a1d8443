"""A worker for tests/test_distributed.py: k SVI steps of a model, then rank 0 saves.

    python tests/distributed_worker.py MODELS OUT BATCH STEPS [--die-at STEP]

Run it plainly for one process, or under ``torchrun`` for several. MODELS is a
comma-separated list of ``vae`` and ``mixture``; BATCH is the number of rows each
process draws per step. Rank 0 writes ``OUT.<model>`` and the checkpoint ``OUT.<model>.ckpt``.
"""

from __future__ import annotations

import argparse
import os

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

import pyrobn
from pyrobn.infer import fit_svi


def build(name: str) -> tuple[pyrobn.models.base.PyrobnModule, torch.Tensor, object]:
    g = torch.Generator().manual_seed(1)
    if name == "vae":
        x = torch.rand(64, 8, generator=g, dtype=torch.float64).round()
        model = pyrobn.VAE(8, latent_dim=2, hidden=(16,), likelihood="bernoulli").double()
        return model, x, Trace_ELBO()
    if name == "mixture":
        x = torch.cat([torch.randn(32, 2, generator=g) - 2, torch.randn(32, 2, generator=g) + 2])
        model = pyrobn.GaussianMixture(2, dim=2, learn="all").double()
        model._init_from_data(x.double(), torch.Generator().manual_seed(0))
        return model, x.double(), TraceEnum_ELBO(max_plate_nesting=1)
    raise SystemExit(f"unknown model {name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models")
    parser.add_argument("out")
    parser.add_argument("batch", type=int)
    parser.add_argument("steps", type=int)
    parser.add_argument("--die-at", type=int, default=None, help="rank 1 exits at this step")
    args = parser.parse_args()

    torch.set_num_threads(1)
    for name in args.models.split(","):
        train(name, args)


def train(name: str, args: argparse.Namespace) -> None:
    pyrobn.set_seed(0)
    model, x, loss = build(name)
    rank = int(os.environ.get("RANK", "0"))
    out = f"{args.out}.{name}"

    def callback(step: int, value: float) -> None:
        if args.die_at is not None and rank == 1 and step == args.die_at:
            os._exit(3)

    history = fit_svi(
        model.model,
        model.guide,
        x,
        batch_size=args.batch,
        loss=loss,
        optim=pyro.optim.Adam({"lr": 0.05}),
        steps=args.steps,
        seed=3,
        progress=False,
        callback=callback,
        checkpoint=out + ".ckpt",
    )
    if rank == 0:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save({"state": state, "losses": history.losses}, out)


if __name__ == "__main__":
    main()
