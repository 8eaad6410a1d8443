"""Train the VAE on the digits with data-parallel SVI over torch.distributed.

One machine, two CPU processes (Gloo):

    torchrun --standalone --nproc_per_node=2 examples/distributed_vae.py --steps 500

One node with 8 GPUs (NCCL; each process takes the GPU of its LOCAL_RANK):

    torchrun --standalone --nproc_per_node=8 examples/distributed_vae.py

Several nodes (run on every node, with its own --node_rank):

    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 \\
        --master_addr=<address of node 0> --master_port=29500 examples/distributed_vae.py

Every process draws the same global minibatch, keeps its shard of --batch-size rows and
averages its gradients with the others (fit_svi turns this on by itself under torchrun),
so R processes train on R * batch-size rows a step.
Rank 0 alone shows the progress bar, writes the checkpoint and prints the result; the
checkpoint loads in a single process with `fit_svi(..., checkpoint=..., resume=True)`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

import pyrobn
from pyrobn.datasets import digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128, help="rows per process per step")
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--checkpoint", default=None, help="where rank 0 saves the run")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()

    x_train, _, x_test, _ = digits()
    vae = pyrobn.VAE(x_train.shape[1], latent_dim=args.latent_dim, hidden=(256, 128))
    vae.to(x_train.device)
    start = time.perf_counter()
    vae.fit(
        x_train,
        steps=args.steps,
        batch_size=args.batch_size,
        jit=False,
        seed=0,
        checkpoint=args.checkpoint,
        progress=not args.json,
    )
    seconds = time.perf_counter() - start
    history = vae.fit_result_.history
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if int(os.environ.get("RANK", "0")) == 0:
        result = {
            "processes": world,
            "steps": history.steps,
            "seconds": seconds,
            "samples_per_second": history.steps * args.batch_size * world / seconds,
            "final_loss": history.final_loss,
            "test_elbo_per_image": float(vae.elbo(x_test).mean()),
        }
        print(json.dumps(result) if args.json else result)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
