"""A multi-tensor Adam for :func:`pyrobn.infer.fit_svi`.

Pyro's ``pyro.optim.Adam`` keeps one ``torch.optim.Adam`` per parameter tensor, so a step
of a network with a dozen tensors runs a dozen optimiser steps. :class:`FusedAdam` keeps
one ``torch.optim.Adam(foreach=True)`` over every parameter it has seen: the same update
rule (Kingma and Ba), one fused step. It is called like a Pyro optimiser
(``optim(params)``) and its state is checkpointed per parameter, like Pyro's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from pyrobn.validation import check_positive


class FusedAdam:
    """Adam over all parameters in one ``torch.optim.Adam(foreach=True)`` step.

    >>> fit_svi(model, guide, x, optim=FusedAdam(lr=1e-3))
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        check_positive(lr, "lr")
        self.hyper = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        self.optimizer: torch.optim.Adam | None = None
        self._known: set[torch.Tensor] = set()

    def _add(self, params: list[torch.Tensor]) -> None:
        new = [p for p in params if p not in self._known]
        if not new:
            return
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(new, foreach=True, **self.hyper)
        else:
            self.optimizer.add_param_group({"params": new})
        self._known.update(new)

    def __call__(self, params: Iterable[torch.Tensor]) -> None:
        """One Adam step on ``params`` (new parameters join the optimiser on first sight)."""
        params = list(params)
        self._add(params)
        assert self.optimizer is not None
        self.optimizer.step()

    def state_of(self, params: list[torch.Tensor]) -> list[dict[str, Any] | None]:
        """Adam's moments and step count for each of ``params`` (None if never stepped)."""
        if self.optimizer is None:
            return [None] * len(params)
        return [
            {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state.items()}
            if (state := self.optimizer.state.get(p))
            else None
            for p in params
        ]

    def load_state_of(
        self, params: list[torch.Tensor], states: list[dict[str, Any] | None]
    ) -> None:
        """Give ``params`` the saved moments of :meth:`state_of` (resuming a run)."""
        self._add(params)
        assert self.optimizer is not None
        for p, state in zip(params, states):
            if state is not None:
                self.optimizer.state[p] = {
                    k: v.to(p.device) if torch.is_tensor(v) and v.dim() else v
                    for k, v in state.items()
                }
