"""`dgcnet download`: fetch a dataset, every file checked against the package's manifest."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dgcnet.cli.common import CommandAdder, positive_int
from dgcnet.data.datasets import DATASET_NAMES
from dgcnet.data.fetch import CAMVID_COMMIT, CAMVID_REPO, SOURCES, default_source, fetch_dataset
from dgcnet.errors import DgcnetError


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "download",
        description=f"Download a dataset into a folder. camvid: every file of the folder CamVid/ of "
                    f"{CAMVID_REPO} at commit {CAMVID_COMMIT} (the 11-class SegNet split: train/, "
                    f"trainannot/, val/, valannot/, test/, testannot/ and the lists train.txt, val.txt, "
                    f"test.txt), laid out as published. Each file is checked against the size and SHA-256 "
                    f"the package lists for it before it gets its name; one that fails is deleted and "
                    f"named in the error. Run again to resume: files already there and correct are "
                    f"skipped, a cut download continues where it stopped. A file already there with "
                    f"other content is reported, never replaced. The other datasets known by name need a "
                    f"login or a licence: the command says where to get them.")
    p.add_argument("dataset", metavar="DATASET", choices=DATASET_NAMES,
                   help=f"the dataset: {', '.join(SOURCES)} (downloaded), or {', '.join(n for n in DATASET_NAMES if n not in SOURCES)} "
                        f"(where to get it)")
    p.add_argument("--output-dir", "--out", dest="out", type=Path, metavar="DIR",
                   help="folder to download into (created if needed; required for camvid)")
    p.add_argument("--source", metavar="DIR|URL",
                   help="a mirror: a folder laid out like the published one (files are copied and "
                        "checked) or an http(s) base URL (files at URL/PATH) (default: the published "
                        "folder on raw.githubusercontent.com)")
    p.add_argument("--workers", type=positive_int, default=4, help="files downloaded at a time (default: 4)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    default_source(args.dataset)  # a dataset that cannot be downloaded: say what to do, before any flag
    if args.out is None:
        raise DgcnetError("--output-dir DIR is required: the folder to download into")
    result = fetch_dataset(args.dataset, args.out, source=args.source, workers=args.workers,
                           progress=sys.stderr.isatty())
    print(result.summary())
    return 0
