"""The tour of the course: run every tutorial, gather figures and numbers into one page.

``pyrobn tour --out DIR [--quick]`` runs ``tutorials/NN_*.py`` in order, each in its own
process with ``PYROBN_OUT=DIR`` (and ``PYROBN_SMOKE=1`` when quick), then writes
``DIR/summary.json`` and ``DIR/index.html``: a self-contained page with every figure
embedded, every number each tutorial recorded and every claim it checked
(:meth:`pyrobn.tutorial.Tutorial.check`). A tutorial fails when its process fails or
when one of its claims does not hold.
"""

from __future__ import annotations

import base64
import html
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyrobn.errors import ConfigurationError

__all__ = [
    "TUTORIALS_ENV",
    "TutorialRun",
    "copy_gallery",
    "find_tutorial",
    "list_tutorials",
    "run_tour",
    "run_tutorial",
    "tutorials_dir",
    "write_page",
]

TUTORIALS_ENV = "PYROBN_TUTORIALS"


def tutorials_dir() -> Path:
    """Where the tutorials live: ``$PYROBN_TUTORIALS``, else the checkout's ``tutorials/``."""
    candidates = [Path(os.environ[TUTORIALS_ENV])] if TUTORIALS_ENV in os.environ else []
    candidates += [Path(__file__).resolve().parent.parent / "tutorials", Path.cwd() / "tutorials"]
    for path in candidates:
        if path.is_dir() and any(path.glob("[0-9][0-9]_*.py")):
            return path
    raise ConfigurationError(
        "cannot find the tutorials: install pyrobn from a clone with `pip install -e .` "
        f"or set {TUTORIALS_ENV} to the folder that holds tutorials/NN_*.py"
    )


def list_tutorials() -> list[Path]:
    """The tutorial scripts, in the order of the notes (their number)."""
    return sorted(tutorials_dir().glob("[0-9][0-9]_*.py"))


def find_tutorial(name: str) -> Path:
    """A tutorial by its file stem, its number (``"03"``) or a unique part of its name."""
    paths = list_tutorials()
    matches = [p for p in paths if name in (p.stem, p.name, p.stem[:2])]
    matches = matches or [p for p in paths if name in p.stem]
    if len(matches) != 1:
        known = ", ".join(p.stem for p in paths)
        what = "matches several tutorials" if matches else "is no tutorial"
        raise ConfigurationError(f"{name!r} {what}; the tutorials are: {known}")
    return matches[0]


@dataclass
class TutorialRun:
    """How one tutorial went: status, seconds, its summary and the tail of its output.

    ``ok`` is true when the script exited cleanly and every claim it checked held.
    """

    name: str
    ok: bool
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    output_tail: str = ""

    @property
    def failed_checks(self) -> list[str]:
        """The names of the claims the tutorial checked that did not hold."""
        return [c["name"] for c in self.summary.get("checks", []) if not c.get("ok")]


def run_tutorial(path: Path, out: Path, quick: bool, timeout: float = 1800) -> TutorialRun:
    """Run one tutorial script in a fresh process; outputs go to ``out/<name>/``."""
    env = dict(os.environ, PYROBN_OUT=str(out), MPLBACKEND="Agg")
    env["PYROBN_SMOKE"] = "1" if quick else "0"
    start = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        ok, tail = result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    except subprocess.TimeoutExpired as exc:
        ok, tail = False, f"timed out after {timeout:.0f} s\n{exc.stdout or ''}"[-4000:]
    seconds = time.perf_counter() - start
    summary_path = out / path.stem / "summary.json"
    try:
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    except (OSError, ValueError):
        summary, ok = {}, False
        tail += f"\ncannot read {summary_path}"
    run = TutorialRun(path.stem, ok, seconds, summary, tail)
    if run.failed_checks:
        run.ok = False
        run.output_tail += f"\nclaims that did not hold: {', '.join(run.failed_checks)}"
    return run


def _check_rows(checks: list[dict[str, Any]]) -> str:
    rows = []
    for c in checks:
        status = "ok" if c.get("ok") else "failed"
        rows.append(
            f'<tr><td class="{status}">{"&#10003;" if c.get("ok") else "&#10007;"}</td>'
            f'<td class="key">{html.escape(str(c.get("name", "")))}</td>'
            f"<td>{html.escape(str(c.get('message', '')))}</td></tr>"
        )
    return "\n".join(rows)


def _figure_tags(out: Path, run: TutorialRun) -> str:
    tags = []
    for name in run.summary.get("figures", []):
        png = out / run.name / f"{name}.png"
        if png.exists():
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            tags.append(
                f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(name)}</figcaption></figure>"
            )
    return "\n".join(tags)


def _number_rows(numbers: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.6g}"
        text = json.dumps(value) if not isinstance(value, str) else value
        return text if len(text) < 300 else text[:297] + "..."

    return "\n".join(
        f'<tr><td class="key">{html.escape(str(k))}</td><td>{html.escape(show(v))}</td></tr>'
        for k, v in numbers.items()
    )


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}.lead{color:#555}
section{border-top:1px solid #ddd;padding:1em 0}
.ok{color:#2e8b57}.failed{color:#d1495b}
table{border-collapse:collapse;margin:.5em 0}td{border-bottom:1px solid #eee;padding:2px 10px}
td.key{font-family:ui-monospace,monospace;color:#1f5fa8}
figure{display:inline-block;margin:.5em;vertical-align:top}
img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#666}
pre{background:#f6f6f6;padding:.5em;overflow:auto;font-size:.8em}
nav a{margin-right:.8em}
"""


def write_page(out: Path, runs: list[TutorialRun], quick: bool, total_seconds: float) -> Path:
    """Write ``out/index.html``: every tutorial's figures (embedded) and numbers."""
    import pyrobn

    nav = " ".join(f'<a href="#{r.name}">{html.escape(r.name)}</a>' for r in runs)
    sections = []
    for run in runs:
        status = "ok" if run.ok else "failed"
        title = run.summary.get("title", run.name)
        body = [
            f'<section id="{run.name}"><h2>{html.escape(run.name)} — {html.escape(title)}</h2>',
            f'<p class="{status}">{status} in {run.seconds:.1f} s</p>',
        ]
        if run.summary.get("numbers"):
            body.append(f"<table>{_number_rows(run.summary['numbers'])}</table>")
        if run.summary.get("checks"):
            checks = run.summary["checks"]
            held = sum(bool(c.get("ok")) for c in checks)
            body.append(f"<p>claims checked: {held} of {len(checks)} hold</p>")
            body.append(f'<table class="checks">{_check_rows(checks)}</table>')
        body.append(_figure_tags(out, run))
        if not run.ok:
            body.append(f"<pre>{html.escape(run.output_tail)}</pre>")
        body.append("</section>")
        sections.append("\n".join(body))
    mode = "quick (smoke) mode" if quick else "full mode"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pyrobn tour</title>
<style>{_STYLE}</style></head><body>
<h1>pyrobn — a tour of the course</h1>
<p class="lead">pyrobn {pyrobn.__version__}: {len(runs)} tutorials in {mode},
{sum(r.ok for r in runs)} ok, {total_seconds:.0f} s in all.</p>
<nav>{nav}</nav>
{"".join(sections)}
</body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def copy_gallery(out: Path, runs: list[TutorialRun], gallery: Path) -> list[Path]:
    """Copy each tutorial's first figure to ``gallery/<tutorial>.png`` (the README's gallery)."""
    import shutil

    gallery.mkdir(parents=True, exist_ok=True)
    copied = []
    for run in runs:
        figures = run.summary.get("figures", [])
        source = out / run.name / f"{figures[0]}.png" if figures else None
        if run.ok and source is not None and source.exists():
            copied.append(Path(shutil.copyfile(source, gallery / f"{run.name}.png")))
    return copied


def run_tour(out: Path, quick: bool = False, progress: bool = True) -> list[TutorialRun]:
    """Run every tutorial in order; write ``index.html`` and ``summary.json`` to ``out``."""
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    paths = list_tutorials()
    runs: list[TutorialRun] = []
    start = time.perf_counter()
    bar = tqdm(paths, desc="tour", disable=not progress, unit="tutorial")
    for path in bar:
        bar.set_postfix_str(path.stem)
        runs.append(run_tutorial(path, out, quick))
    bar.close()
    total = time.perf_counter() - start
    summary = {
        "quick": quick,
        "seconds": total,
        "tutorials": [asdict(r) | {"output_tail": r.output_tail if not r.ok else ""} for r in runs],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_page(out, runs, quick, total)
    return runs
