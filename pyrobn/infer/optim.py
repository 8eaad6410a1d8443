"""A multi-tensor Adam for :func:`pyrobn.infer.fit_svi`.

Pyro's ``pyro.optim.Adam`` keeps one ``torch.optim.Adam`` per parameter tensor, so a step
of a network with a dozen tensors runs a dozen optimiser steps. :class:`FusedAdam` keeps
one ``torch.optim.Adam(foreach=True)`` over every parameter it has seen: the same update
rule (Kingma and Ba), one fused step. It is called like a Pyro optimiser
(``optim(params)``) and its state is checkpointed per parameter, like Pyro's.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import torch

from pyrobn.errors import ConfigurationError
from pyrobn.validation import check_positive

__all__ = ["FusedAdam"]


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


class FusedAdam:
    """Adam over all parameters in one ``torch.optim.Adam(foreach=True)`` step.

    Raises :class:`pyrobn.errors.ConfigurationError` for a learning rate that is not a
    positive number, betas outside [0, 1), a negative ``eps`` or ``weight_decay``.

    >>> from pyrobn.infer import fit_svi
    >>> def model(x):
    ...     mu = pyro.param("fused_demo_mu", torch.tensor(0.0))
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
    >>> x = torch.full((10,), 3.0)
    >>> history = fit_svi(model, lambda x: None, x, optim=FusedAdam(lr=0.1), steps=200,
    ...                   progress=False, seed=0)
    >>> round(float(pyro.param("fused_demo_mu")), 2)      # the MLE: the mean of x
    3.0
    >>> del pyro.get_param_store()["fused_demo_mu"]
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise ConfigurationError(f"lr must be a positive number, got {lr!r}")
        check_positive(float(lr), "lr")
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ConfigurationError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        b1, b2 = (_real(b, "betas") for b in betas)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ConfigurationError(f"betas must lie in [0, 1), got {tuple(betas)}")
        if _real(eps, "eps") < 0 or _real(weight_decay, "weight_decay") < 0:
            raise ConfigurationError(
                f"eps and weight_decay must be >= 0, got {eps!r} and {weight_decay!r}"
            )
        self.hyper = {
            "lr": float(lr),
            "betas": (b1, b2),
            "eps": float(eps),
            "weight_decay": float(weight_decay),
        }
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
