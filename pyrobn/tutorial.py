"""Helpers the tutorials share: smoke mode, where figures go, and the numbers they report.

A tutorial starts with ``tut = Tutorial("01_student_network", figures=["dag", ...])``.
The ``figures`` list is its promise: the test suite reads it from the source and checks
that a smoke run (``PYROBN_SMOKE=1``) writes every one of them, and ``pyrobn tour``
collects them with the numbers given to :meth:`Tutorial.record`.

Environment:
    ``PYROBN_SMOKE=1``  few steps and small data, for tests and ``pyrobn tour --quick``.
    ``PYROBN_OUT=DIR``  where outputs go (default ``./pyrobn_output``); each tutorial
                        writes ``DIR/<name>/<figure>.png`` and ``DIR/<name>/summary.json``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

SMOKE_ENV = "PYROBN_SMOKE"
OUT_ENV = "PYROBN_OUT"


def is_smoke() -> bool:
    """True when ``PYROBN_SMOKE`` is set to something other than ``0``/empty."""
    return os.environ.get(SMOKE_ENV, "").strip() not in ("", "0", "false", "False")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class Tutorial:
    """One tutorial's outputs: ``smoke`` flag, ``save`` figures, ``record`` numbers."""

    def __init__(self, name: str, figures: list[str], title: str | None = None) -> None:
        if "ipykernel" not in sys.modules:
            import matplotlib

            matplotlib.use("Agg")
        self.name = name
        self.title = title or name
        self.figures = list(figures)
        self.smoke = is_smoke()
        self.out = Path(os.environ.get(OUT_ENV, "pyrobn_output")) / name
        self.out.mkdir(parents=True, exist_ok=True)
        self.numbers: dict[str, Any] = {}
        self._write_summary()

    def steps(self, full: int, smoke: int) -> int:
        """``smoke`` in smoke mode, else ``full`` (for step counts and data sizes)."""
        return smoke if self.smoke else full

    def save(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``<out>/<name>.png`` and close it."""
        import matplotlib.pyplot as plt

        if name not in self.figures:
            raise ValueError(f"figure {name!r} is not in the tutorial's promised {self.figures}")
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=110 if not self.smoke else 60, bbox_inches="tight")
        if "ipykernel" not in sys.modules:
            plt.close(fig)
        return path

    def record(self, key: str, value: Any, *, fmt: str | None = None) -> Any:
        """Keep a key number (printed, and written to ``summary.json`` for the tour)."""
        self.numbers[key] = _jsonable(value)
        shown = format(value, fmt) if fmt else value
        print(f"[{self.name}] {key} = {shown}")
        self._write_summary()
        return value

    def _write_summary(self) -> None:
        summary = {
            "name": self.name,
            "title": self.title,
            "smoke": self.smoke,
            "figures": self.figures,
            "numbers": self.numbers,
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
