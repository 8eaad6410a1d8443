"""The ``pyrobn`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pyrobn.errors import ConfigurationError


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


def _tour(args: argparse.Namespace) -> int:
    from pyrobn.tour import copy_gallery, run_tour

    out = Path(args.out)
    runs = run_tour(out, quick=args.quick, progress=not args.no_progress)
    if args.gallery:
        copied = copy_gallery(out, runs, Path(args.gallery))
        print(f"tour: {len(copied)} figures copied to {args.gallery}")
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
    out = Path(args.out)
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


#: the largest network file the command reads (after decompression)
MAX_NETWORK_BYTES = 64 * 2**20


def _load_network(name: str):
    """'student', or a network file in any format read_network knows (BIF, XMLBIF, UAI,
    Hugin NET, pyrobn JSON; optionally .gz), at most MAX_NETWORK_BYTES."""
    from pyrobn.models.bayesnet import read_network, student_network

    if name == "student":
        return student_network()
    return read_network(Path(name), max_bytes=MAX_NETWORK_BYTES)


def _state_label(net, variable: str, state: int) -> str:
    names = net.states[variable]
    return f"{variable}={names[state] if names else state}"


def _query(args: argparse.Namespace) -> int:
    import itertools

    from pyrobn.models.bayesnet import parse_query

    net = _load_network(args.network)
    query = parse_query(args.query)
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

    from pyrobn.infer import compare_examples as examples
    from pyrobn.infer import compare_guides

    build = {"regression": examples.correlated_regression, "mixture": examples.mixture_weight}
    if args.n is not None and args.n < 2:
        raise ConfigurationError(f"--n must be at least 2, got {args.n}")
    sizes = {} if args.n is None else {"n": args.n}
    problem = build[args.problem](seed=args.seed, **sizes)
    names = args.guides.split(",") if args.guides else list(problem.guides)
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
    query.add_argument("--digits", type=int, default=6, help="significant digits")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError, OSError) as exc:  # one line, no traceback
        print(f"pyrobn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
