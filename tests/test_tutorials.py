"""The tour in quick mode: every tutorial runs in smoke mode, writes the figures it
promises and the numbers it records, every claim it checks holds, and the tour's page holds
them all."""

from __future__ import annotations

import ast
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrobn.errors import ConfigurationError
from pyrobn.tour import TutorialRun, list_tutorials, run_tour
from pyrobn.tutorial import Tutorial

TUTORIALS = list_tutorials()


def promised_figures(path: Path) -> list[str]:
    """The literal ``figures=[...]`` of the tutorial's ``Tutorial(...)`` call."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Tutorial":
            for keyword in node.keywords:
                if keyword.arg == "figures":
                    return list(ast.literal_eval(keyword.value))
    raise AssertionError(f"{path.name} makes no Tutorial(..., figures=[...])")


@pytest.fixture(scope="session")
def tour(tmp_path_factory) -> tuple[Path, dict[str, TutorialRun]]:
    out = tmp_path_factory.mktemp("tour")
    runs = run_tour(out, quick=True, progress=False)
    return out, {run.name: run for run in runs}


def test_there_are_tutorials():
    names = [t.stem for t in TUTORIALS]
    assert names[0] == "00_mle_basics"
    assert len(set(n[:2] for n in names)) == len(names), "two tutorials share a number"


@pytest.mark.parametrize("path", TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_smoke(path: Path, tour):
    out, runs = tour
    run = runs[path.stem]
    assert run.ok, f"{path.name} failed:\n{run.output_tail}"
    figures = promised_figures(path)
    assert figures, f"{path.name} promises no figure"
    for name in figures:
        png = out / path.stem / f"{name}.png"
        assert png.exists(), f"{path.name} promised {name}.png but did not write it"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
    summary = json.loads((out / path.stem / "summary.json").read_text())
    assert summary["smoke"] is True
    assert summary["numbers"], f"{path.name} recorded no number"
    checks = summary.get("checks", [])
    failed = [f"{c['name']}: {c['message']}" for c in checks if not c["ok"]]
    assert not failed, f"{path.name}: claims that did not hold in smoke mode: {failed}"
    assert checks, f"{path.name} checks none of the claims it prints (tut.check)"


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs["id"])
        if tag == "img":
            self.images.append((self.sections[-1], attrs["alt"]))
            assert attrs["src"].startswith("data:image/png;base64,")

    def handle_data(self, data):
        self.text.append(data)


def test_tour_page_holds_every_figure_and_number(tour):
    out, runs = tour
    parser = _PageParser()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    assert parser.sections == [t.stem for t in TUTORIALS]
    text = " ".join(parser.text)
    for path in TUTORIALS:
        for name in promised_figures(path):
            assert (path.stem, name) in parser.images, f"{path.stem}/{name} missing from the page"
        for key in runs[path.stem].summary.get("numbers", {}):
            assert key in text, f"{path.stem}'s number {key} missing from the page"
        for check in runs[path.stem].summary.get("checks", []):
            assert check["name"] in text, f"{path.stem}'s claim {check['name']} missing"
    summary = json.loads((out / "summary.json").read_text())
    assert [t["name"] for t in summary["tutorials"]] == [t.stem for t in TUTORIALS]


@pytest.mark.parametrize("path", TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_opens_as_a_notebook(path: Path):
    import jupytext

    notebook = jupytext.read(path)
    kinds = {cell.cell_type for cell in notebook.cells}
    assert kinds == {"markdown", "code"}, f"{path.name} should mix prose and code cells"
    assert notebook.cells[0].cell_type == "markdown", f"{path.name} should open with its title"


def test_checks_record_claims_without_stopping_the_tutorial(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYROBN_OUT", str(tmp_path))
    tut = Tutorial("99_api", figures=[])
    assert tut.check("plain bool", True, "a message") is True
    assert tut.check("numpy bool", np.float64(1.0) < 2.0) is True
    assert tut.check("tensor bool", torch.tensor(3.0) > 4.0, "three is not above four") is False
    assert tut.check_close("close", torch.tensor([1.0, 2.0]), [1.0, 2.0 + 1e-9], atol=1e-6)
    assert not tut.check_close("not close", 0.5, 0.6, rtol=0.1)
    assert not tut.check_close("nan is never close", float("nan"), 0.0, atol=1.0)
    assert tut.failed_checks == ["tensor bool", "not close", "nan is never close"]
    summary = json.loads((tmp_path / "99_api" / "summary.json").read_text())
    assert [(c["name"], c["ok"]) for c in summary["checks"]] == [
        ("plain bool", True),
        ("numpy bool", True),
        ("tensor bool", False),
        ("close", True),
        ("not close", False),
        ("nan is never close", False),
    ]
    assert summary["checks"][0]["message"] == "a message"
    assert "0.5 vs 0.6" in summary["checks"][4]["message"]
    printed = capsys.readouterr()
    assert "[99_api] check plain bool: ok (a message)" in printed.out
    assert "[99_api] check tensor bool: FAILED (three is not above four)" in printed.err


@pytest.mark.parametrize(
    "condition",
    [1, 0.0, "yes", None, torch.tensor([True, True]), np.array([True, False]), torch.tensor(1.0)],
    ids=["int", "float", "str", "none", "tensor2", "array2", "float_tensor"],
)
def test_a_check_needs_one_bool(tmp_path, monkeypatch, condition):
    monkeypatch.setenv("PYROBN_OUT", str(tmp_path))
    tut = Tutorial("99_api", figures=[])
    with pytest.raises(ConfigurationError, match=r"one bool|must be a bool"):
        tut.check("claim", condition)


def test_check_names_are_unique_and_shapes_must_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("PYROBN_OUT", str(tmp_path))
    tut = Tutorial("99_api", figures=[])
    tut.check("once", True)
    with pytest.raises(ConfigurationError, match="twice"):
        tut.check("once", True)
    with pytest.raises(ConfigurationError, match="non-empty name"):
        tut.check("", True)
    with pytest.raises(ConfigurationError, match="shapes differ"):
        tut.check_close("shapes", [1.0, 2.0], [1.0], atol=1.0)
