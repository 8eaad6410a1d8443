"""Lazy re-exports, so ``import pyrobn`` stays quick and each module keeps one job."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``name`` to ``exports[name]``'s attribute.

    ``exports`` maps a public name to the module (relative to ``package``) defining it;
    names that are submodules of ``package`` import as usual.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            module = importlib.import_module(exports[name], package)
            return getattr(module, name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__
