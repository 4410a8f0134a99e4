"""The `dgcnet` command line: parse arguments, call library functions, print results."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import dgcnet
from dgcnet.cli import benchmark, convert, data, demo, evaluate, export, info, predict, train
from dgcnet.errors import DgcnetError

# Each command module defines add_parser(subparsers) and run(args) -> exit status.
COMMANDS = [demo, info, data, train, convert, export, evaluate, predict, benchmark]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dgcnet",
        description="DGCNet (Dual Graph Convolutional Network) for semantic segmentation: "
                    "train, evaluate, predict, convert weights.",
    )
    parser.add_argument("--version", action="version", version=f"dgcnet {dgcnet.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except DgcnetError as error:
        print(f"dgcnet {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dgcnet {args.command}: interrupted", file=sys.stderr)
        return 130
