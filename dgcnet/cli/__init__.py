"""The `dgcnet` command line: parse arguments, call library functions, print results.

Each command module defines add_parser(subparsers, help) and its run(args) -> exit status. A module
is imported only when its command runs, so `dgcnet --help` stays quick and imports no torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from dgcnet import __version__
from dgcnet.cli.common import CommandAdder, add_spelling_aliases
from dgcnet.errors import DgcnetError

# command -> (module in dgcnet.cli that defines it, one-line help)
COMMANDS = {
    "demo": ("demo", "see DGCNet learn: synthetic Cityscapes, train, evaluate, predict (a few minutes on a CPU)"),
    "info": ("info", "parameters and FLOPs of an architecture"),
    "synth": ("data", "write a synthetic Cityscapes dataset"),
    "lists": ("data", "write data lists: the authors' Cityscapes lists, or lists of a dataset folder"),
    "download": ("download", "download a dataset (CamVid), every file checked against its SHA-256; resumable"),
    "check-data": ("data", "check every file of a data list (and its prepared store)"),
    "prepare": ("prepare", "decode a data list's files once into a prepared store for fast training loads"),
    "train": ("train", "train DGCNet (one process, or one per GPU under torchrun)"),
    "convert": ("convert", "convert weights between PyTorch .pth, safetensors and MindSpore .ckpt"),
    "export": ("export", "export a model to ONNX or torch.export (.pt2)"),
    "eval": ("evaluate", "mIoU on a data list (sliding window of the model's training crop, as published)"),
    "predict": ("predict", "segment images (files, folders, globs) and write PNGs"),
    "benchmark": ("benchmark", "time training steps, inference passes or training data loading"),
    "plot": ("plot", "draw the training curves of run folders into one PNG"),
}


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the full arguments of ``commands`` (default: all), the others listed by name."""
    parser = argparse.ArgumentParser(
        prog="dgcnet",
        description="DGCNet (Dual Graph Convolutional Network) for semantic segmentation: "
                    "train, evaluate, predict, convert weights. 'dgcnet COMMAND --help' explains a command.",
    )
    parser.add_argument("--version", action="version", version=f"dgcnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = {COMMANDS[name][0] for name in (COMMANDS if commands is None else commands)}
    adder = CommandAdder(subparsers, {name: help for name, (_, help) in COMMANDS.items()})
    for name, (module, help) in COMMANDS.items():
        if name in subparsers.choices:  # added with an earlier command of its module
            continue
        if module in wanted:
            importlib.import_module(f"dgcnet.cli.{module}").add_parser(adder)
        else:  # listed by name only; main() builds the full parser of the command it runs
            subparsers.add_parser(name, help=help)
    add_spelling_aliases(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([command] if command in COMMANDS else [])
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
