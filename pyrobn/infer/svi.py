"""The one SVI training loop of the project: :func:`fit_svi`.

It maximises the ELBO (lecture: log p(x) = ELBO + KL(q || p), so ELBO <= log p(x))
with Pyro's stochastic variational inference, and adds what a training run needs:
a progress bar, a history, a guard against divergence that rolls the parameters
back, and checkpoints that resume bit-for-bit.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO, Trace_ELBO
from pyro.optim import Adam, PyroOptim
from pyro.optim.optim import _get_state_dict, _load_state_dict
from tqdm.auto import tqdm

from pyrobn.errors import CheckpointError, ConfigurationError, TrainingDiverged
from pyrobn.files import read_data_file
from pyrobn.infer import distributed as distributed_ops
from pyrobn.infer.optim import FusedAdam
from pyrobn.random import forked
from pyrobn.validation import check_int

__all__ = ["History", "fit_svi", "load_checkpoint", "save_checkpoint"]

#: version 2: data only (loads with ``weights_only=True``); version 1 files were pickles
_CHECKPOINT_VERSION = 2


def _rng_state() -> dict[str, Any]:
    """Pyro's RNG state (torch, Python, NumPy) as plain data (no NumPy arrays)."""
    state = pyro.util.get_rng_state()
    kind, keys, pos, has_gauss, cached = state["numpy"]
    return {
        "torch": state["torch"],
        "random": state["random"],
        "numpy": (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    kind, keys, pos, has_gauss, cached = state["numpy"]
    python = state["random"]
    pyro.util.set_rng_state(
        {
            "torch": state["torch"],
            "random": (python[0], tuple(python[1]), python[2]),
            "numpy": (kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached),
        }
    )


@dataclass
class History:
    """What a training run did.

    ``losses[i]`` is the loss (the negative ELBO estimate) evaluated at step ``i``
    with the parameters before that step's update; a resumed run's history holds
    the steps before the checkpoint too. ``steps`` counts the finite steps done.
    """

    losses: list[float] = field(default_factory=list)
    wall_time: float = 0.0
    steps: int = 0

    @property
    def final_loss(self) -> float:
        """The last loss, or NaN before any step."""
        return self.losses[-1] if self.losses else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "losses": list(self.losses),
            "wall_time": self.wall_time,
            "steps": self.steps,
        }


class _Snapshot:
    """The parameters' values before the last update, kept in reused buffers.

    One fused ``_foreach_copy_`` a step: the divergence guard costs one copy of the
    parameters, not an allocation per tensor.
    """

    def __init__(self) -> None:
        self.params: list[torch.Tensor] = []
        self.buffers: list[torch.Tensor] = []

    def take(self, params: list[torch.Tensor]) -> None:
        same = len(params) == len(self.params) and all(a is b for a, b in zip(params, self.params))
        with torch.no_grad():
            if same and not params:  # nothing to train (a pair without free parameters)
                return
            if same:
                torch._foreach_copy_(self.buffers, [p.detach() for p in params])
            else:
                self.params = list(params)
                self.buffers = [p.detach().clone() for p in params]

    def restore(self) -> None:
        if self.params:
            with torch.no_grad():
                torch._foreach_copy_([p.detach() for p in self.params], self.buffers)


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every entry of every tensor is finite, in one reduction and one device sync."""
    tensors = [t.detach() for t in tensors if t is not None]
    return not tensors or bool(torch.stack(torch._foreach_norm(tensors)).isfinite().all())


def _bad_update(step: int) -> TrainingDiverged:
    return TrainingDiverged(
        step + 1,
        math.nan,
        f"training diverged at step {step}: its update (a non-finite gradient) made a "
        "parameter non-finite; the parameters were restored to their values before it",
    )


def _clear_grads(params: list[torch.Tensor]) -> None:
    for p in params:
        p.grad = None


def _finish(history: History, t0: float) -> None:
    history.wall_time += time.perf_counter() - t0
    history.steps = len(history.losses)


ParamList = list[tuple[str, torch.Tensor]]
Optimiser = PyroOptim | FusedAdam


def _param_sites(trace: poutine.Trace) -> ParamList:
    """(name, unconstrained tensor) of every param site, in the order the trace met them."""
    return [(name, site["value"].unconstrained()) for name, site in trace.nodes.items()]


def save_checkpoint(
    path: str | os.PathLike, optim: Optimiser, params: ParamList, step: int, history: History
) -> None:
    """Write the parameters, the optimiser state, the RNG state and the history to ``path``.

    Parameters are kept in the order the model and guide meet them, so a checkpoint
    loads into a freshly built model of the same code even where Pyro names differ.
    The file is written under a temporary name and renamed: a run killed while
    writing never leaves a broken checkpoint behind.
    """
    state = {
        "version": _CHECKPOINT_VERSION,
        "step": step,
        "names": [name for name, _ in params],
        "params": [p.detach().clone() for _, p in params],
        "optim": _optimiser_state(optim, [p for _, p in params]),
        "rng": _rng_state(),
        "history": history.as_dict(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


_CHECKPOINT_KEYS = {"version", "step", "names", "params", "optim", "rng", "history"}


def load_checkpoint(path: str | os.PathLike, map_location: Any = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (or :func:`fit_svi`).

    The file is read with ``torch.load(weights_only=True)``: a file holding anything but
    data (a pickled object whose loading would run code) is refused before anything runs.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, not a checkpoint, or of
            another version (the reason is named).
    """
    where = str(path)
    state = read_data_file(path, "checkpoint", map_location)
    if not isinstance(state, dict) or state.get("version") != _CHECKPOINT_VERSION:
        found = state.get("version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{where!r} is not a pyrobn checkpoint of version {_CHECKPOINT_VERSION} "
            f"(found {found!r})"
        )
    missing = _CHECKPOINT_KEYS - set(state)
    if missing:
        raise CheckpointError(f"{where!r} lacks {sorted(missing)}: a truncated checkpoint?")
    params = state["params"]
    if (
        not isinstance(params, list)
        or not isinstance(state["names"], list)
        or len(params) != len(state["names"])
        or not all(isinstance(p, torch.Tensor) for p in params)
    ):
        raise CheckpointError(f"{where!r} holds a malformed parameter list")
    bad = [n for n, p in zip(state["names"], params) if not bool(torch.isfinite(p).all())]
    if bad:
        raise CheckpointError(f"{where!r} holds non-finite values in parameters {bad}")
    history = state["history"]
    if not isinstance(history, dict) or not isinstance(history.get("losses"), list):
        raise CheckpointError(f"{where!r} holds a malformed history")
    if not isinstance(state["step"], int) or state["step"] < 0:
        raise CheckpointError(f"{where!r} holds an invalid step count {state['step']!r}")
    return state


def _restore_checkpoint(state: dict[str, Any], params: ParamList, optim: Optimiser) -> None:
    """Copy a checkpoint's parameters and optimiser state into this run's ``params``."""
    if len(params) != len(state["params"]):
        raise CheckpointError(
            f"the checkpoint holds {len(state['params'])} parameters "
            f"({state['names']}) but this model and guide have {len(params)} "
            f"({[name for name, _ in params]})"
        )
    with torch.no_grad():
        for (name, p), saved_name, saved in zip(params, state["names"], state["params"]):
            if p.shape != saved.shape:
                raise CheckpointError(
                    f"parameter {name!r} has shape {tuple(p.shape)} here but the checkpoint's "
                    f"{saved_name!r} has {tuple(saved.shape)}"
                )
            p.copy_(saved.to(p.device, p.dtype))
    tensors = [p for _, p in params]
    if isinstance(optim, FusedAdam):
        optim.load_state_of(tensors, state["optim"])
        return
    for p, optim_state in zip(tensors, state["optim"]):
        if optim_state is not None:
            optim.optim_objs[p] = optim._get_optim(p)
            optim.grad_clip[p] = optim._get_grad_clip(p)
            _load_state_dict(optim.optim_objs[p], optim_state)


def _optimiser_state(optim: Optimiser, params: list[torch.Tensor]) -> list[Any]:
    """Per parameter (in trace order): its optimiser state, or None if never stepped."""
    if isinstance(optim, FusedAdam):
        return optim.state_of(params)
    return [_get_state_dict(optim.optim_objs[p]) if p in optim.optim_objs else None for p in params]


def fit_svi(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    *args: Any,
    loss: ELBO | None = None,
    optim: Optimiser | None = None,
    steps: int = 1000,
    progress: bool = True,
    seed: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    callback: Callable[[int, float], None] | None = None,
    description: str = "svi",
    distributed: bool | None = None,
    data_plate: str = "data",
    **kwargs: Any,
) -> History:
    """Fit ``guide`` to the posterior of ``model`` by maximising the ELBO with SVI.

    Each step evaluates loss = -ELBO = -E_q[log p(x, z) - log q(z)] and its gradients,
    checks that both are finite, snapshots the parameters and applies ``optim``.

    Args:
        model, guide: a Pyro model and guide of one signature; ``*args``/``**kwargs``
            are passed to both at every step.
        loss: a Pyro ELBO (default ``Trace_ELBO()``; ``TraceEnum_ELBO`` for enumerated
            discrete sites, ``JitTrace_ELBO`` for speed). A loss object may instead make
            the step's updates itself: if it has a method ``update(model, guide, optim,
            *args, **kwargs) -> float`` (the loss before the step), each step calls it in
            place of ``loss_and_grads`` followed by ``optim(params)`` (an adversarial game
            updates its two players in turn, :class:`pyrobn.GAN`); the parameters are
            snapshotted before the call and checked after it, so the divergence guard,
            checkpoints, progress bar and history apply unchanged. It needs ``loss(model,
            guide, *args, **kwargs)`` too (the warm-up that creates the parameters).
        optim: a Pyro optimiser (default ``Adam(lr=0.01)``), or
            :class:`pyrobn.infer.optim.FusedAdam` (one multi-tensor step for all parameters).
        steps: the total number of steps; a resumed run continues up to this count.
        progress: show a progress bar with the current loss (rank 0 only when distributed).
        seed: seed Python, NumPy, torch and Pyro for the run; the caller's random states
            are given back afterwards (``None``: draw from the caller's streams).
        checkpoint: a path; the parameters, optimiser and RNG state are written there
            every ``checkpoint_every`` steps (if given) and at the end (by rank 0).
        resume: continue from ``checkpoint`` if that file exists; the continued run
            reproduces the losses of an uninterrupted one exactly.
        callback: called as ``callback(step, loss)`` after every step.
        distributed: data-parallel training over ``torch.distributed`` (see
            :mod:`pyrobn.infer.distributed`); ``None`` turns it on when launched by
            ``torchrun`` with more than one process.
        data_plate: the name of the plate whose rows are split across processes.

    Returns:
        a :class:`History` (loss per step, wall seconds, steps done).

    Raises:
        TrainingDiverged: naming the step whose loss or gradients were NaN or inf; the
            parameters are left at their values of the previous step, the last finite one.
        DistributedError: a bad launch environment, data that cannot be split across the
            processes, or a peer that died (after the group's timeout, on every rank).

    Example:
        Maximum likelihood of a Gaussian mean (an empty guide: no latent variables).

        >>> data = torch.tensor([4.8, 5.2, 5.1, 4.9])
        >>> def model(x):
        ...     mu = pyro.param("example_mu", torch.tensor(0.0))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("obs", dist.Normal(mu, 1.0), obs=x)
        >>> def guide(x):
        ...     pass
        >>> from pyro.optim import Adam
        >>> history = fit_svi(model, guide, data, steps=300, optim=Adam({"lr": 0.1}),
        ...                   progress=False, seed=0)
        >>> f"{pyro.param('example_mu').item():.2f}"     # the sample mean
        '5.00'
        >>> del pyro.get_param_store()["example_mu"]
    """
    steps = check_int(steps, "steps", low=0)
    if checkpoint_every is not None:
        checkpoint_every = check_int(checkpoint_every, "checkpoint_every")
    if seed is not None:
        seed = check_int(seed, "seed", low=0)
    if resume and checkpoint is None:
        raise ConfigurationError("resume=True needs checkpoint=<path>")
    loss = loss if loss is not None else Trace_ELBO()
    optim = optim if optim is not None else Adam({"lr": 0.01})
    # The run draws from its own seeded streams (or, resuming, the checkpoint's): the
    # caller's random states are restored afterwards. Unseeded runs use the caller's.
    isolated = seed is not None or (resume and checkpoint is not None and Path(checkpoint).exists())
    with forked() if isolated else contextlib.nullcontext():
        return _fit(
            model,
            guide,
            args,
            kwargs,
            loss=loss,
            optim=optim,
            steps=steps,
            progress=progress,
            seed=seed,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
            callback=callback,
            description=description,
            distributed=distributed,
            data_plate=data_plate,
        )


def _fit(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    loss: ELBO,
    optim: Optimiser,
    steps: int,
    progress: bool,
    seed: int | None,
    checkpoint: str | os.PathLike | None,
    checkpoint_every: int | None,
    resume: bool,
    callback: Callable[[int, float], None] | None,
    description: str,
    distributed: bool | None,
    data_plate: str,
) -> History:
    """The body of :func:`fit_svi`, run inside the caller's choice of random streams."""

    context = None
    sharding: Any = contextlib.nullcontext()
    updates_itself = callable(getattr(loss, "update", None))
    if distributed if distributed is not None else distributed_ops.launched_by_torchrun():
        if updates_itself:
            raise ConfigurationError(
                f"{type(loss).__name__} makes its own updates (loss.update): it cannot be "
                "trained data-parallel by fit_svi"
            )
        context = distributed_ops.setup()
        seed = distributed_ops.shared_seed(seed, context)
        sharding = distributed_ops.ShardDataPlate(data_plate, context)
    is_main = context is None or context.is_main

    # Create every parameter once, before the first step, from the seeded RNG; then
    # seed again, so that the steps draw the same numbers in every kind of run.
    if seed is not None:
        pyro.set_rng_seed(seed)
    with torch.no_grad(), sharding, poutine.trace(param_only=True) as warm_up:
        loss.loss(model, guide, *args, **kwargs)
    param_list = _param_sites(warm_up.trace)
    if context is not None:
        distributed_ops.broadcast_parameters([p for _, p in param_list], context)
    if seed is not None:
        pyro.set_rng_seed(seed)

    history = History()
    start = 0
    params = [p for _, p in param_list]
    _clear_grads(params)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        _restore_checkpoint(state, param_list, optim)
        try:
            _set_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"{str(checkpoint)!r} holds a malformed RNG state") from exc
        start = int(state["step"])
        history.losses = list(state["history"]["losses"])
        history.wall_time = float(state["history"]["wall_time"])

    bar = tqdm(
        range(start, steps),
        total=steps,
        initial=start,
        disable=not (progress and is_main),
        desc=description,
        dynamic_ncols=True,
    )
    t0 = time.perf_counter()
    refresh_every = max(1, (steps - start) // 100)
    snapshot = _Snapshot()

    def stop(error: TrainingDiverged) -> TrainingDiverged:
        snapshot.restore()
        bar.close()
        _finish(history, t0)
        return error

    try:
        for step in bar:
            if updates_itself:  # the step moves the parameters itself: snapshot them first
                snapshot.take(params)
            try:
                with sharding, poutine.trace(param_only=True) as param_capture:
                    if updates_itself:
                        value = loss.update(model, guide, optim, *args, **kwargs)
                    else:
                        value = loss.loss_and_grads(model, guide, *args, **kwargs)
            except ValueError as exc:
                # Pyro's validation rejects NaN/inf distribution parameters before the loss
                # exists: that is divergence too, unless the parameters were never finite.
                if "invalid values" not in str(exc) or not snapshot.params:
                    raise
                raise stop(
                    TrainingDiverged(
                        step,
                        math.nan,
                        f"training diverged at step {step}: a distribution got non-finite "
                        f"parameters ({str(exc).splitlines()[0]}); the parameters were restored "
                        f"to their values at step {step - 1}, the last step with a finite loss",
                    )
                ) from exc
            param_list = _param_sites(param_capture.trace)
            params = [p for _, p in param_list]
            value = float(value)
            if context is not None:
                value = distributed_ops.average_gradients_and_loss(params, value, context, step)
            if not math.isfinite(value):
                # A non-finite gradient makes the update non-finite, which shows here one step
                # later (or in the checks before a checkpoint and at the end): the snapshot taken
                # before that update is what ``stop`` restores.
                _clear_grads(params)
                raise stop(TrainingDiverged(step, value))
            if updates_itself:
                if not _all_finite(params):
                    raise stop(
                        TrainingDiverged(
                            step,
                            math.nan,
                            f"training diverged at step {step}: its updates made a parameter "
                            "non-finite; the parameters were restored to their values before it",
                        )
                    )
            else:
                snapshot.take(params)
                optim(params)
            _clear_grads(params)
            history.losses.append(value)
            if callback is not None:
                callback(step, value)
            if progress and is_main and (step - start) % refresh_every == 0:
                bar.set_postfix(loss=f"{value:.4g}", refresh=False)
            done = step + 1
            if checkpoint is not None and checkpoint_every and done % checkpoint_every == 0:
                if not _all_finite(params):
                    raise stop(_bad_update(step))
                _checkpoint(checkpoint, optim, param_list, done, history, context)
        if history.losses and not _all_finite(params):
            raise stop(_bad_update(len(history.losses) - 1))
        bar.close()
        _finish(history, t0)
        if checkpoint is not None and steps > start:
            _checkpoint(checkpoint, optim, param_list, len(history.losses), history, context)
        return history
    finally:
        # a run stopped between a backward pass and its update (an exception, Ctrl-C)
        # must not leave gradients for the next run to add to its first step
        _clear_grads([p for _, p in param_list])
        bar.close()


def _checkpoint(
    path: str | os.PathLike,
    optim: Optimiser,
    params: ParamList,
    step: int,
    history: History,
    context: distributed_ops.DistributedContext | None,
) -> None:
    """Rank 0 writes the checkpoint; the others wait for it."""
    if context is None or context.is_main:
        save_checkpoint(path, optim, params, step, history)
    if context is not None:
        distributed_ops.barrier(context)
