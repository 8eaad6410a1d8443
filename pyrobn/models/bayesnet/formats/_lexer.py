"""A small tokenizer for the text formats (BIF, Hugin NET): tokens with their line.

A token is punctuation (one character of ``punctuation``), a quoted string (its text
without the quotes) or a word (a run of other non-space characters). Comments are
skipped. :class:`Tokens` reads lazily for a recursive-descent parser and reads a run
of numbers (a table) in one step; every failure is a
:class:`pyrobn.errors.ConfigurationError` naming the file, the line, what was expected
and what was found.
"""

from __future__ import annotations

import bisect
import re
from typing import NamedTuple

import numpy as np

from pyrobn.errors import ConfigurationError, InvalidDistributionError

__all__ = ["Token", "Tokens"]


class Token(NamedTuple):
    kind: str  # "punct", "string" or "word"
    text: str
    line: int
    end: int  # offset just after the token


_PATTERNS: dict[tuple[str, str], re.Pattern[str]] = {}


def _pattern(punctuation: str, comments: str) -> re.Pattern[str]:
    key = (punctuation, comments)
    if key not in _PATTERNS:
        punct = re.escape(punctuation)
        _PATTERNS[key] = re.compile(
            rf"""(?:\s+|{comments})*
            (?:(?P<string>"(?:[^"\\\n]|\\.)*")
              |(?P<punct>[{punct}])
              |(?P<word>[^\s{punct}"]+))""",
            re.VERBOSE | re.DOTALL,
        )
    return _PATTERNS[key]


class Tokens:
    """A lazy cursor over the tokens of ``text`` for a recursive-descent parser."""

    def __init__(self, text: str, source: str, punctuation: str, comments: str) -> None:
        self.text = text
        self.source = source
        self._pattern = _pattern(punctuation, comments)
        self._trailing = re.compile(rf"(?:\s+|{comments})*\Z", re.DOTALL)
        self._newlines = [m.start() for m in re.finditer("\n", text)]
        self._pos = 0  # offset after the last consumed token
        self._ahead: list[Token] = []

    def _line_of(self, offset: int) -> int:
        return bisect.bisect_right(self._newlines, offset - 1) + 1

    def _scan(self, start: int) -> Token | None:
        m = self._pattern.match(self.text, start)
        if m is None:
            if self._trailing.match(self.text, start):
                return None
            start += len(self.text[start:]) - len(self.text[start:].lstrip())
            line = self._line_of(start)
            found = self.text[start : start + 20].strip().split("\n")[0]
            raise ConfigurationError(
                f"{self.source}:{line}: cannot read {found!r} (an unclosed quote or comment?)"
            )
        kind = m.lastgroup
        assert kind is not None
        text = m.group(kind)
        if kind == "string":
            text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return Token(kind, text, self._line_of(m.start(kind)), m.end())

    def peek(self, offset: int = 0) -> Token | None:
        while len(self._ahead) <= offset:
            start = self._ahead[-1].end if self._ahead else self._pos
            tok = self._scan(start)
            if tok is None:
                return None
            self._ahead.append(tok)
        return self._ahead[offset]

    @property
    def line(self) -> int:
        tok = self.peek()
        return tok.line if tok is not None else self._line_of(len(self.text))

    def error(self, expected: str, token: Token | None = None) -> ConfigurationError:
        token = token if token is not None else self.peek()
        if token is None:
            return ConfigurationError(
                f"{self.source}:{self.line}: expected {expected}, found the end of the file"
            )
        return ConfigurationError(
            f"{self.source}:{token.line}: expected {expected}, found {token.text!r}"
        )

    def next(self, expected: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise self.error(expected)
        self._ahead.pop(0)
        self._pos = tok.end
        return tok

    def expect(self, text: str) -> Token:
        tok = self.peek()
        if tok is None or tok.kind == "string" or tok.text != text:
            raise self.error(repr(text))
        return self.next(repr(text))

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.next(repr(text))
            return True
        return False

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind != "string" and tok.text == text

    def name(self, what: str) -> Token:
        """A word or a quoted string."""
        tok = self.peek()
        if tok is None or tok.kind == "punct":
            raise self.error(what)
        return self.next(what)

    def numbers(self, end: str, separators: str = ",") -> np.ndarray | None:
        """Fast path for a table: the numbers from here up to the next ``end`` character
        (consumed), separated by spaces or ``separators``; None (nothing consumed) when
        that stretch holds anything else (the caller then reads it token by token)."""
        if self._ahead:
            return None
        stop = self.text.find(end, self._pos)
        if stop < 0:
            return None
        chunk = self.text[self._pos : stop]
        for sep in separators:
            chunk = chunk.replace(sep, " ")
        try:
            values = np.array(chunk.split(), dtype=np.float64)
        except ValueError:
            return None
        if not np.isfinite(values).all():
            bad = chunk.split()[int(np.flatnonzero(~np.isfinite(values))[0])]
            raise InvalidDistributionError(
                f"{self.source}:{self._line_of(self._pos)}: {bad!r} is not a finite number"
            )
        self._pos = stop + 1
        return values

    def skip_block(self) -> None:
        """Skip a balanced ``{ ... }`` block (the cursor is on its ``{``)."""
        start = self.expect("{")
        depth = 1
        while depth:
            tok = self.peek()
            if tok is None:
                raise ConfigurationError(
                    f"{self.source}:{start.line}: the block opened here is never closed"
                )
            self.next("'}'")
            if tok.kind == "punct":
                depth += {"{": 1, "}": -1}.get(tok.text, 0)
