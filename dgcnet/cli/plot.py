"""`dgcnet plot`: the training curves of one or several run folders as one PNG."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from dgcnet.cli.common import CommandAdder
from dgcnet.errors import DgcnetError

DEFAULT_KEYS = ("loss", "val_miou", "lr")


def _smoothing(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1 (1 excluded), got {text!r}")
    return value


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "plot",
        description="Draw the curves of training runs (their metrics.jsonl) into one PNG: a panel per key "
                    "against the iteration, each run in its own colour (legend by run name), raw values "
                    "thin and light, smoothed values thick.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or their metrics.jsonl files)")
    p.add_argument("--keys", default=None, metavar="K1,K2",
                   help=f"metrics.jsonl keys to draw, one panel each, e.g. loss,loss_main,loss_aux,lr,val_miou,"
                        f"seconds_per_iter,data_wait,peak_memory_gb (default: those of {','.join(DEFAULT_KEYS)} "
                        f"the runs have)")
    p.add_argument("--out", type=Path, default=Path("curves.png"), metavar="FILE",
                   help="PNG to write; must not exist yet (default: curves.png)")
    p.add_argument("--smooth", type=_smoothing, default=0.6, metavar="W",
                   help="weight of the exponential moving average, 0..1; 0 draws the raw values only (default: 0.6)")
    p.add_argument("--title", default=None, help="title of the picture (default: the keys and the runs)")
    p.set_defaults(run=run)


def run_names(paths: list[str]) -> list[str]:
    """Each run's folder name, or the path as given where folder names repeat."""
    folders = [Path(p).parent if Path(p).name.endswith(".jsonl") else Path(p) for p in paths]
    names = [f.resolve().name for f in folders]
    if len(set(names)) == len(names):
        return names
    return [str(f) for f in folders]


def run(args: argparse.Namespace) -> int:
    from dgcnet.engine.runlog import read_metrics
    from dgcnet.plots import run_curves

    if args.out.exists():
        raise DgcnetError(f"{args.out}: already exists; choose another --out or remove it")
    names = run_names(args.runs)
    if len(set(names)) != len(names):
        raise DgcnetError("the same run is given twice")
    runs = {name: read_metrics(path) for name, path in zip(names, args.runs)}
    present = {key for records in runs.values() for r in records for key in r}
    if args.keys is None:
        keys = [k for k in DEFAULT_KEYS if k in present]
        if not keys:
            raise DgcnetError(f"{', '.join(args.runs)}: no loss, val_miou or lr records")
    else:
        keys = [k.strip() for k in args.keys.split(",") if k.strip()]
        missing = [k for k in keys if k not in present]
        if missing:
            raise DgcnetError(f"no run has {', '.join(missing)}; keys found: {', '.join(sorted(present - {'iteration'}))}")
    title = args.title or f"{', '.join(keys)} of {', '.join(names)}"
    try:
        image = run_curves(runs, keys, smoothing=args.smooth, title=title)
    except ValueError as error:
        raise DgcnetError(str(error)) from None
    partial = args.out.with_name(f".{args.out.name}.partial")
    try:
        image.save(partial, format="PNG")
        os.replace(partial, args.out)
    except OSError as error:
        raise DgcnetError(f"{args.out}: cannot write: {error.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {args.out}: {', '.join(keys)} of {len(runs)} run(s)")
    return 0
