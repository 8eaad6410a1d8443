"""Every tutorial runs in smoke mode and writes the figures it promises."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parent.parent / "tutorials").glob("[0-9][0-9]_*.py"))


def promised_figures(path: Path) -> list[str]:
    """The literal ``figures=[...]`` of the tutorial's ``Tutorial(...)`` call."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Tutorial":
            for keyword in node.keywords:
                if keyword.arg == "figures":
                    return list(ast.literal_eval(keyword.value))
    raise AssertionError(f"{path.name} makes no Tutorial(..., figures=[...])")


def test_there_are_tutorials():
    assert any(t.name.startswith("00_") for t in TUTORIALS)


@pytest.mark.parametrize("path", TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_smoke(path: Path, tmp_path: Path):
    figures = promised_figures(path)
    assert figures, f"{path.name} promises no figure"
    env = dict(os.environ, PYROBN_SMOKE="1", PYROBN_OUT=str(tmp_path), MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (
        f"{path.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    out = tmp_path / path.stem
    for name in figures:
        png = out / f"{name}.png"
        assert png.exists(), f"{path.name} promised {name}.png but did not write it"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["smoke"] is True
    assert summary["numbers"], f"{path.name} recorded no number"
