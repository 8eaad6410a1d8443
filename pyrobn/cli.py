"""The ``pyrobn`` command.

Every failure is one line on stderr and exit status 2, never a traceback (set
``PYROBN_DEBUG=1`` to see one); a tutorial that fails or whose claims do not hold makes
``tour``/``tutorials run`` exit with status 1; Ctrl-C exits with status 130. Input files are
size-limited (``query --max-bytes``), and output folders (``--out``, ``--gallery``) are
checked before any work starts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyrobn.errors import ConfigurationError, PyrobnError, SizeLimitError

__all__ = ["DEFAULT_MAX_INPUT_BYTES", "MAX_TABLE_ROWS", "build_parser", "main"]

#: the largest network file ``pyrobn query`` reads (``--max-bytes`` changes it)
DEFAULT_MAX_INPUT_BYTES = 32 * 2**20
#: the most rows ``pyrobn query`` prints for a joint table
MAX_TABLE_ROWS = 1_000_000
_DEBUG_ENV = "PYROBN_DEBUG"


def _info(_: argparse.Namespace) -> int:
    import platform

    import pyro
    import torch

    import pyrobn

    print(f"pyrobn   {pyrobn.__version__}")
    print(f"pyro-ppl {pyro.__version__}")
    print(f"torch    {torch.__version__}")
    print(f"python   {platform.python_version()}")
    print(f"hmm cpu  {_hmm_kernels()}")
    dev = pyrobn.device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    print(f"device   {dev} ({name})")
    return 0


def _hmm_kernels() -> str:
    """Which HMM kernels run on CPU (pyrobn.infer.hmm_ops.BACKEND, numba's presence)."""
    from importlib.metadata import PackageNotFoundError, version

    from pyrobn.infer import hmm_ops

    try:
        numba = f"numba {version('numba')}"
    except PackageNotFoundError:
        numba = "numba not installed: torch kernels only"
    return f"backend {hmm_ops.BACKEND!r} ({numba})"


def _writable_dir(path: str, option: str) -> Path:
    """``path`` as a folder that exists (made if needed) and takes a file, or a one-line
    error naming ``option``; called before any work so that no run is wasted."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise ConfigurationError(f"{option} {path!r} is not a folder")
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".pyrobn-write-test-"):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"{option} {path!r} is not a writable folder: {exc.strerror or exc}"
        ) from None
    return folder


def _tour(args: argparse.Namespace) -> int:
    from pyrobn.tour import copy_gallery, list_tutorials, run_tour

    out = _writable_dir(args.out, "--out")
    gallery = _writable_dir(args.gallery, "--gallery") if args.gallery else None
    list_tutorials()  # the tutorials must be found before anything runs
    runs = run_tour(out, quick=args.quick, progress=not args.no_progress)
    if gallery is not None:
        copied = copy_gallery(out, runs, gallery)
        print(f"tour: {len(copied)} figures copied to {gallery}")
    failed = [r.name for r in runs if not r.ok]
    print(
        f"tour: {len(runs) - len(failed)} of {len(runs)} tutorials ok; page: {out / 'index.html'}"
    )
    if failed:
        print(f"pyrobn tour: error: tutorial(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _tutorials(args: argparse.Namespace) -> int:
    from pyrobn.tour import find_tutorial, list_tutorials, run_tutorial

    if args.action == "list":
        for path in list_tutorials():
            print(path.stem)
        return 0
    if not args.name:
        raise ConfigurationError(
            "`pyrobn tutorials run` needs a NAME (see `pyrobn tutorials list`)"
        )
    path = find_tutorial(args.name)
    out = _writable_dir(args.out, "--out")
    run = run_tutorial(path, out, quick=args.quick)
    print(
        run.output_tail
        if not run.ok
        else f"{run.name}: ok in {run.seconds:.1f} s; outputs in {out / run.name}"
    )
    if not run.ok:
        print(f"pyrobn tutorials: error: {run.name} failed", file=sys.stderr)
        return 1
    return 0


def _load_network(name: str, max_bytes: int = DEFAULT_MAX_INPUT_BYTES):
    """'student', or a network file in any format read_network knows (BIF, XMLBIF, UAI,
    Hugin NET, pyrobn JSON; optionally .gz), at most ``max_bytes`` after decompression."""
    from pyrobn.models.bayesnet import read_network, student_network

    if name == "student":
        return student_network()
    return read_network(Path(name), max_bytes=max_bytes)


def _state_label(net, variable: str, state: int) -> str:
    names = net.states[variable]
    return f"{variable}={names[state] if names else state}"


def _checked_network_file(name: str, max_bytes: int) -> None:
    """Refuse, before the network is read, a file that is missing, not a regular file
    (``/dev/zero``, a folder, a pipe), larger than ``max_bytes``, or a JSON document with a
    repeated key or two nodes of one name."""
    if name == "student":
        return
    path = Path(name)
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read network file {name!r}: {exc.strerror or exc}"
        ) from None
    if not path.is_file():
        raise ConfigurationError(f"network file {name!r} is not a regular file")
    if info.st_size > max_bytes:
        raise SizeLimitError(
            f"network file {name!r} is {info.st_size} bytes, over the input limit of "
            f"{max_bytes} bytes (raise it with --max-bytes)"
        )
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # the file grew after stat
        raise SizeLimitError(f"network file {name!r} is over the input limit of {max_bytes} bytes")
    if data.lstrip()[:1] == b"{":
        _check_json_network(data, name)


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigurationError(f"a JSON object gives the key(s) {repeated} twice")
    return dict(pairs)


def _check_json_network(data: bytes, name: str) -> None:
    """A JSON network with a repeated key or two nodes of one name is refused (JSON itself
    would silently keep the last)."""
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_refuse_repeated_keys)
    except UnicodeDecodeError:
        raise ConfigurationError(f"network file {name!r} is not UTF-8 text") from None
    except RecursionError:
        raise ConfigurationError(f"network file {name!r} nests too deeply") from None
    except ConfigurationError as exc:
        raise ConfigurationError(f"network file {name!r}: {exc}") from None
    except ValueError:
        return  # not JSON: the reader names the problem
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if isinstance(nodes, list):
        names = [n.get("name") for n in nodes if isinstance(n, dict)]
        repeated = sorted({str(n) for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigurationError(
                f"network file {name!r} declares the node(s) {repeated} more than once"
            )


def _check_query_text(text: str) -> None:
    """Refuse a malformed query before any file is read. The rules live in one place,
    the parser (:func:`pyrobn.models.bayesnet.parse_query`); this only runs it early."""
    from pyrobn.models.bayesnet import parse_query

    parse_query(text)


def _table_rows(net: Any, variables: Sequence[str]) -> int:
    rows = math.prod(net.cardinality(v) for v in variables)
    if rows > MAX_TABLE_ROWS:
        raise SizeLimitError(
            f"the joint table of {len(variables)} variables has {rows} rows, more than the "
            f"{MAX_TABLE_ROWS} pyrobn query prints; query fewer variables"
        )
    return rows


def _query(args: argparse.Namespace) -> int:
    import itertools

    from pyrobn.models.bayesnet import parse_query

    if not 1 <= args.digits <= 17:
        raise ConfigurationError(f"--digits must lie in 1..17, got {args.digits}")
    if args.max_bytes < 1:
        raise ConfigurationError(f"--max-bytes must be positive, got {args.max_bytes}")
    _check_query_text(args.query)
    query = parse_query(args.query)
    _checked_network_file(args.network, args.max_bytes)
    try:
        net = _load_network(args.network, args.max_bytes)
    except PyrobnError:
        raise
    except Exception as exc:  # a reader's raw error: name the file
        raise ConfigurationError(
            f"cannot read network {args.network!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if query.kind == "marginal":
        _table_rows(net, query.variables)
    answer = net.ask(args.query)
    if query.kind == "probability":
        print(f"{args.query.strip()} = {float(answer):.{args.digits}g}")
    elif query.kind == "mpe":
        assignment = ", ".join(_state_label(net, v, int(s)) for v, s in answer.items())
        print(f"mpe: {assignment}")
    else:
        table = answer.detach().cpu()
        shape = [net.cardinality(v) for v in query.variables]
        for states in itertools.product(*(range(k) for k in shape)):
            label = ", ".join(_state_label(net, v, s) for v, s in zip(query.variables, states))
            print(f"{label}\t{float(table[states]):.{args.digits}g}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from pyrobn.cli_problems import PROBLEMS
    from pyrobn.infer import compare_guides

    if args.n is not None and args.n < 2:
        raise ConfigurationError(f"--n must be at least 2, got {args.n}")
    for option, value in (("--steps", args.steps), ("--samples", args.samples)):
        if value < 1:
            raise ConfigurationError(f"{option} must be at least 1, got {value}")
    if args.seed < 0:
        raise ConfigurationError(f"--seed must be at least 0, got {args.seed}")
    sizes = {} if args.n is None else {"n": args.n}
    problem = PROBLEMS[args.problem](seed=args.seed, **sizes)
    names = [g.strip() for g in args.guides.split(",")] if args.guides else list(problem.guides)
    unknown = [g for g in names if g not in problem.guides]
    if unknown:
        raise ConfigurationError(
            f"unknown guide(s) {unknown} for {args.problem}; choose from {list(problem.guides)}"
        )
    comparison = compare_guides(
        problem.model,
        {name: problem.guides[name] for name in names},
        *problem.data,
        steps=args.steps,
        num_samples=args.samples,
        warmup_steps=max(args.samples // 2, 10),
        num_particles=problem.num_particles,
        reference=problem.reference,
        lr=0.05,
        final_lr=0.001,
        seed=args.seed,
        progress=False,
    )
    columns = [
        c for c in ["mean", "sd", "sd_ratio", "kl", "elbo", "wall_time"] if c in comparison.table
    ]
    with pd.option_context("display.width", 160, "display.max_columns", 12):
        print(f"{problem.name}: {args.steps} SVI steps, {args.samples} draws per guide")
        print(comparison.table[columns].round(4).to_string())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyrobn", description="Bayesian networks and generative models in Pyro.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    info = sub.add_parser(
        "info", help="versions of pyrobn, pyro-ppl, torch and numba, and the device"
    )
    info.set_defaults(func=_info)

    tour = sub.add_parser("tour", help="run every tutorial and build DIR/index.html")
    tour.add_argument("--out", default="tour_output", help="output folder (default tour_output)")
    tour.add_argument("--quick", action="store_true", help="smoke mode: few steps, small data")
    tour.add_argument("--no-progress", action="store_true", help="no progress bar")
    tour.add_argument("--gallery", default=None, help="also copy one figure per tutorial here")
    tour.set_defaults(func=_tour)

    query = sub.add_parser(
        "query",
        help="exact query on a Bayesian network",
        description="Exact queries: 'P(x2=1, x3=1)', 'P(x3=1 | x2=1)', 'x1 | x2=0', "
        "'x2, x3', 'mpe | x4=1'. States are indices or names.",
    )
    query.add_argument(
        "network",
        help="'student' (the notes' network) or a network file: .bif, .xmlbif, .uai, .net, "
        ".json (optionally .gz)",
    )
    query.add_argument("query", help="the query, quoted")
    query.add_argument("--digits", type=int, default=6, help="significant digits (1-17)")
    query.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_INPUT_BYTES,
        help=f"largest network file read (default {DEFAULT_MAX_INPUT_BYTES} bytes)",
    )
    query.set_defaults(func=_query)

    compare = sub.add_parser("compare", help="compare guides on tutorial 12's problems")
    compare.add_argument("problem", choices=["regression", "mixture"])
    compare.add_argument("--steps", type=int, default=2000, help="SVI steps per guide")
    compare.add_argument("--samples", type=int, default=500, help="posterior draws per guide")
    compare.add_argument("--guides", default=None, help="comma-separated subset of the guides")
    compare.add_argument("--n", type=int, default=None, help="data size")
    compare.add_argument("--seed", type=int, default=0)
    compare.set_defaults(func=_compare)

    tutorials = sub.add_parser("tutorials", help="list or run the tutorials")
    tutorials.add_argument("action", choices=["list", "run"])
    tutorials.add_argument("name", nargs="?", help="tutorial name or number (for run)")
    tutorials.add_argument("--out", default="pyrobn_output", help="output folder")
    tutorials.add_argument("--quick", action="store_true", help="smoke mode")
    tutorials.set_defaults(func=_tutorials)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line and exits with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _one_line(exc: BaseException) -> str:
    """The first non-empty line of the error's message (its type when it has none)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0] + (" ..." if len(lines) > 1 else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 1 a tutorial failed, 2 an error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = os.environ.get(_DEBUG_ENV, "").strip() not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"pyrobn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, no traceback
        if debug:
            raise
        if isinstance(exc, PyrobnError | OSError | ValueError | MemoryError):
            message = _one_line(exc)
        else:  # not an input error: a bug, say so
            message = (
                f"internal error ({type(exc).__name__}: {_one_line(exc)}); "
                f"rerun with {_DEBUG_ENV}=1 for the traceback"
            )
        print(f"pyrobn {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
