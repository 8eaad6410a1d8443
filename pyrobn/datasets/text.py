"""Small texts for n-gram models (notes 2.1.3.3): nothing is downloaded.

Two sources:

* ``"apuntes"``: the course notes' chapter on Bayesian networks (Spanish, about 128 kB),
  shipped as ``pyrobn/data/apuntes_redes_bayesianas.txt``;
* ``"python-docs"``: the English help topics that ship with Python itself
  (``pydoc_data.topics``, about 465 kB, part of the standard library).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import NamedTuple

import torch

from pyrobn.datasets.tagging import _check_fraction
from pyrobn.errors import ConfigurationError
from pyrobn.validation import check_int

__all__ = ["SOURCES", "TextSplit", "paragraphs", "text_corpus"]

SOURCES = ("apuntes", "python-docs")


class TextSplit(NamedTuple):
    """Paragraphs for training and held-out paragraphs for perplexity."""

    train: list[str]
    held_out: list[str]


def _raw_text(source: str) -> str:
    if source == "apuntes":
        return (
            resources.files("pyrobn")
            .joinpath("data/apuntes_redes_bayesianas.txt")
            .read_text(encoding="utf-8")
        )
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def paragraphs(source: str = "apuntes", min_chars: int = 40) -> list[str]:
    """The text of ``source`` split at blank lines, whitespace collapsed, short ones dropped."""
    if not isinstance(source, str) or source not in SOURCES:
        raise ConfigurationError(f"unknown text source {source!r}; use one of {SOURCES}")
    min_chars = check_int(min_chars, "min_chars", low=0)
    blocks = re.split(r"\n\s*\n", _raw_text(source))
    cleaned = (" ".join(block.split()) for block in blocks)
    return [p for p in cleaned if len(p) >= min_chars]


def text_corpus(
    source: str = "apuntes",
    *,
    held_out: float = 0.1,
    seed: int = 0,
    min_chars: int = 40,
) -> TextSplit:
    """A text as paragraphs, split at random (seeded) into train and held-out parts.

    Args:
        source: ``"apuntes"`` (the course notes, Spanish) or ``"python-docs"`` (Python's
            own help topics, English).
        held_out: the fraction of paragraphs held out (0 <= held_out < 1).
        seed: the shuffle's seed; the same seed gives the same split.
        min_chars: paragraphs shorter than this (headings, blank formula lines) are dropped.

    Example:
        >>> train, test = text_corpus("apuntes")
        >>> round(pyrobn.MarkovChain(order=2).fit(train).perplexity(test), 2)
        7.47
    """
    _check_fraction(held_out, "held_out", low_open=False)
    seed = check_int(seed, "seed", low=0)
    parts = paragraphs(source, min_chars)
    order = torch.randperm(len(parts), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = round(held_out * len(parts))
    test_idx = set(order[:n_test])
    return TextSplit(
        [p for i, p in enumerate(parts) if i not in test_idx],
        [p for i, p in enumerate(parts) if i in test_idx],
    )
