"""`dgcnet synth`, `dgcnet lists`, `dgcnet check-data`: make and check datasets."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dgcnet.cli.common import CommandAdder, add_dataset_arg, count, image_size, positive_int
from dgcnet.data.check import check_list
from dgcnet.data.datasets import describe_classes, get_dataset, resolve_classes
from dgcnet.data.lists import write_authors_lists, write_lists
from dgcnet.data.prepare import check_store
from dgcnet.data.store import DEFAULT_NAME, find_store
from dgcnet.data.synth import write_synth
from dgcnet.io import check_output_dir


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "synth",
        description="Write synthetic street scenes with all 19 Cityscapes classes in the exact "
                    "Cityscapes layout (leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png, "
                    "gtFine/.../*_gtFine_labelIds.png with real label ids, void ids included) and its "
                    "data lists (train.txt, val.txt, test.txt, trainval.txt). The same seed gives "
                    "byte-identical files.")
    p.add_argument("--output-dir", "--out", dest="out", type=Path, required=True, metavar="DIR",
                   help="output folder (must not hold a dataset yet)")
    p.add_argument("--train", type=count, default=200, help="training images (default: 200)")
    p.add_argument("--val", type=count, default=20, help="validation images (default: 20)")
    p.add_argument("--test", type=count, default=0, help="test images, listed without labels (default: 0)")
    p.add_argument("--size", type=image_size, default=(128, 256),
                   help="image size HxW (default: 128x256; 1024x2048 is the real Cityscapes size)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(run=run_synth)

    p = subparsers.add_parser(
        "lists",
        description="Write data lists. --authors: the authors' six Cityscapes lists (train, val, test, "
                    "trainval, and train+/train++ with coarse labels), byte for byte, to reproduce the "
                    "published split. --data-dir: scan leftImg8bit/{train,val,test}/<city>/ of a Cityscapes "
                    "tree and write train.txt, val.txt, test.txt and trainval.txt in the authors' format and "
                    "order: 'image<TAB>label' per line (test.txt: image only), sorted by image path; for a "
                    "folder dataset (images/<split>/..., labels/<split>/... with the same names, labels as "
                    ".png) write <split>.txt for each split folder; for the other datasets known by name, "
                    "train.txt, val.txt, test.txt and trainval.txt from their own layouts (docs/data.md). A list file already there with "
                    "other content is never replaced.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--authors", action="store_true", help="write the authors' Cityscapes lists")
    source.add_argument("--data-dir", type=Path, help="the dataset's root folder (Cityscapes, CamVid, a folder "
                                                      "dataset, or the layout --dataset names)")
    p.add_argument("--output-dir", "--out", dest="out", type=Path, required=True, metavar="DIR",
                   help="folder to write the lists into")
    add_dataset_arg(p, "recognised from the folder layout: any of these, or a folder dataset")
    p.set_defaults(run=run_lists)

    p = subparsers.add_parser(
        "check-data",
        description="Check every line of a data list: missing files, unreadable or truncated images, "
                    "labels that are not single-channel 8-bit, image/label size mismatches, label ids "
                    "outside the known set, wrong column counts, duplicate lines. Prints each problem as "
                    "LIST:LINE: PATH: what is wrong, then a summary; exits 1 if there is any problem.")
    p.add_argument("--data-dir", type=Path, required=True, help="folder the list's paths are relative to")
    p.add_argument("--data-list", type=Path, required=True, help="the data list to check")
    add_dataset_arg(p, "cityscapes")
    p.add_argument("--classes", type=Path,
                   help="class file (YAML or JSON) giving the valid label ids (default: the dataset's label ids)")
    p.add_argument("--workers", type=positive_int, default=min(8, os.cpu_count() or 1),
                   help="parallel file checks (default: number of CPUs, at most 8)")
    p.add_argument("--prepared", metavar="DIR|auto|none", default="auto",
                   help="also check this prepared store (`dgcnet prepare`) against the list: every file "
                        "stored, its source unchanged, its array whole and unaltered (checksum) "
                        f"(default auto: DATA_DIR/{DEFAULT_NAME} when it exists; none: skip)")
    p.set_defaults(run=run_check_data)


def run_synth(args: argparse.Namespace) -> int:
    check_output_dir(args.out, "--output-dir")
    write_synth(args.out, train=args.train, val=args.val, test=args.test, size=args.size, seed=args.seed,
                progress=sys.stderr.isatty())
    h, w = args.size
    print(f"wrote {args.train} train, {args.val} val, {args.test} test images ({h}x{w}) and their lists "
          f"to {args.out}")
    return 0


def run_lists(args: argparse.Namespace) -> int:
    check_output_dir(args.out, "--output-dir")
    if args.authors:
        written = write_authors_lists(args.out)
    else:
        written = write_lists(args.data_dir, args.out, get_dataset(args.dataset).make_lists if args.dataset else None)
    for name, lines in written.items():
        print(f"{args.out / name}: {lines} lines")
    return 0


def run_check_data(args: argparse.Namespace) -> int:
    classes = resolve_classes(args.dataset, args.classes)
    result = check_list(args.data_dir, args.data_list, classes=classes, workers=args.workers,
                        progress=sys.stderr.isatty())
    for problem in result.problems:
        print(problem)
    print(f"{result.summary()}; labels read as {describe_classes(classes)}")
    store = find_store(args.data_dir, None if args.prepared.lower() == "none" else args.prepared)
    if store is None:
        return 0 if result.ok else 1
    stored = check_store(store, args.data_dir, args.data_list, classes=classes, workers=args.workers,
                         progress=sys.stderr.isatty())
    for problem in stored.problems:
        print(problem)
    print(f"prepared store {store}: " + ("no problems" if stored.ok else f"{len(stored.problems)} problem(s)"))
    return 0 if result.ok and stored.ok else 1
