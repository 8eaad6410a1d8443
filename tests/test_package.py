"""The package's layout rules: every module declares its public names in ``__all__``, every
name it lists exists, and the top-level names resolve lazily to the classes they name."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import pyrobn

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(pyrobn.__path__, prefix="pyrobn.")
    if info.name != "pyrobn.__main__"
)


def test_the_package_has_its_modules():
    assert {"pyrobn.models.base", "pyrobn.infer.em", "pyrobn.graph", "pyrobn.errors"} <= set(
        MODULES
    )


@pytest.mark.parametrize("name", MODULES)
def test_every_module_lists_its_public_names(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list | tuple), f"{name} has no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it does not define: {missing}"


def test_every_top_level_name_resolves():
    for name in pyrobn.__all__:
        assert getattr(pyrobn, name) is not None, name
