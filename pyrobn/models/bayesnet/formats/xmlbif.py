"""XMLBIF 0.3, the XML form of BIF (JavaBayes, Weka, pgmpy, pyAgrum's ``.bifxml``).

::

    <BIF VERSION="0.3"><NETWORK><NAME>asia</NAME>
      <VARIABLE TYPE="nature"><NAME>tub</NAME><OUTCOME>yes</OUTCOME><OUTCOME>no</OUTCOME>
      </VARIABLE>
      <DEFINITION><FOR>tub</FOR><GIVEN>asia</GIVEN><TABLE>0.05 0.95 0.01 0.99</TABLE>
      </DEFINITION>
    </NETWORK></BIF>

``TABLE`` lists the entries with the ``GIVEN`` parents in order, the first varying
slowest, and the ``FOR`` node's state fastest; ``PROBABILITY`` is accepted for
``DEFINITION`` (older files). Parsed by expat (line numbers in every message);
a document type declaration is refused, so no entity can expand. Every float is
written in its shortest exact form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from xml.parsers import expat
from xml.sax.saxutils import escape

import numpy as np

from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.models.bayesnet.formats._spec import NetworkSpec, NodeSpec, format_float, parse_float

if TYPE_CHECKING:
    from pyrobn.models.bayesnet.network import DiscreteBayesianNetwork

__all__ = ["read_xmlbif", "write_xmlbif"]


@dataclass
class _Element:
    tag: str
    line: int
    children: list[_Element] = field(default_factory=list)
    text: str = ""

    def all(self, tag: str) -> list[_Element]:
        return [c for c in self.children if c.tag.upper() == tag]

    def one(self, tag: str, source: str) -> _Element:
        found = self.all(tag)
        if len(found) != 1:
            raise ConfigurationError(
                f"{source}:{self.line}: <{self.tag}> must hold one <{tag}>, found {len(found)}"
            )
        return found[0]


def _parse(text: str, source: str) -> _Element:
    parser = expat.ParserCreate()
    root = _Element("#document", 1)
    stack = [root]

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = _Element(tag, parser.CurrentLineNumber)
        stack[-1].children.append(element)
        stack.append(element)

    def end(tag: str) -> None:
        stack.pop()

    def data(chunk: str) -> None:
        stack[-1].text += chunk

    def doctype(*args: object) -> None:
        raise ConfigurationError(
            f"{source}:{parser.CurrentLineNumber}: a document type declaration is not "
            "accepted in XMLBIF (no entities are expanded)"
        )

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise ConfigurationError(
            f"{source}:{exc.lineno}: not well-formed XML ({expat.ErrorString(exc.code)})"
        ) from None
    if len(root.children) != 1:
        raise ConfigurationError(f"{source}: expected one root element <BIF>")
    return root.children[0]


def read_xmlbif(text: str, source: str = "<xmlbif>") -> NetworkSpec:
    """Parse XMLBIF ``text`` into a :class:`NetworkSpec`."""
    bif = _parse(text, source)
    if bif.tag.upper() != "BIF":
        raise ConfigurationError(f"{source}:{bif.line}: expected <BIF>, found <{bif.tag}>")
    network = bif.one("NETWORK", source)
    spec = NetworkSpec(source)
    names = network.all("NAME")
    spec.name = names[0].text.strip() if names else None
    for var in network.all("VARIABLE"):
        name = var.one("NAME", source).text.strip()
        states = [o.text.strip() for o in var.all("OUTCOME")]
        spec.add(NodeSpec(name, states, line=var.line))
    for definition in network.all("DEFINITION") + network.all("PROBABILITY"):
        for_ = definition.one("FOR", source)
        node = spec.node(for_.text.strip(), for_.line)
        if node.table is not None:
            raise ConfigurationError(
                f"{source}:{definition.line}: a second definition for {node.name!r} "
                f"(the first is at line {node.table_line})"
            )
        parents = [g.text.strip() for g in definition.all("GIVEN")]
        cards = [len(spec.node(p, definition.line).states) for p in parents]
        table_el = definition.one("TABLE", source)
        where = f"{source}:{table_el.line}"
        values = [parse_float(v, where) for v in table_el.text.split()]
        shape = (*cards, len(node.states))
        size = int(np.prod(shape, dtype=np.int64))
        if len(values) != size:
            raise ShapeError(
                f"{where}: the table of {node.name!r} has {len(values)} numbers, expected "
                f"{size} (shape {shape}: parents {parents}, then its states)"
            )
        node.parents = parents
        node.table = np.asarray(values, dtype=np.float64).reshape(shape)
        node.table_line = definition.line
    return spec


def write_xmlbif(net: DiscreteBayesianNetwork) -> str:
    """The network as XMLBIF 0.3 text (unnamed states are written as their indices)."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<BIF VERSION="0.3">',
        "<NETWORK>",
        "<NAME>unknown</NAME>",
    ]
    for n in net.variables:
        names = net.state_names(n)
        lines.append('<VARIABLE TYPE="nature">')
        lines.append(f"  <NAME>{escape(n)}</NAME>")
        lines += [f"  <OUTCOME>{escape(s)}</OUTCOME>" for s in names]
        lines.append("</VARIABLE>")
    for n in net.variables:
        table = net.table(n).detach().cpu().numpy().reshape(-1)
        lines.append("<DEFINITION>")
        lines.append(f"  <FOR>{escape(n)}</FOR>")
        lines += [f"  <GIVEN>{escape(p)}</GIVEN>" for p in net.parents(n)]
        lines.append("  <TABLE>" + " ".join(format_float(v) for v in table) + "</TABLE>")
        lines.append("</DEFINITION>")
    lines += ["</NETWORK>", "</BIF>"]
    return "\n".join(lines) + "\n"
