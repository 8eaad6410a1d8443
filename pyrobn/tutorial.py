"""Helpers the tutorials share: smoke mode, where figures go, the numbers they report and
the claims they check.

A tutorial starts with ``tut = Tutorial("01_student_network", figures=["dag", ...])``.
The ``figures`` list is its promise: the test suite reads it from the source and checks
that a smoke run (``PYROBN_SMOKE=1``) writes every one of them, and ``pyrobn tour``
collects them with the numbers given to :meth:`Tutorial.record`.

Claims. Whatever a tutorial *says* a number shows ("MAP equals the ridge solution",
"the forward-KL fit covers both modes") it also states as a check, so the claim is tested
every time the tutorial runs::

    tut.check("map_is_ridge", err < 1e-4, f"|MAP - ridge| = {err:.2e}")
    tut.check_close("max_entropy_is_log2", h.max(), math.log(2), atol=1e-6)

* :meth:`Tutorial.check` records ``(name, ok, message)``; ``condition`` is anything with
  one truth value (a bool, a NumPy bool, a one-element tensor); a tensor of several
  elements is an error (write ``.all()``). :meth:`Tutorial.check_close` states
  ``|actual - expected| <= atol + rtol * |expected|`` elementwise and writes the message
  itself. Both return whether the claim held, print one line (``ok`` or ``FAILED``), and
  never raise on a failed claim: the tutorial runs to its end and every claim is recorded.
* Names are unique within a tutorial (a repeated name is an error: it would hide a claim).
* The claims go to ``summary.json`` as ``"checks": [{"name", "ok", "message"}, ...]``, in
  the order made. A run with a failed claim is a failed run: ``pyrobn tour`` and
  ``pyrobn tutorials run`` report it (and exit non-zero), the tour's page lists it, and
  ``tests/test_tutorials.py`` asserts that no claim failed in smoke mode.
* State claims that hold at smoke size (few steps, small data) with a margin; a claim that
  only holds after the full run goes under ``if not tut.smoke:``.

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

from pyrobn.errors import ConfigurationError

__all__ = ["OUT_ENV", "SMOKE_ENV", "Tutorial", "is_smoke"]

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


def _array(value: Any) -> Any:
    """``value`` (number, list, array, tensor on any device) as a float64 NumPy array."""
    import numpy as np

    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _truth(condition: Any, name: str) -> bool:
    """The one truth value of ``condition``: a bool, a NumPy bool or a one-element bool
    tensor/array. Anything else (a number, a tensor of several elements) is a mistake in
    the tutorial and raises :class:`ConfigurationError`."""
    import numpy as np
    import torch

    value = condition
    if isinstance(value, torch.Tensor):
        if value.dtype != torch.bool or value.numel() != 1:
            raise ConfigurationError(
                f"check {name!r}: the condition must be one bool, got a tensor of "
                f"{value.numel()} {value.dtype} element(s) (use a comparison and .all())"
            )
        return bool(value)
    if isinstance(value, np.ndarray):
        if value.dtype != bool or value.size != 1:
            raise ConfigurationError(
                f"check {name!r}: the condition must be one bool, got an array of "
                f"{value.size} {value.dtype} element(s) (use a comparison and .all())"
            )
        return bool(value)
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ConfigurationError(
        f"check {name!r}: the condition must be a bool, got {type(value).__name__} {value!r}"
    )


class Tutorial:
    """One tutorial's outputs: ``smoke`` flag, ``save`` figures, ``record`` numbers,
    ``check`` claims."""

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
        self.checks: list[dict[str, Any]] = []
        self._write_summary()

    def steps(self, full: int, smoke: int) -> int:
        """``smoke`` in smoke mode, else ``full`` (for step counts and data sizes)."""
        return smoke if self.smoke else full

    def save(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``<out>/<name>.png`` and close it."""
        import matplotlib.pyplot as plt

        if name not in self.figures:
            raise ConfigurationError(
                f"figure {name!r} is not in the tutorial's promised {self.figures}"
            )
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

    def check(self, name: str, condition: Any, message: str = "") -> bool:
        """Record the claim ``name``: it holds when ``condition`` is true.

        ``message`` says what was compared (shown with the result, kept in
        ``summary.json``). Returns whether the claim held; a failed claim is printed and
        recorded, not raised, so the tutorial goes on and records the others.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a check needs a non-empty name, got {name!r}")
        if any(c["name"] == name for c in self.checks):
            raise ConfigurationError(f"check {name!r} is made twice in {self.name}")
        ok = _truth(condition, name)
        self.checks.append({"name": name, "ok": ok, "message": str(message)})
        status = "ok" if ok else "FAILED"
        line = f"[{self.name}] check {name}: {status}" + (f" ({message})" if message else "")
        print(line, file=sys.stdout if ok else sys.stderr)
        self._write_summary()
        return ok

    def check_close(
        self, name: str, actual: Any, expected: Any, *, atol: float = 0.0, rtol: float = 0.0
    ) -> bool:
        """The claim ``|actual - expected| <= atol + rtol * |expected|`` (elementwise, every
        element), recorded by :meth:`check` with the worst difference in the message."""
        import numpy as np

        a, e = _array(actual), _array(expected)
        if a.shape != e.shape:
            raise ConfigurationError(f"check {name!r}: shapes differ: {a.shape} vs {e.shape}")
        diff = np.abs(a - e)
        ok = bool(np.all(diff <= atol + rtol * np.abs(e)))
        worst = float(np.max(diff)) if diff.size else 0.0
        shown = f"{float(a):.6g} vs {float(e):.6g}" if a.size == 1 else f"{a.size} elements"
        return self.check(name, ok, f"{shown}; |diff| = {worst:.3g} (atol {atol:g}, rtol {rtol:g})")

    @property
    def failed_checks(self) -> list[str]:
        """The names of the claims that did not hold."""
        return [c["name"] for c in self.checks if not c["ok"]]

    def _write_summary(self) -> None:
        summary = {
            "name": self.name,
            "title": self.title,
            "smoke": self.smoke,
            "figures": self.figures,
            "numbers": self.numbers,
            "checks": self.checks,
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
