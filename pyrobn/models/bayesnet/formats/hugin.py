"""Hugin NET, the format of Hugin, GeNIe and Netica exports (and bnlearn's ``.net``).

::

    net { }
    node tub { states = ("yes" "no"); label = "tuberculosis"; }
    potential ( tub | asia ) {
        data = (( 0.05 0.95 )      %  asia = yes
                ( 0.01 0.99 ));    %  asia = no
    }

Read: ``%`` comments; ``node`` and ``discrete node`` declarations (their other
attributes are skipped); ``potential ( X | A B )`` whose ``data`` lists the table with
the first parent varying slowest and the node's own state fastest (the parentheses
only group). Continuous, decision and utility nodes and object-oriented classes are
refused with an error naming the line. Written: node names must be NET identifiers
(letters, digits, underscores); every float in its shortest exact form.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.models.bayesnet.formats._lexer import Tokens
from pyrobn.models.bayesnet.formats._spec import NetworkSpec, NodeSpec, format_float, parse_float

if TYPE_CHECKING:
    from pyrobn.models.bayesnet.network import DiscreteBayesianNetwork

__all__ = ["read_net", "write_net"]

_PUNCT = "{}()=;|"
_COMMENTS = r"%[^\n]*"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _skip_value(tokens: Tokens) -> None:
    """Skip an attribute's value up to its ``;`` (balanced parentheses)."""
    depth = 0
    while True:
        tok = tokens.next("';' closing the attribute")
        if tok.kind == "punct":
            if tok.text == "(":
                depth += 1
            elif tok.text == ")":
                depth -= 1
            elif tok.text == ";" and depth <= 0:
                return
            elif tok.text in "{}":
                raise tokens.error("';' closing the attribute", tok)


def _node(tokens: Tokens, spec: NetworkSpec) -> None:
    start = tokens.expect("node")
    name = tokens.name("a node name").text
    tokens.expect("{")
    states: list[str] | None = None
    while not tokens.accept("}"):
        attr = tokens.name("an attribute name or '}'")
        tokens.expect("=")
        if attr.text == "states":
            tokens.expect("(")
            states = []
            while not tokens.accept(")"):
                tok = tokens.next("a state name or ')'")
                if tok.kind == "punct":
                    raise tokens.error("a state name or ')'", tok)
                states.append(tok.text)
            tokens.expect(";")
        else:
            _skip_value(tokens)
    if states is None:
        raise ConfigurationError(f"{tokens.source}:{start.line}: node {name!r} has no states")
    spec.add(NodeSpec(name, states, line=start.line))


def _data(tokens: Tokens) -> list[float] | np.ndarray:
    """The numbers of ``data = ( ... );`` in order (parentheses only group them)."""
    fast = tokens.numbers(";", separators="()")
    if fast is not None:
        return fast
    values: list[float] = []
    depth = 0
    while True:
        tok = tokens.next("a number, '(' or ')'")
        if tok.kind == "punct":
            if tok.text == "(":
                depth += 1
            elif tok.text == ")":
                depth -= 1
                if depth < 0:
                    raise tokens.error("a number or ';'", tok)
            elif tok.text == ";" and depth == 0:
                return values
            else:
                raise tokens.error("a number, '(' or ')'", tok)
        else:
            values.append(parse_float(tok.text, f"{tokens.source}:{tok.line}"))


def _potential(tokens: Tokens, spec: NetworkSpec) -> None:
    start = tokens.expect("potential")
    tokens.expect("(")
    heads = []
    while not tokens.at("|") and not tokens.at(")"):
        heads.append(tokens.name("a node name, '|' or ')'").text)
    parents: list[str] = []
    if tokens.accept("|"):
        while not tokens.at(")"):
            parents.append(tokens.name("a parent name or ')'").text)
    tokens.expect(")")
    if len(heads) != 1:
        raise ConfigurationError(
            f"{tokens.source}:{start.line}: a potential must be over one node given its "
            f"parents, got {heads}"
        )
    node = spec.node(heads[0], start.line)
    if node.table is not None:
        raise ConfigurationError(
            f"{tokens.source}:{start.line}: a second potential for {node.name!r} "
            f"(the first is at line {node.table_line})"
        )
    cards = [len(spec.node(p, start.line).states) for p in parents]
    values: list[float] | np.ndarray | None = None
    tokens.expect("{")
    while not tokens.accept("}"):
        attr = tokens.name("'data' or '}'")
        tokens.expect("=")
        if attr.text == "data":
            line = attr.line
            values = _data(tokens)
        else:
            _skip_value(tokens)
    if values is None:
        raise ConfigurationError(
            f"{tokens.source}:{start.line}: the potential of {node.name!r} has no data"
        )
    shape = (*cards, len(node.states))
    if len(values) != int(np.prod(shape, dtype=np.int64)):
        raise ShapeError(
            f"{tokens.source}:{line}: the data of {node.name!r} has {len(values)} numbers, "
            f"expected {int(np.prod(shape, dtype=np.int64))} (shape {shape}: parents "
            f"{parents}, then its states)"
        )
    node.parents = parents
    node.table = np.asarray(values, dtype=np.float64).reshape(shape)
    node.table_line = start.line


def read_net(text: str, source: str = "<net>") -> NetworkSpec:
    """Parse Hugin NET ``text`` into a :class:`NetworkSpec`."""
    tokens = Tokens(text, source, _PUNCT, _COMMENTS)
    spec = NetworkSpec(source)
    while tokens.peek() is not None:
        tok = tokens.peek()
        assert tok is not None
        if tok.kind == "word" and tok.text == "net":
            tokens.next("")
            tokens.skip_block()
        elif tok.kind == "word" and tok.text == "discrete" and _is(tokens.peek(1), "node"):
            tokens.next("")
            _node(tokens, spec)
        elif tok.kind == "word" and tok.text == "node":
            _node(tokens, spec)
        elif tok.kind == "word" and tok.text == "potential":
            _potential(tokens, spec)
        elif tok.kind == "word" and tok.text in ("continuous", "decision", "utility", "class"):
            what = f"{tok.text} nodes" if tok.text != "class" else "object-oriented classes"
            raise ConfigurationError(
                f"{source}:{tok.line}: {what} are not supported (discrete chance nodes only)"
            )
        else:
            raise tokens.error("'net', 'node' or 'potential'")
    return spec


def _is(token: object, text: str) -> bool:
    return getattr(token, "text", None) == text


def _nested(table: np.ndarray, indent: str) -> str:
    if table.ndim == 1:
        return "( " + " ".join(format_float(v) for v in table) + " )"
    inner = f"\n{indent} ".join(_nested(t, indent + " ") for t in table)
    return "(" + inner + ")"


def write_net(net: DiscreteBayesianNetwork) -> str:
    """The network as Hugin NET text (unnamed states are written as their indices)."""
    for n in net.variables:
        if not _IDENT.match(n):
            raise ConfigurationError(
                f"node name {n!r} is not a NET identifier (letters, digits and underscores, "
                "not starting with a digit); rename it or write BIF or XMLBIF instead"
            )
    lines = ["net", "{", "}"]
    for n in net.variables:
        names = net.state_names(n)
        quoted = " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in names)
        lines += ["", f"node {n}", "{", f"    states = ({quoted});", "}"]
    for n in net.variables:
        parents = net.parents(n)
        head = f"{n} | {' '.join(parents)}" if parents else n
        table = net.table(n).detach().cpu().numpy()
        lines += ["", f"potential ( {head} )", "{", f"    data = {_nested(table, ' ' * 11)};", "}"]
    return "\n".join(lines) + "\n"
