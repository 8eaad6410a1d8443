"""Inference: the training loop, exact enumeration, MAP and guide comparison."""

from __future__ import annotations

from pyrobn._lazy import lazy_exports
from pyrobn.infer.optim import FusedAdam
from pyrobn.infer.result import FitResult
from pyrobn.infer.svi import History, fit_svi, load_checkpoint, save_checkpoint

_EXPORTS = {
    "run_em": ".em",
    "map_estimate": ".map",
    "weight_decay_prior": ".map",
    "compare_guides": ".compare",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "FitResult",
    "FusedAdam",
    "History",
    "fit_svi",
    "load_checkpoint",
    "save_checkpoint",
    *_EXPORTS,
]
