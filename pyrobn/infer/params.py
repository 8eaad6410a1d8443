"""Pyro's param store without surprises: names of one's own, released with their owner.

Pyro keeps every parameter met through ``pyro.param`` (and every ``PyroModule`` parameter)
in one global store, keyed by name. A library that uses that store must never clear it and
never write under a name it did not create. Each pyrobn model, and each guide it builds,
therefore registers its parameters under a prefix of its own (:func:`unique_name`), and
:func:`release_with` removes exactly those names from the store once the owner is garbage
collected, so deleted models do not keep their tensors alive.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

import pyro

__all__ = ["forget_params", "owned_params", "release_with", "unique_name"]

_counter = itertools.count()


def unique_name(stem: str) -> str:
    """``stem`` with a process-unique suffix: ``"VAE_3"``, ``"map_7"``.

    >>> unique_name("map") != unique_name("map")
    True
    """
    return f"{stem}_{next(_counter)}"


def _owns(prefix: str, name: str) -> bool:
    return name == prefix or name.startswith(f"{prefix}.")


def owned_params(prefix: str) -> list[str]:
    """The names in Pyro's param store that belong to ``prefix`` (``prefix`` itself, or
    ``prefix.…`` as ``PyroModule`` and autoguides name them)."""
    return [name for name in pyro.get_param_store().keys() if _owns(prefix, name)]


def forget_params(prefix: str) -> None:
    """Remove the names that belong to ``prefix`` from Pyro's param store, nothing else."""
    store = pyro.get_param_store()
    for name in owned_params(prefix):
        del store[name]


def release_with(owner: Any, prefix: str) -> None:
    """Remove ``prefix``'s parameters from the param store when ``owner`` is collected."""
    weakref.finalize(owner, forget_params, prefix)
