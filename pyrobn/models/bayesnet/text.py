"""Text queries (``"P(x3=1 | x2=1)"``, ``"x1 | x2=0"``, ``"mpe | x4=1"``) parsed.

The grammar, and every rule a malformed query breaks (each refused with a
:class:`~pyrobn.errors.PyrobnValueError` naming the query and the fault)::

    query      := "P(" body ")" | body          P( must close at the very end
    body       := head [ "|" evidence ]         one bar at most, evidence after it
    head       := "mpe" | names | assignments   at least one item
    names      := name { "," name }             no empty item, no name twice
    assignments:= name=value { "," name=value } one "=" per item, name and value given
    evidence   := assignments

This is the one place these rules live: :meth:`DiscreteBayesianNetwork.ask` and the
``pyrobn query`` command both go through :func:`parse_query`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyrobn.errors import PyrobnValueError
from pyrobn.models.bayesnet._types import Value

__all__ = ["Query", "Value", "parse_query"]


@dataclass(frozen=True)
class Query:
    """A parsed text query (see :func:`parse_query`).

    ``kind`` is ``"probability"`` (``assignment`` given), ``"marginal"`` (``variables``)
    or ``"mpe"``; ``evidence`` is what follows the bar.
    """

    kind: str
    variables: tuple[str, ...] = ()
    assignment: dict[str, Value] = field(default_factory=dict)
    evidence: dict[str, Value] = field(default_factory=dict)


def _fail(text: str, what: str) -> PyrobnValueError:
    return PyrobnValueError(f"query {text!r}: {what}")


def _items(text: str, part: str, where: str) -> list[str]:
    """The comma-separated items of ``part`` (stripped); an empty one is an error."""
    items = [item.strip() for item in part.split(",")]
    if any(not item for item in items):
        raise _fail(text, f"an empty item in the list {where} '|' ({part.strip()!r})")
    return items


def _balanced(text: str) -> bool:
    """Whether every ``(`` of ``text`` closes, in order, and no ``)`` comes unopened."""
    depth = 0
    for char in text:
        depth += (char == "(") - (char == ")")
        if depth < 0:
            return False
    return depth == 0


def _parse_value(value: str) -> Value:
    return int(value) if value.lstrip("-").isdigit() else value


def _parse_assignments(text: str, items: list[str], where: str) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for item in items:
        if "=" not in item:
            raise _fail(text, f"{item!r} {where} '|' is not of the form name=value")
        if item.count("=") > 1:
            raise _fail(text, f"{item!r} has more than one '='")
        name, value = (t.strip() for t in item.split("="))
        if not name:
            raise _fail(text, f"{item!r} assigns a value to no variable (name=value)")
        if not value:
            raise _fail(text, f"{item!r} gives {name!r} no value (name=value)")
        if name in out:
            raise _fail(text, f"{name!r} is given twice {where} '|'")
        out[name] = _parse_value(value)
    return out


def parse_query(text: str) -> Query:
    """Parse a query string: ``"P(x2=1, x3=1)"``, ``"P(x3=1 | x2=1)"`` (a probability),
    ``"x1 | x2=0"`` or ``"P(x1 | x2=0)"`` (a table), ``"x2, x3"`` (a joint table) or
    ``"mpe | x4=1"`` (most probable explanation). States are indices or names.

    Raises:
        PyrobnValueError: a malformed query (see the module's grammar): the message
            quotes the query and says what is wrong, e.g. ``"x1 |"`` has nothing after
            the bar, ``"x1 || x2=0"`` two bars, ``"x1 | x2=0,"`` an empty item,
            ``"x1 | x2==0"`` two ``=``, ``"P(x1=1"`` an unclosed ``P(``.

    >>> parse_query("x1 | x2=0")
    Query(kind='marginal', variables=('x1',), assignment={}, evidence={'x2': 0})
    >>> parse_query("x1 || x2=0")
    Traceback (most recent call last):
    ...
    pyrobn.errors.PyrobnValueError: query 'x1 || x2=0': more than one '|'
    """
    if not isinstance(text, str):
        raise PyrobnValueError(f"a query is a string such as 'x1 | x2=0', got {text!r}")
    body = text.strip()
    if not body:
        raise _fail(text, "empty query")
    if not _balanced(body):
        raise _fail(text, "unbalanced parenthesis")
    if body[:2].lower() == "p(":
        if not body.endswith(")") or not _balanced(body[2:-1]):
            raise _fail(text, "'P(' must close at the very end of the query: P(... | ...)")
        body = body[2:-1]
    if body.count("|") > 1:
        raise _fail(text, "more than one '|'")
    head, bar, tail = (part.strip() for part in body.partition("|"))
    if bar and not tail:
        raise _fail(text, "nothing after '|'; give the evidence as name=value (or drop the bar)")
    evidence = _parse_assignments(text, _items(text, tail, "after"), "after") if tail else {}
    if not head:
        raise _fail(text, "names no variable before '|'")
    items = _items(text, head, "before")
    if any("=" in item for item in items):
        assignment = _parse_assignments(text, items, "before")
        return Query("probability", assignment=assignment, evidence=evidence)
    if len(items) == 1 and items[0].lower() == "mpe":
        return Query("mpe", evidence=evidence)
    for name in items:
        if items.count(name) > 1:
            raise _fail(text, f"{name!r} is named twice before '|'")
    return Query("marginal", variables=tuple(items), evidence=evidence)
