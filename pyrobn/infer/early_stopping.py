"""SVI with early stopping on validation data: the best validation state is kept.

The book's code trains likelihood models (the autoregressive model of eq. 15, the flows
of eq. 18) on the training rows and keeps the parameters with the lowest negative
log-likelihood (or its bound) on held-out rows. :func:`fit_svi_validated` is that loop,
shared by every model that trains this way: :func:`pyrobn.infer.fit_svi` in chunks of
``chunk`` steps, ``validation_nll()`` after each chunk (the model in eval mode), an
optional ``patience``, and the best state restored at the end. Without
``validation_nll`` it is one plain ``fit_svi`` run.

The score is a closure over the model's own validation rows and labels, so that each
model evaluates validation data exactly as a user would (``model.nll(x_val, y_val)``,
labels as labels).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pyro.infer import ELBO, Trace_ELBO
from tqdm.auto import tqdm

from pyrobn.infer.svi import History, fit_svi
from pyrobn.validation import check_int

__all__ = ["fit_svi_validated"]


def fit_svi_validated(
    module: torch.nn.Module,
    model: Callable[..., Any],
    guide: Callable[..., Any],
    *args: Any,
    optim: Any,
    steps: int,
    chunk: int,
    validation_nll: Callable[[], float] | None = None,
    patience: int | None = None,
    loss: ELBO | None = None,
    progress: bool = True,
    description: str = "svi",
    **svi_kwargs: Any,
) -> tuple[History, list[float]]:
    """``steps`` SVI steps of ``model``/``guide`` on ``*args``, with early stopping.

    Args:
        module: the ``torch.nn.Module`` whose parameters are trained: in train mode while
            SVI runs, in eval mode while ``validation_nll`` runs; its ``state_dict`` at the
            best evaluation is restored at the end.
        validation_nll: the validation score, lower is better (nats per row); ``None``
            trains for ``steps`` steps in one ``fit_svi`` run.
        chunk: SVI steps between evaluations (e.g. ``eval_every`` epochs).
        patience: stop after this many evaluations without improvement (None: never).
        loss: the ELBO (default ``Trace_ELBO()``); other keyword arguments go to
            :func:`fit_svi`.

    Returns:
        The concatenated :class:`History` of the chunks and the validation curve (one
        score per evaluation; empty without ``validation_nll``).
    """
    loss = loss if loss is not None else Trace_ELBO()
    if validation_nll is None:
        history = fit_svi(
            model, guide, *args, loss=loss, optim=optim, steps=steps, progress=progress,
            description=description, **svi_kwargs,
        )  # fmt: skip
        return history, []
    chunk = check_int(chunk, "chunk")
    if patience is not None:
        patience = check_int(patience, "patience")
    history = History()
    curve: list[float] = []
    best, best_state, waited, done = math.inf, None, 0, 0
    bar = tqdm(total=steps, disable=not progress, desc=description, dynamic_ncols=True)
    try:
        while done < steps:
            now = min(chunk, steps - done)
            part = fit_svi(
                model, guide, *args, loss=loss, optim=optim, steps=now, progress=False,
                **svi_kwargs,
            )  # fmt: skip
            history.losses.extend(part.losses)
            history.wall_time += part.wall_time
            done += now
            module.eval()
            score = float(validation_nll())
            module.train()
            curve.append(score)
            bar.update(now)
            bar.set_postfix(val_nll=f"{score:.2f}", refresh=False)
            if score < best:
                best, waited = score, 0
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                waited += 1
                if patience is not None and waited >= patience:
                    break
    finally:
        bar.close()
    history.steps = len(history.losses)
    if best_state is not None:
        module.load_state_dict(best_state)
    return history, curve
