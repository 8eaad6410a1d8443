"""UAI, the format of the UAI inference competitions (the ``BAYES`` preamble).

::

    BAYES
    3                 # variables
    2 2 3             # their cardinalities
    3                 # functions, one per variable
    1 0               # scope size, then the variables; the child comes last
    2 0 1
    2 1 2

    2  0.436 0.564    # each table: its size, then the entries in C order
    4  0.128 0.872 0.920 0.080
    6  ...

The file has no names: variables read as ``x0, x1, ...`` and states as ``"0", "1",
...``; writing keeps the structure, the variables' order and every probability bit
for bit, not the names. ``MARKOV`` files (undirected models) are refused. Lines
starting with ``c`` and text after ``#`` are comments (both conventions are in use).

A table lists its entries with the last variable of the scope varying fastest (the
format's description; the child is last). pyAgrum 3.3 writes and reads tables with two
or more parents with the first parent varying fastest instead, so its multi-parent
UAI files do not agree with this reader (pgmpy 1.1 departs from the description too).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.models.bayesnet.formats._spec import NetworkSpec, NodeSpec, format_float, parse_float

if TYPE_CHECKING:
    from pyrobn.models.bayesnet.network import DiscreteBayesianNetwork

__all__ = ["read_uai", "write_uai"]


class _Numbers:
    """Whitespace-separated tokens with their lines."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.items: list[tuple[str, int]] = []
        for line_no, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0]  # a comment convention some writers use
            if line.lstrip().startswith("c"):  # the competitions' comment lines
                continue
            self.items.extend((tok, line_no) for tok in line.split())
        self.pos = 0

    def next(self, what: str) -> tuple[str, int]:
        if self.pos >= len(self.items):
            last = self.items[-1][1] if self.items else 1
            raise ConfigurationError(f"{self.source}:{last}: expected {what}, found the end")
        item = self.items[self.pos]
        self.pos += 1
        return item

    def integer(self, what: str, low: int = 0) -> tuple[int, int]:
        tok, line = self.next(what)
        if not re.fullmatch(r"\d+", tok) or int(tok) < low:
            raise ConfigurationError(f"{self.source}:{line}: expected {what}, found {tok!r}")
        return int(tok), line


def read_uai(text: str, source: str = "<uai>") -> NetworkSpec:
    """Parse UAI ``text`` (``BAYES``) into a :class:`NetworkSpec`."""
    nums = _Numbers(text, source)
    kind, line = nums.next("'BAYES'")
    if kind.upper() == "MARKOV":
        raise ConfigurationError(
            f"{source}:{line}: a MARKOV (undirected) model, not a Bayesian network"
        )
    if kind.upper() != "BAYES":
        raise ConfigurationError(f"{source}:{line}: expected 'BAYES', found {kind!r}")
    n, _ = nums.integer("the number of variables", 1)
    cards = [nums.integer(f"the cardinality of variable {i}", 1)[0] for i in range(n)]
    spec = NetworkSpec(source)
    for i, k in enumerate(cards):
        spec.add(NodeSpec(f"x{i}", [str(s) for s in range(k)], line=line))
    n_functions, fline = nums.integer("the number of functions")
    if n_functions != n:
        raise ShapeError(
            f"{source}:{fline}: a BAYES file has one function per variable: {n} variables, "
            f"{n_functions} functions"
        )
    scopes = []
    for f in range(n_functions):
        size, sline = nums.integer(f"the scope size of function {f}", 1)
        scope = [nums.integer(f"a variable index of function {f}")[0] for _ in range(size)]
        bad = [v for v in scope if v >= n]
        if bad:
            raise ConfigurationError(
                f"{source}:{sline}: function {f} names variable {bad[0]}; there are {n}"
            )
        scopes.append((scope, sline))
    for f, (scope, sline) in enumerate(scopes):
        node = spec.nodes[f"x{scope[-1]}"]
        if node.table is not None:
            raise ConfigurationError(
                f"{source}:{sline}: two functions have variable {scope[-1]} as their child "
                "(the last of the scope)"
            )
        size, tline = nums.integer(f"the table size of function {f}", 1)
        shape = tuple(cards[v] for v in scope)
        if size != int(np.prod(shape, dtype=np.int64)):
            raise ShapeError(
                f"{source}:{tline}: function {f} declares {size} entries; its scope {scope} "
                f"has {int(np.prod(shape, dtype=np.int64))}"
            )
        values = []
        for _ in range(size):
            tok, vline = nums.next(f"an entry of function {f}")
            values.append(parse_float(tok, f"{source}:{vline}"))
        node.parents = [f"x{v}" for v in scope[:-1]]
        node.table = np.asarray(values, dtype=np.float64).reshape(shape)
        node.table_line = tline
    if nums.pos < len(nums.items):
        tok, extra = nums.items[nums.pos]
        raise ConfigurationError(f"{source}:{extra}: expected the end of the file, found {tok!r}")
    return spec


def write_uai(net: DiscreteBayesianNetwork) -> str:
    """The network as UAI ``BAYES`` text (names are not part of the format)."""
    index = {n: i for i, n in enumerate(net.variables)}
    lines = ["BAYES", str(len(net.variables))]
    lines.append(" ".join(str(net.cardinality(n)) for n in net.variables))
    lines.append(str(len(net.variables)))
    for n in net.variables:
        scope = [index[p] for p in net.parents(n)] + [index[n]]
        lines.append(" ".join(map(str, [len(scope), *scope])))
    for n in net.variables:
        table = net.table(n).detach().cpu().numpy().reshape(-1)
        lines += ["", str(table.size), " ".join(format_float(v) for v in table)]
    return "\n".join(lines) + "\n"
