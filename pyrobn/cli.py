"""The ``pyrobn`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _info(_: argparse.Namespace) -> int:
    import platform

    import pyro
    import torch

    import pyrobn

    print(f"pyrobn   {pyrobn.__version__}")
    print(f"pyro-ppl {pyro.__version__}")
    print(f"torch    {torch.__version__}")
    print(f"python   {platform.python_version()}")
    dev = pyrobn.device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    print(f"device   {dev} ({name})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyrobn", description="Bayesian networks and generative models in Pyro."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions of pyrobn, pyro-ppl and torch, and the device")
    info.set_defaults(func=_info)
    return parser


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
