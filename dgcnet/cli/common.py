"""What every command shares: argument types and the one flag vocabulary.

Light on purpose: building the parsers must not import torch, so that ``dgcnet --help`` is quick.
"""
from __future__ import annotations

import argparse

from dgcnet.config import DEVICE_HELP, check_size, is_device, parse_size
from dgcnet.errors import DgcnetError


def count(text: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def image_size(text: str) -> tuple[int, int]:
    """'HxW', 'H,W' or 'N' (a square) -> (height, width)."""
    try:
        size = parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 832x832, 1024,2048 or 832, got {text!r}") from None
    try:
        check_size(size, 1, "size")
    except DgcnetError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return size


def device(text: str) -> str:
    """cpu, cuda, cuda:N or auto."""
    if not is_device(text):
        raise argparse.ArgumentTypeError(f"expected {DEVICE_HELP}, got {text!r}")
    return text


def add_device_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup, help: str = "where to run") -> None:
    """--device, the same choices in every command."""
    p.add_argument("--device", type=device, default=None, metavar="DEVICE",
                   help=f"{help}: {DEVICE_HELP} (default: auto, the GPU when there is one)")


def add_dataset_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup, default_text: str) -> None:
    """--dataset, the same choices in every command."""
    from dgcnet.data.datasets import DATASETS

    p.add_argument("--dataset", choices=tuple(DATASETS), default=None, metavar="NAME",
                   help=f"a dataset known by name, for its classes and layout: {', '.join(DATASETS)} "
                        f"(docs/data.md); --classes replaces its classes (default: {default_text})")


class CommandAdder:
    """What a command module's add_parser receives: adds its commands, each with its one-line help."""

    def __init__(self, subparsers: argparse._SubParsersAction, helps: dict[str, str]) -> None:
        self.subparsers = subparsers
        self.helps = helps

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self.subparsers.add_parser(name, help=self.helps[name], **kwargs)


def _spellings(option: str) -> tuple[str, str]:
    """'--data_dir' -> ('--data-dir', '--data_dir'): the hyphen and the underscore spelling."""
    name = option[2:]
    return "--" + name.replace("_", "-"), "--" + name.replace("-", "_")


def add_spelling_aliases(parser: argparse.ArgumentParser) -> None:
    """Accept every long flag of ``parser`` and its subcommands with hyphens and with underscores.

    ``--help`` lists each flag once, in its hyphen spelling, and names the other spellings (the
    underscore one and any alias declared with the flag, such as the MindSpore port's names).
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in dict.fromkeys(action.choices.values()):
                add_spelling_aliases(subparser)
            continue
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs:
            continue
        shown = _spellings(longs[0])[0]
        accepted = [spelling for option in longs for spelling in (option, *_spellings(option))]
        accepted = list(dict.fromkeys(accepted))
        for option in accepted:
            owner = parser._option_string_actions.setdefault(option, action)
            if owner is not action:
                raise ValueError(f"{parser.prog}: {option} names two different flags")
        action.option_strings = [s for s in action.option_strings if not s.startswith("--")] + [shown]
        others = [s for s in accepted if s != shown]
        if others and action.help is not argparse.SUPPRESS:
            action.help = f"{action.help or ''} (also {', '.join(others)})".lstrip()
