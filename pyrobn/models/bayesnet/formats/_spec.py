"""What every reader produces: a network described node by node, checked, then built.

Each reader (BIF, XMLBIF, UAI, Hugin NET) turns its file into a :class:`NetworkSpec`;
:func:`build` checks it the same way for every format (each message names the file and
the line where the fault is) and calls the network's constructor. Tables are float64
arrays with one axis per parent (in the parents' order) and a last axis over the node's
own states, as :class:`pyrobn.CPT` takes them.

Rounded tables. Files in the wild print probabilities with a few decimals, so a row
may sum to 0.9999 or 1.0003. A row whose sum is within ``ROW_TOLERANCE`` (1e-6) of 1
is kept bit for bit; one within ``tolerance`` (default :data:`READ_TOLERANCE`) is
divided by its sum, with one :class:`RenormalizedWarning` naming the nodes; beyond
that, :class:`pyrobn.errors.InvalidDistributionError` names the node, the row and
the line.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pyrobn.errors import (
    ConfigurationError,
    CycleError,
    InvalidDistributionError,
    ShapeError,
    UnknownVariableError,
)
from pyrobn.models.bayesnet.cpt import CPT, ROW_TOLERANCE, find_cycle

if TYPE_CHECKING:
    from pyrobn.models.bayesnet.network import DiscreteBayesianNetwork

__all__ = [
    "READ_TOLERANCE",
    "NetworkSpec",
    "NodeSpec",
    "RenormalizedWarning",
    "build",
    "format_float",
    "parse_float",
]

#: a row whose sum is off 1 by at most this is renormalised on reading (with a warning)
READ_TOLERANCE = 1e-2


class RenormalizedWarning(UserWarning):
    """Rows of a file's tables summed to 1 only within the reading tolerance and were
    divided by their sums (the message names the nodes and the largest deviation)."""


@dataclass
class NodeSpec:
    """One node as a file describes it (``line``: where it is declared, for messages)."""

    name: str
    states: list[str]
    line: int = 0
    parents: list[str] | None = None
    table: np.ndarray | None = None
    table_line: int = 0


@dataclass
class NetworkSpec:
    """A network read from ``source`` (a file name, for messages): nodes in file order."""

    source: str
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    name: str | None = None

    def where(self, line: int) -> str:
        return f"{self.source}:{line}" if line else self.source

    def add(self, node: NodeSpec) -> None:
        """Add a declared node; a name declared twice is an error naming both lines."""
        if node.name in self.nodes:
            first = self.nodes[node.name].line
            raise ConfigurationError(
                f"{self.where(node.line)}: variable {node.name!r} is declared twice "
                f"(first at line {first})"
            )
        if len(set(node.states)) != len(node.states):
            twice = sorted({s for s in node.states if node.states.count(s) > 1})
            raise ShapeError(
                f"{self.where(node.line)}: variable {node.name!r} lists the state(s) {twice} "
                f"twice: {node.states}"
            )
        if not node.states:
            raise ShapeError(f"{self.where(node.line)}: variable {node.name!r} has no states")
        self.nodes[node.name] = node

    def node(self, name: str, line: int) -> NodeSpec:
        """The declared node ``name`` (an error naming ``line`` when it is unknown)."""
        try:
            return self.nodes[name]
        except KeyError:
            raise UnknownVariableError(
                f"{self.where(line)}: {name!r} is not a declared variable"
            ) from None


def parse_float(text: str, where: str) -> float:
    """A finite probability written as text; anything else is an error naming ``where``."""
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"{where}: expected a number, found {text!r}") from None
    if not math.isfinite(value):
        raise InvalidDistributionError(f"{where}: {text!r} is not a finite number")
    return value


def format_float(value: float) -> str:
    """The shortest text that reads back as the same float64 (``repr``)."""
    return repr(float(value))


def _row_label(spec: NetworkSpec, node: NodeSpec, flat_row: int) -> str:
    parents = node.parents or []
    if not parents:
        return f"p({node.name})"
    cards = [len(spec.nodes[p].states) for p in parents]
    idx = np.unravel_index(flat_row, cards)
    cond = ", ".join(f"{p}={spec.nodes[p].states[int(k)]}" for p, k in zip(parents, idx))
    return f"the row p({node.name} | {cond})"


def _check_structure(spec: NetworkSpec) -> None:
    for node in spec.nodes.values():
        if node.table is None or node.parents is None:
            raise ConfigurationError(
                f"{spec.where(node.line)}: variable {node.name!r} has no probability table"
            )
        for p in node.parents:
            spec.node(p, node.table_line)
        if len(set(node.parents)) != len(node.parents):
            raise ConfigurationError(
                f"{spec.where(node.table_line)}: {node.name!r} lists a parent twice: {node.parents}"
            )
    parents = {n: node.parents or [] for n, node in spec.nodes.items()}
    placed: set[str] = set()
    remaining = list(spec.nodes)
    while remaining:
        ready = [n for n in remaining if all(p in placed for p in parents[n])]
        if not ready:
            cycle = find_cycle(remaining, parents)
            raise CycleError(
                f"{spec.where(spec.nodes[cycle[0]].table_line)}: the graph has a cycle: "
                f"{' -> '.join(cycle)}"
            )
        placed.update(ready)
        remaining = [n for n in remaining if n not in placed]


def _checked_table(spec: NetworkSpec, node: NodeSpec, tolerance: float) -> tuple[np.ndarray, float]:
    """The node's table, renormalised where a row is off by at most ``tolerance``;
    returns it and the largest deviation of a renormalised row (0 when none)."""
    table = node.table
    assert table is not None and node.parents is not None
    shape = (*(len(spec.nodes[p].states) for p in node.parents), len(node.states))
    where = spec.where(node.table_line)
    if table.shape != shape:
        raise ShapeError(
            f"{where}: the table of {node.name!r} has shape {table.shape}, expected {shape} "
            f"(parents {node.parents}, then its {len(node.states)} states)"
        )
    rows = table.reshape(-1, shape[-1])
    negative = (rows < 0).any(-1)
    if negative.any():
        r = int(np.flatnonzero(negative)[0])
        raise InvalidDistributionError(
            f"{where}: {_row_label(spec, node, r)} of {node.name!r} has a negative entry: "
            f"{rows[r].tolist()}"
        )
    deviation = np.abs(rows.sum(-1) - 1.0)
    bad = deviation > tolerance
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise InvalidDistributionError(
            f"{where}: {_row_label(spec, node, r)} of {node.name!r} sums to "
            f"{float(rows[r].sum()):.10g}, not 1 (tolerance on reading: {tolerance}): "
            f"{rows[r].tolist()}"
        )
    off = deviation > ROW_TOLERANCE
    if not off.any():
        return table, 0.0
    fixed = rows.copy()
    fixed[off] /= fixed[off].sum(-1, keepdims=True)
    return fixed.reshape(shape), float(deviation[off].max())


def build(
    spec: NetworkSpec,
    cls: type[DiscreteBayesianNetwork],
    *,
    tolerance: float = READ_TOLERANCE,
    device: Any = None,
) -> DiscreteBayesianNetwork:
    """Check ``spec`` (tables present, parents declared, no cycle, table shapes, entries)
    and build the network; rows off 1 by at most ``tolerance`` are renormalised with a
    :class:`RenormalizedWarning` naming the nodes."""
    if not spec.nodes:
        raise ConfigurationError(f"{spec.source}: the file declares no variable")
    if not (isinstance(tolerance, int | float) and 0 <= tolerance < 1):
        raise ConfigurationError(f"tolerance must be a number in [0, 1), got {tolerance!r}")
    _check_structure(spec)
    cpts: dict[str, CPT] = {}
    fixed: list[tuple[str, float]] = []
    for name, node in spec.nodes.items():
        table, deviation = _checked_table(spec, node, tolerance)
        if deviation:
            fixed.append((name, deviation))
        cpts[name] = CPT(table, parents=node.parents or ())
    if fixed:
        worst = max(d for _, d in fixed)
        shown = ", ".join(repr(n) for n, _ in fixed[:10]) + (", ..." if len(fixed) > 10 else "")
        warnings.warn(
            f"{spec.source}: rows of {len(fixed)} table(s) summed to 1 only within "
            f"{worst:.3g} and were renormalised: {shown}",
            RenormalizedWarning,
            stacklevel=3,
        )
    states = {name: node.states for name, node in spec.nodes.items()}
    return cls(cpts, states=states, device=device)


def states_from(names: Sequence[str]) -> list[str]:
    """State names as strings (a helper for readers of formats without names)."""
    return [str(s) for s in names]
