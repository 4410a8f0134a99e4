"""`dgcnet prepare`: decode a data list's images and labels once, for fast training loads."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dgcnet.cli.common import CommandAdder, add_dataset_arg, positive_int
from dgcnet.data.datasets import describe_classes, resolve_classes
from dgcnet.data.prepare import prepare
from dgcnet.data.store import DEFAULT_NAME


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "prepare",
        description="Decode every image and label of a data list into a prepared store: uncompressed "
                    "arrays (image RGB, label as train ids) that training reads through memory maps, "
                    "so a crop reads only the rows it needs instead of decoding a PNG (4-5x the "
                    "training samples per CPU core; docs/data.md). Training uses DATA_DIR/" + DEFAULT_NAME +
                    " by itself when it exists (data.prepared). Safe to stop and run again: it "
                    "resumes, skips what is stored and unchanged, and decodes changed files again. "
                    "Several lists can share one store. Takes about 8 bytes per pixel on disk "
                    "(about 23 GiB for the 2975 Cityscapes training images).")
    p.add_argument("--data-dir", type=Path, required=True, help="folder the list's paths are relative to")
    p.add_argument("--data-list", type=Path, required=True, help="the data list to prepare")
    p.add_argument("--output-dir", type=Path, default=None,
                   help=f"the store's folder (default: DATA_DIR/{DEFAULT_NAME}, where training finds it)")
    add_dataset_arg(p, "cityscapes")
    p.add_argument("--classes", type=Path,
                   help="class file (YAML or JSON) mapping label ids to train ids (default: the dataset's)")
    p.add_argument("--workers", type=positive_int, default=min(8, os.cpu_count() or 1),
                   help="files decoded in parallel (default: number of CPUs, at most 8)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    classes = resolve_classes(args.dataset, args.classes)
    r = prepare(args.data_dir, args.data_list, args.output_dir, classes=classes, workers=args.workers,
                progress=sys.stderr.isatty())
    print(f"{r.store}: {r.samples} samples of {args.data_list}, {r.prepared} decoded now, {r.up_to_date} "
          f"already stored; store size {r.store_bytes / 2**30:.2f} GiB; labels as {describe_classes(classes)}")
    return 0
