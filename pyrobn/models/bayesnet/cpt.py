"""Conditional probability tables and the DAG's order: the data a network is built from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from pyrobn.errors import (
    CycleError,
    ShapeError,
)

__all__ = ["CPT", "ROW_TOLERANCE", "find_cycle", "normalise_rows", "topological_order"]

#: rows of a table must sum to 1 within this (absolute) tolerance
ROW_TOLERANCE = 1e-6

#: rows off 1 by more than this (rounding in a file, not float noise) are divided by
#: their sum when a network stores them
NORMALISE_ABOVE = 1e-12


def normalise_rows(table: torch.Tensor) -> torch.Tensor:
    """``table`` (in place) with each row (last axis) whose sum is off 1 by more than
    1e-12 divided by that sum; rows closer to 1 keep every bit.

    Exact queries rely on it: a barren node drops out only because its rows sum to 1,
    so a table printed with 7 digits (rows off by 1e-7, common in BIF files) would
    otherwise make the answer depend on which nodes a query prunes.
    """
    sums = table.sum(-1, keepdim=True)
    off = (sums - 1).abs() > NORMALISE_ABOVE
    if bool(off.any()):
        table.copy_(torch.where(off, table / sums, table))
    return table


class CPT:
    """A conditional probability table p(x | parents).

    ``table`` has one axis per parent, in the order of ``parents``, and a last axis
    over the node's own states: ``table[a, b, k] = p(x = k | pa_1 = a, pa_2 = b)``; each
    row (last axis) sums to 1. A root node's table is a vector.

    >>> CPT([[0.8, 0.2], [0.25, 0.75]], parents=["x1"])   # p(x2 | x1), notes 2.1.1
    CPT(shape=(2, 2), parents=['x1'])
    """

    def __init__(self, table: Any, parents: Sequence[str] = ()) -> None:
        if isinstance(parents, str):
            parents = [parents]
        self.parents = tuple(str(p) for p in parents)
        if isinstance(table, torch.Tensor):
            self.table = table.detach().to(torch.float64)
        else:
            try:
                self.table = torch.as_tensor(np.asarray(table, dtype=np.float64))
            except (TypeError, ValueError) as exc:
                raise ShapeError(f"a CPT table must be a rectangular array: {exc}") from exc

    @property
    def cardinality(self) -> int:
        """The number of states of the node."""
        return int(self.table.shape[-1]) if self.table.dim() else 0

    def __repr__(self) -> str:
        return f"CPT(shape={tuple(self.table.shape)}, parents={list(self.parents)})"


def topological_order(names: Sequence[str], parents: Mapping[str, Sequence[str]]) -> list[str]:
    """Kahn's order, stable in the declared order; raises CycleError naming a cycle."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(names)
    while remaining:
        ready = [n for n in remaining if all(p in placed for p in parents[n])]
        if not ready:
            raise CycleError(
                f"the graph has a cycle: {' -> '.join(find_cycle(remaining, parents))}"
            )
        for n in ready:
            order.append(n)
            placed.add(n)
        remaining = [n for n in remaining if n not in placed]
    return order


def find_cycle(nodes: Sequence[str], parents: Mapping[str, Sequence[str]]) -> list[str]:
    """A cycle among ``nodes`` (each has a parent among them), closed: [a, b, ..., a]."""
    inside = set(nodes)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = nodes[0]
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(p for p in parents[node] if p in inside)
    cycle = [*path[seen[node] :], node]
    return cycle[::-1]  # parent -> child direction
