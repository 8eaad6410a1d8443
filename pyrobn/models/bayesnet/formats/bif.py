"""BIF, the Bayesian Interchange Format (JavaBayes 0.15; bnlearn's repository, pgmpy).

::

    network asia { }
    variable tub { type discrete [ 2 ] { yes, no }; }
    probability ( tub | asia ) {
      (yes) 0.05, 0.95;          // p(tub | asia = yes): one row per parent assignment
      (no) 0.01, 0.99;
    }
    probability ( asia ) { table 0.01, 0.99; }

Read: ``//`` and ``/* */`` comments; names as words or in double quotes (words joined
by spaces where a file writes multi-word names); states separated by commas or by
spaces; rows labelled by parent states in any order, a ``default`` row for the
assignments not listed, or one ``table`` listing every entry with the node's own
state varying slowest (JavaBayes' order, which pgmpy follows); ``property`` lines
are skipped. Written: one labelled row per parent assignment (the last parent varying
fastest), every float in its shortest exact form, so a round trip is bit for bit.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING

import numpy as np

from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.models.bayesnet.formats._lexer import Tokens
from pyrobn.models.bayesnet.formats._spec import NetworkSpec, NodeSpec, format_float, parse_float

if TYPE_CHECKING:
    from pyrobn.models.bayesnet.network import DiscreteBayesianNetwork

__all__ = ["read_bif", "write_bif"]

_PUNCT = "{}()[],;|"
_COMMENTS = r"//[^\n]*|/\*.*?\*/"
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-]*\Z")


def _words(tokens: Tokens, what: str) -> str:
    """One name: consecutive words or strings, joined by a space, up to a punctuation."""
    parts = [tokens.name(what).text]
    while True:
        tok = tokens.peek()
        if tok is None or tok.kind == "punct":
            break
        parts.append(tokens.next(what).text)
    return " ".join(parts)


def _name_list(tokens: Tokens, close: str, what: str) -> list[str]:
    """Names separated by commas (or, without commas, by spaces) up to ``close``."""
    items: list[list[str]] = [[]]
    commas = False
    while not tokens.at(close):
        tok = tokens.next(f"{what} or {close!r}")
        if tok.kind == "punct":
            if tok.text != ",":
                raise tokens.error(f"{what}, ',' or {close!r}", tok)
            commas = True
            items.append([])
        else:
            items[-1].append(tok.text)
    tokens.expect(close)
    if commas:
        if any(not parts for parts in items):
            raise ConfigurationError(f"{tokens.source}:{tokens.line}: an empty {what} in a list")
        return [" ".join(parts) for parts in items]
    return items[0]


def _numbers(tokens: Tokens) -> list[float] | np.ndarray:
    """Numbers separated by commas or spaces, up to and including ``;``."""
    fast = tokens.numbers(";")
    if fast is not None:
        return fast
    values: list[float] = []
    while True:
        tok = tokens.next("a number or ';'")
        if tok.kind == "punct":
            if tok.text == ";":
                return values
            if tok.text == ",":
                continue
            raise tokens.error("a number or ';'", tok)
        values.append(parse_float(tok.text, f"{tokens.source}:{tok.line}"))


def _variable(tokens: Tokens, spec: NetworkSpec) -> None:
    start = tokens.expect("variable")
    name = _words(tokens, "a variable name")
    tokens.expect("{")
    states: list[str] | None = None
    while not tokens.accept("}"):
        tok = tokens.next("'type', 'property' or '}'")
        if tok.text == "type" and tok.kind == "word":
            kind = tokens.name("a variable type ('discrete')")
            if kind.text != "discrete":
                raise ConfigurationError(
                    f"{tokens.source}:{kind.line}: variable {name!r} is of type {kind.text!r}; "
                    "only discrete variables are supported"
                )
            tokens.expect("[")
            size_tok = tokens.name("the number of states")
            if not size_tok.text.isdigit():
                raise tokens.error("the number of states", size_tok)
            tokens.expect("]")
            tokens.expect("{")
            states = _name_list(tokens, "}", "a state name")
            tokens.expect(";")
            if len(states) != int(size_tok.text):
                raise ShapeError(
                    f"{tokens.source}:{size_tok.line}: variable {name!r} declares "
                    f"{size_tok.text} states but lists {len(states)}: {states}"
                )
        elif tok.text == "property" and tok.kind == "word":
            while not tokens.accept(";"):
                tokens.next("';' closing the property")
        else:
            raise tokens.error("'type', 'property' or '}'", tok)
    if states is None:
        raise ConfigurationError(f"{tokens.source}:{start.line}: variable {name!r} has no type")
    spec.add(NodeSpec(name, states, line=start.line))


def _probability(tokens: Tokens, spec: NetworkSpec) -> None:
    start = tokens.expect("probability")
    tokens.expect("(")
    head = [tokens.name("a variable name").text]
    while not tokens.at("|") and not tokens.at(")"):
        head.append(tokens.name("a variable name, '|' or ')'").text)
    if tokens.accept("|"):
        name = " ".join(head)
        parents = _name_list(tokens, ")", "a parent name")
    else:  # the old form: probability ( child parent1 parent2 )
        tokens.expect(")")
        name, parents = head[0], head[1:]
    node = spec.node(name, start.line)
    if node.table is not None:
        raise ConfigurationError(
            f"{tokens.source}:{start.line}: a second probability block for {name!r} "
            f"(the first is at line {node.table_line})"
        )
    parent_nodes = [spec.node(p, start.line) for p in parents]
    cards = [len(p.states) for p in parent_nodes]
    card = len(node.states)
    rows: dict[tuple[int, ...], list[float]] = {}
    default: list[float] | None = None
    full: list[float] | None = None
    tokens.expect("{")
    while not tokens.accept("}"):
        tok = tokens.peek()
        line = tokens.line
        if tokens.accept("("):
            labels = _name_list(tokens, ")", "a parent state")
            if len(labels) != len(parents):
                raise ShapeError(
                    f"{tokens.source}:{line}: the row {tuple(labels)} of {name!r} names "
                    f"{len(labels)} parent state(s); {name!r} has {len(parents)} parent(s)"
                )
            key = []
            for label, pnode in zip(labels, parent_nodes):
                if label not in pnode.states:
                    raise ConfigurationError(
                        f"{tokens.source}:{line}: {label!r} is not a state of {pnode.name!r} "
                        f"(its states: {pnode.states})"
                    )
                key.append(pnode.states.index(label))
            values = _numbers(tokens)
            if len(values) != card:
                raise ShapeError(
                    f"{tokens.source}:{line}: the row {tuple(labels)} of {name!r} has "
                    f"{len(values)} numbers; {name!r} has {card} states"
                )
            if tuple(key) in rows:
                raise ConfigurationError(
                    f"{tokens.source}:{line}: the row {tuple(labels)} of {name!r} is given twice"
                )
            rows[tuple(key)] = values
        elif tok is not None and tok.kind == "word" and tok.text in ("table", "default"):
            tokens.next("")
            values = _numbers(tokens)
            if tok.text == "default":
                if len(values) != card:
                    raise ShapeError(
                        f"{tokens.source}:{line}: the default row of {name!r} has "
                        f"{len(values)} numbers; {name!r} has {card} states"
                    )
                default = values
            else:
                expected = card * int(np.prod(cards, dtype=np.int64))
                if len(values) != expected:
                    raise ShapeError(
                        f"{tokens.source}:{line}: the table of {name!r} has {len(values)} "
                        f"numbers, expected {expected} ({card} states x "
                        f"{expected // card} parent assignments)"
                    )
                full = values
        elif tok is not None and tok.kind == "word" and tok.text == "property":
            while not tokens.accept(";"):
                tokens.next("';' closing the property")
        else:
            raise tokens.error("'(' starting a row, 'table', 'default' or '}'")
    if full is not None:  # the node's state varies slowest
        table = np.moveaxis(np.asarray(full, dtype=np.float64).reshape(card, *cards), 0, -1)
    else:
        table = np.empty((*cards, card), dtype=np.float64)
        for key in itertools.product(*(range(k) for k in cards)):
            values = rows.get(key, default)
            if values is None:
                labels = ", ".join(p.states[k] for p, k in zip(parent_nodes, key))
                raise ConfigurationError(
                    f"{tokens.source}:{start.line}: the probability block of {name!r} has no "
                    f"row for ({labels}) and no default row"
                )
            table[key] = values
    node.parents = parents
    node.table = np.ascontiguousarray(table)
    node.table_line = start.line


def read_bif(text: str, source: str = "<bif>") -> NetworkSpec:
    """Parse BIF ``text`` into a :class:`NetworkSpec` (errors name ``source`` and the line)."""
    tokens = Tokens(text, source, _PUNCT, _COMMENTS)
    spec = NetworkSpec(source)
    while tokens.peek() is not None:
        tok = tokens.peek()
        assert tok is not None
        if tok.kind == "word" and tok.text == "network":
            tokens.next("")
            words = []
            while not tokens.at("{"):
                words.append(tokens.name("the network's name or '{'").text)
            spec.name = " ".join(words) or None
            tokens.skip_block()
        elif tok.kind == "word" and tok.text == "variable":
            _variable(tokens, spec)
        elif tok.kind == "word" and tok.text == "probability":
            _probability(tokens, spec)
        else:
            raise tokens.error("'network', 'variable' or 'probability'")
    return spec


def _quote(name: str) -> str:
    if _PLAIN.match(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_bif(net: DiscreteBayesianNetwork) -> str:
    """The network as BIF text (unnamed states are written as their indices)."""
    lines = ["network unknown {", "}"]
    states = {n: net.state_names(n) for n in net.variables}
    for n in net.variables:
        names = ", ".join(_quote(s) for s in states[n])
        lines += [
            f"variable {_quote(n)} {{",
            f"  type discrete [ {len(states[n])} ] {{ {names} }};",
            "}",
        ]
    for n in net.variables:
        parents = net.parents(n)
        table = net.table(n).detach().cpu().numpy()
        if not parents:
            lines.append(f"probability ( {_quote(n)} ) {{")
            lines.append("  table " + ", ".join(format_float(v) for v in table) + ";")
        else:
            head = ", ".join(_quote(p) for p in parents)
            lines.append(f"probability ( {_quote(n)} | {head} ) {{")
            for key in itertools.product(*(range(net.cardinality(p)) for p in parents)):
                labels = ", ".join(_quote(states[p][k]) for p, k in zip(parents, key))
                values = ", ".join(format_float(v) for v in table[key])
                lines.append(f"  ({labels}) {values};")
        lines.append("}")
    return "\n".join(lines) + "\n"
