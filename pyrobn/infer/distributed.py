"""Data-parallel SVI on ``torch.distributed`` (launched with ``torchrun``).

Each of the R processes draws the *same* global minibatch of the data plate (every rank
holds the same RNG state), keeps its own shard of it, and evaluates the ELBO of its
shard scaled to the full data set (plate scale N / B_local). Averaging the gradients over
the ranks then gives exactly the gradient of the single-process ELBO on the global batch:

    (1/R) Σ_r (N / B) Σ_{i in shard r} ∇ℓ_i  =  (N / (R B)) Σ_{i in global batch} ∇ℓ_i.

Latent sample sites inside the data plate (the VAE's z) are drawn for the whole global
batch and sliced, so that a rank's noise equals what one process would have drawn for
those rows: parameters after k steps match a single process to rounding error.
"""

from __future__ import annotations

import atexit
import datetime
import os
import warnings
from dataclasses import dataclass

import pyro.distributions as dist
import torch
import torch.distributed as torch_dist
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample

from pyrobn.errors import DistributedError

__all__ = [
    "DistributedContext",
    "ShardDataPlate",
    "average_gradients_and_loss",
    "barrier",
    "broadcast_parameters",
    "launched_by_torchrun",
    "setup",
    "shared_seed",
]

_LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_TIMEOUT_ENV = "PYROBN_DIST_TIMEOUT"


@dataclass
class DistributedContext:
    """The process's place in the group: rank, world size and the device it computes on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the environment is a multi-process launch (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def setup(timeout_s: float | None = None) -> DistributedContext:
    """Join (or create) the default process group: NCCL on CUDA, Gloo on CPU.

    The group's timeout (``PYROBN_DIST_TIMEOUT`` seconds, default 120) bounds how long a
    rank waits for a stalled peer before failing instead of hanging (a peer that dies is
    noticed at once: its connection closes). Under ``torchrun`` the agent itself stops the
    other ranks when one dies; launched without an agent, the survivors raise
    :class:`pyrobn.errors.DistributedError`.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        rank, world = torch_dist.get_rank(), torch_dist.get_world_size()
        on_cuda = torch_dist.get_backend() == "nccl"
        device = torch.device(f"cuda:{torch.cuda.current_device()}" if on_cuda else "cpu")
        return DistributedContext(rank, world, device)
    missing = [name for name in _LAUNCH_VARIABLES if name not in os.environ]
    if missing:
        raise DistributedError(
            f"distributed training needs the variables that torchrun sets; missing: "
            f"{', '.join(missing)}. Launch with `torchrun --nproc_per_node=N script.py` "
            "(add --nnodes, --node_rank and --master_addr for several machines), or set "
            "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (and LOCAL_RANK) yourself"
        )
    if not torch_dist.is_available():
        raise DistributedError("this build of torch has no torch.distributed support")
    timeout = float(timeout_s or os.environ.get(_TIMEOUT_ENV, 120))
    use_cuda = torch.cuda.is_available() and os.environ.get("PYROBN_DEVICE", "") != "cpu"
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    try:
        torch_dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(seconds=timeout),
        )
    except Exception as exc:
        raise DistributedError(
            f"could not join the process group (RANK={os.environ.get('RANK')}, "
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')}, MASTER_ADDR="
            f"{os.environ.get('MASTER_ADDR')}, MASTER_PORT={os.environ.get('MASTER_PORT')}): {exc}"
        ) from exc
    # The group lives as long as the process: a script may fit several models in turn.
    atexit.register(_leave_group)
    return DistributedContext(torch_dist.get_rank(), torch_dist.get_world_size(), device)


#: how long a rank waits, on the way out, for its peers to reach the exit too
_LEAVE_TIMEOUT_S = 10.0


def _leave_group() -> None:
    """Leave the group together: a rank that tears down its connections while a peer still
    holds them can abort that peer (gloo: "terminate called without an active exception",
    seen once in CI). A dead peer only delays the exit by ``_LEAVE_TIMEOUT_S``."""
    if not torch_dist.is_initialized():
        return
    try:
        timeout = datetime.timedelta(seconds=_LEAVE_TIMEOUT_S)
        if torch_dist.get_backend() == "gloo":
            torch_dist.monitored_barrier(timeout=timeout)
        else:
            torch_dist.barrier()
    except Exception:  # a peer died or stalled: leave anyway, the error was reported
        pass
    torch_dist.destroy_process_group()


def _collective_failed(context: DistributedContext, what: str, exc: Exception) -> DistributedError:
    return DistributedError(
        f"rank {context.rank} of {context.world_size}: {what} failed; a peer process has "
        f"probably died or stalled (group timeout {_TIMEOUT_ENV}): {exc}"
    )


def broadcast_parameters(params: list[torch.Tensor], context: DistributedContext) -> None:
    """Give every rank rank 0's parameter values (one flat broadcast)."""
    if not params:
        return
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).to(torch.float64) for p in params])
        try:
            torch_dist.broadcast(flat, src=0)
        except Exception as exc:
            raise _collective_failed(context, "broadcasting the initial parameters", exc) from exc
        offset = 0
        for p in params:
            p.copy_(flat[offset : offset + p.numel()].view_as(p).to(p.dtype))
            offset += p.numel()


def average_gradients_and_loss(
    params: list[torch.Tensor], loss: float, context: DistributedContext, step: int
) -> float:
    """All-reduce the gradients and the loss in one flat buffer; return the mean loss.

    The buffer is float64 so that the average is as exact as the single-process sum.
    """
    grads = [
        p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device)
        for p in params
    ]
    device = params[0].device if params else context.device
    loss_t = torch.tensor([loss], dtype=torch.float64, device=device)
    flat = torch.cat([g.to(torch.float64) for g in grads] + [loss_t])
    try:
        torch_dist.all_reduce(flat)
    except Exception as exc:
        raise _collective_failed(context, f"averaging gradients at step {step}", exc) from exc
    flat /= context.world_size
    offset = 0
    for p in params:
        n = p.numel()
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad.copy_(flat[offset : offset + n].view_as(p))
        offset += n
    return float(flat[-1])


def barrier(context: DistributedContext) -> None:
    try:
        torch_dist.barrier()
    except Exception as exc:
        raise _collective_failed(context, "waiting for the other ranks", exc) from exc


def shared_seed(seed: int | None, context: DistributedContext) -> int:
    """The run's seed: the given one, or one drawn by rank 0 and sent to every rank."""
    if seed is not None:
        return int(seed)
    value = torch.randint(0, 2**31 - 1, (1,), dtype=torch.int64)
    try:
        torch_dist.broadcast(value, src=0)
    except Exception as exc:
        raise _collective_failed(context, "sharing the seed", exc) from exc
    return int(value)


def _pad_along(fn: dist.Distribution, dim: int, index: torch.Tensor) -> dist.Distribution | None:
    """``fn`` re-indexed along batch dim ``dim`` (negative) by ``index``; None if unsupported."""
    if isinstance(fn, dist.Independent):
        base = _pad_along(fn.base_dist, dim - fn.reinterpreted_batch_ndims, index)
        return None if base is None else dist.Independent(base, fn.reinterpreted_batch_ndims)
    if fn.event_shape != torch.Size() or not fn.arg_constraints:
        return None
    names = [name for name in fn.arg_constraints if name in fn.__dict__]
    if not names:
        return None
    params = {
        name: torch.broadcast_to(getattr(fn, name), fn.batch_shape).index_select(dim, index)
        for name in names
    }
    try:
        return type(fn)(**params, validate_args=False)
    except TypeError:
        return None


class ShardDataPlate(Messenger):
    """Give each rank its shard of the plate ``plate_name``'s global minibatch.

    Pushed around the whole loss computation (below Pyro's replay), it sets the plate's
    subsample indices of the sites that draw them (the guide's, or the model's when the
    guide has no such plate) and draws the plate's latent sites for the global batch.
    """

    def __init__(self, plate_name: str, context: DistributedContext) -> None:
        super().__init__()
        self.plate_name = plate_name
        self.context = context
        self._warned: set[str] = set()

    def _shard(self, size: int, subsample_size: int | None, device: torch.device) -> torch.Tensor:
        rank, world = self.context.rank, self.context.world_size
        if subsample_size is None or subsample_size >= size:
            if size % world:
                raise DistributedError(
                    f"the data plate {self.plate_name!r} has {size} rows, which cannot be split "
                    f"evenly across {world} processes: use a subsample_size, or a data size "
                    f"divisible by {world}"
                )
            local = size // world
            return torch.arange(rank * local, (rank + 1) * local, device=device)
        if subsample_size * world > size:
            raise DistributedError(
                f"the data plate {self.plate_name!r} has {size} rows, too few for {world} "
                f"processes drawing {subsample_size} each (needs {subsample_size * world})"
            )
        perm = torch.randperm(size, device=device)
        return perm[rank * subsample_size : (rank + 1) * subsample_size].clone()

    def _pyro_sample(self, msg: dict) -> None:
        if msg["value"] is not None or msg["is_observed"] or msg["done"]:
            return
        fn = msg["fn"]
        if isinstance(fn, _Subsample):
            if msg["name"] == self.plate_name:
                msg["value"] = self._shard(fn.size, fn.subsample_size, torch.device(fn.device))
            return
        frames = [f for f in msg["cond_indep_stack"] if f.name == self.plate_name]
        if not frames or frames[0].dim is None:
            return
        self._draw_for_global_batch(msg, fn, frames[0].dim)

    def _draw_for_global_batch(self, msg: dict, fn: dist.Distribution, dim: int) -> None:
        local = fn.batch_shape[dim]
        world, rank = self.context.world_size, self.context.rank
        index = (torch.arange(local * world) - rank * local).clamp(0, local - 1)
        padded = _pad_along(fn, dim, index.to(_device_of(fn)))
        if padded is None:
            if msg["name"] not in self._warned:
                self._warned.add(msg["name"])
                warnings.warn(
                    f"site {msg['name']!r}: {type(fn).__name__} cannot be drawn for the global "
                    "batch; each rank draws its own rows (unbiased, but not bit-equal to one "
                    "process)",
                    stacklevel=2,
                )
            return
        draw = padded.rsample() if padded.has_rsample else padded.sample()
        value_dim = dim - len(fn.event_shape)
        rows = torch.arange(rank * local, (rank + 1) * local, device=draw.device)
        msg["value"] = draw.index_select(value_dim, rows)


def _device_of(fn: dist.Distribution) -> torch.device:
    base = fn.base_dist if isinstance(fn, dist.Independent) else fn
    for name in base.arg_constraints:
        value = base.__dict__.get(name)
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device("cpu")
