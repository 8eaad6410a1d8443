"""Text queries (``"P(x3=1 | x2=1)"``, ``"x1 | x2=0"``, ``"mpe | x4=1"``) parsed."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyrobn.errors import (
    PyrobnValueError,
)
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


def _parse_value(text: str) -> Value:
    text = text.strip()
    if not text:
        raise PyrobnValueError("empty value in query")
    return int(text) if text.lstrip("-").isdigit() else text


def _parse_assignments(text: str, where: str) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise PyrobnValueError(f"{where}: {part!r} is not of the form name=value")
        name, value = (t.strip() for t in part.split("=", 1))
        if name in out:
            raise PyrobnValueError(f"{where}: {name!r} is given twice")
        out[name] = _parse_value(value)
    return out


def parse_query(text: str) -> Query:
    """Parse a query string: ``"P(x2=1, x3=1)"``, ``"P(x3=1 | x2=1)"`` (a probability),
    ``"x1 | x2=0"`` or ``"P(x1 | x2=0)"`` (a table), ``"x2, x3"`` (a joint table) or
    ``"mpe | x4=1"`` (most probable explanation). States are indices or names.

    >>> parse_query("x1 | x2=0")
    Query(kind='marginal', variables=('x1',), assignment={}, evidence={'x2': 0})
    """
    body = text.strip()
    if not body:
        raise PyrobnValueError("empty query")
    is_probability = body[:2].lower() == "p(" and body.endswith(")")
    if is_probability:
        body = body[2:-1]
    head, _, tail = body.partition("|")
    evidence = _parse_assignments(tail, f"evidence of {text!r}") if tail.strip() else {}
    head = head.strip()
    if "=" in head:
        assignment = _parse_assignments(head, f"query {text!r}")
        if not assignment:
            raise PyrobnValueError(f"query {text!r} assigns no variable")
        return Query("probability", assignment=assignment, evidence=evidence)
    if head.lower() == "mpe":
        return Query("mpe", evidence=evidence)
    variables = tuple(v.strip() for v in head.split(",") if v.strip())
    if not variables:
        raise PyrobnValueError(f"query {text!r} names no variable")
    return Query("marginal", variables=variables, evidence=evidence)
