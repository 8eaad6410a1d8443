"""Text queries: well-formed ones parse to what they say; malformed ones are refused by
the parser itself (so by ``net.ask`` too) with the query and the fault named."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrobn import student_network
from pyrobn.errors import PyrobnValueError
from pyrobn.models.bayesnet import Query, parse_query

NAMES = ("x1", "x2", "x3", "x4")
SPACE = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def assignments(draw, min_size: int = 1) -> dict[str, int]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=min_size, max_size=4, unique=True))
    return {n: draw(st.integers(0, 1)) for n in names}


def joined(draw, items: list[str]) -> str:
    """Items joined by commas with random spacing around them."""
    return ",".join(f"{draw(SPACE)}{item}{draw(SPACE)}" for item in items)


def pairs(values: dict[str, int]) -> list[str]:
    return [f"{k}={v}" for k, v in values.items()]


@st.composite
def well_formed(draw) -> tuple[str, Query]:
    """A valid query text and the Query it means."""
    evidence = draw(assignments(min_size=0))
    kind = draw(st.sampled_from(["probability", "marginal", "mpe"]))
    if kind == "probability":
        assignment = draw(assignments())
        head, expected = joined(draw, pairs(assignment)), Query(kind, assignment=assignment)
    elif kind == "marginal":
        names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
        head, expected = joined(draw, names), Query(kind, variables=tuple(names))
    else:
        head, expected = draw(st.sampled_from(["mpe", "MPE", "Mpe"])), Query(kind)
    body = head
    if evidence:
        body += f"{draw(SPACE)}|{draw(SPACE)}{joined(draw, pairs(evidence))}"
    if draw(st.booleans()):
        body = f"{draw(st.sampled_from(['P', 'p']))}({body})"
    text = f"{draw(SPACE)}{body}{draw(SPACE)}"
    return text, Query(expected.kind, expected.variables, expected.assignment, evidence)


@settings(max_examples=150, deadline=None)
@given(well_formed())
def test_well_formed_queries_parse_to_what_they_say(case):
    text, expected = case
    assert parse_query(text) == expected


def _head(draw) -> str:
    return draw(
        st.sampled_from(["x1", "x1, x2", "x2=1", "x2=1, x3=0", "mpe"]),
    )


# each fault: a function of hypothesis' draw giving a query with exactly that fault, and the
# phrase its message must hold
FAULTS = {
    "trailing bar": (lambda d: f"{_head(d)}{d(SPACE)}|{d(SPACE)}", "nothing after '|'"),
    "trailing bar in P()": (lambda d: f"P({_head(d)} |{d(SPACE)})", "nothing after '|'"),
    "two bars": (lambda d: f"{_head(d)} | x4=1 |{d(SPACE)}x3=0", "more than one '|'"),
    "double bar": (lambda d: f"{_head(d)} || x4=1", "more than one '|'"),
    "empty item after": (
        lambda d: d(st.sampled_from(["x1 | x2=0,", "x1 | ,x2=0", "x1 | x2=0, ,x3=1"])),
        "an empty item in the list after '|'",
    ),
    "empty item before": (
        lambda d: d(st.sampled_from(["x1, , x2", ",x1", "x1,", "x2=1,, x3=0 | x4=1"])),
        "an empty item in the list before '|'",
    ),
    "two equals": (
        lambda d: f"{_head(d)} | x4{d(st.sampled_from(['==', '=1=', '= =']))}1",
        "more than one '='",
    ),
    "no value": (lambda d: f"{_head(d)} | x4={d(SPACE)}", "gives 'x4' no value"),
    "no name": (lambda d: f"{_head(d)} | {d(SPACE)}=1", "assigns a value to no variable"),
    "not an assignment": (lambda d: f"{_head(d)} | x4", "'x4' after '|' is not of the form"),
    "mixed head": (lambda d: "P(x1=1, x2 | x4=1)", "'x2' before '|' is not of the form"),
    "unclosed P": (lambda d: f"P({_head(d)} | x4=1", "unbalanced parenthesis"),
    "unopened paren": (lambda d: f"{_head(d)}) | x4=1", "unbalanced parenthesis"),
    "P closed early": (lambda d: f"P({_head(d)}) | x4=1", "'P(' must close at the very end"),
    "repeated variable": (lambda d: "x1, x2,x1 | x4=1", "'x1' is named twice"),
    "repeated evidence": (lambda d: "x1 | x4=1, x4=0", "'x4' is given twice"),
    "no head": (lambda d: f"{d(SPACE)}| x4=1", "names no variable"),
    "empty P": (lambda d: "P()", "names no variable"),
    "empty": (lambda d: d(SPACE), "empty query"),
}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(FAULTS)), st.data())
def test_malformed_queries_are_refused_by_the_parser_and_by_ask(fault, data):
    make, phrase = FAULTS[fault]
    text = make(data.draw)
    net = student_network()
    for call in (parse_query, net.ask):
        with pytest.raises(PyrobnValueError) as info:
            call(text)
        message = str(info.value)
        assert f"query {text!r}" in message and phrase in message, (fault, message)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="x1234P()|=,; -mpeab\t", max_size=24))
def test_any_text_parses_or_raises_a_pyrobn_error(text):
    try:
        query = parse_query(text)
    except PyrobnValueError as exc:
        assert repr(text) in str(exc)
        return
    assert query.kind in ("probability", "marginal", "mpe")
    assert all(name and "|" not in name for name in (*query.variables, *query.assignment))


@pytest.mark.parametrize("value", [None, 3, b"x1", ["x1"]])
def test_a_query_that_is_not_text_is_refused(value):
    with pytest.raises(PyrobnValueError, match="a query is a string"):
        parse_query(value)
    with pytest.raises(PyrobnValueError, match="a query is a string"):
        student_network().ask(value)
