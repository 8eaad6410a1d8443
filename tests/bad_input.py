"""What the bad-input test files share: a tally of the inputs tried per entry point (each
must raise a :class:`~pyrobn.errors.PyrobnError`), its report, and the commonest strategy.

``tally.expect_error(entry, call)`` fails the test on a raw exception or on a bad input
accepted; ``tally.report()`` appends the table of inputs tried and clear errors to
``$PYROBN_BAD_INPUT_REPORT`` when that is set (the closing notes' counts).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from pyrobn.errors import PyrobnError

__all__ = ["BadInputTally", "not_positive_int"]


class BadInputTally:
    """Inputs tried and clear pyrobn errors, per entry point."""

    def __init__(self) -> None:
        self.tried: Counter = Counter()
        self.clear: Counter = Counter()

    def expect_error(self, entry: str, call: Callable[[], Any]) -> None:
        """``call()`` must raise a :class:`PyrobnError`; anything else fails the test."""
        self.tried[entry] += 1
        try:
            result = call()
        except PyrobnError:
            self.clear[entry] += 1
            return
        except Exception as exc:  # a raw exception: the finding these files exist for
            raise AssertionError(f"{entry}: raw {type(exc).__name__}: {exc}") from exc
        raise AssertionError(f"{entry}: accepted a bad input and returned {result!r}")

    def report(self) -> None:
        path = os.environ.get("PYROBN_BAD_INPUT_REPORT")
        if not path:
            return
        lines = ["| entry point | inputs tried | clear pyrobn error |", "| --- | --- | --- |"]
        lines += [f"| `{e}` | {self.tried[e]} | {self.clear[e]} |" for e in sorted(self.tried)]
        lines.append(f"| total | {sum(self.tried.values())} | {sum(self.clear.values())} |")
        with open(path, "a") as f:
            f.write("\n".join(lines) + "\n")


def not_positive_int():
    """Values that are not an integer >= 1."""
    return st.one_of(
        st.integers(max_value=0),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.text(max_size=3),
        st.none(),
        st.complex_numbers(max_magnitude=10),
        st.just([2]),
        st.just(np.float64(2.0)),
    )
