"""`dgcnet demo`: train, evaluate and predict on a synthetic Cityscapes, no downloads needed, or on a
real dataset by name within a time budget."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from dgcnet.cli.common import CommandAdder, add_dataset_arg, add_device_arg, image_size, positive_int
from dgcnet.demo import TRAIN_SHARE, DemoSettings, real_data_settings, run_demo
from dgcnet.errors import DgcnetError
from dgcnet.models import list_models


def add_parser(subparsers: CommandAdder) -> None:
    d = DemoSettings()
    p = subparsers.add_parser(
        "demo",
        description="Make a synthetic Cityscapes, train a small DGCNet on it from scratch with the training "
                    "engine, evaluate it by the evaluator (OUT/eval/result/result.txt), segment a few "
                    "validation images (colour and overlay PNGs), draw the training curve and write a "
                    "one-page summary (OUT/summary.md). Nothing is downloaded. The defaults take about 4.5 "
                    "minutes on a 2-core CPU and reach mIoU >= 0.80 on the synthetic validation images. "
                    "With --dataset camvid --data-dir DIR the same flow runs on real street scenes "
                    "(CamVid's published train and val lists), trained from scratch within --minutes.")
    p.add_argument("--output-dir", "--out", dest="out", type=Path, metavar="DIR", default=Path("dgcnet_demo"),
                   help="output folder, must be missing or empty (default: ./dgcnet_demo)")
    p.add_argument("--steps", type=positive_int, metavar="N", default=None,
                   help=f"training iterations (default: {d.steps}; with --dataset, as many as fit --minutes)")
    p.add_argument("--arch", choices=list_models(), default=d.arch, help=f"architecture (default: {d.arch})")
    p.add_argument("--seed", type=int, metavar="S", default=d.seed,
                   help=f"seed of the synthetic data and the training (default: {d.seed})")
    add_device_arg(p, "where to train and evaluate")
    p.add_argument("--size", type=image_size, metavar="HxW", default=d.image_size,
                   help=f"synthetic image size HxW (default: {d.image_size[0]}x{d.image_size[1]})")
    p.add_argument("--train-images", type=positive_int, metavar="N", default=d.train_images,
                   help=f"synthetic training images (default: {d.train_images})")
    p.add_argument("--val-images", type=positive_int, metavar="N", default=d.val_images,
                   help=f"synthetic validation images (default: {d.val_images})")
    p.add_argument("--batch-size", type=positive_int, metavar="N", default=d.batch_size,
                   help=f"images per training step (default: {d.batch_size})")
    p.add_argument("--crop", type=image_size, metavar="HxW", default=None,
                   help="training crop HxW (default: a square of the image height; with --dataset, the dataset's)")
    real = p.add_argument_group("a real dataset instead of the synthetic one")
    add_dataset_arg(real, "the synthetic Cityscapes, written into OUT/data")
    real.add_argument("--data-dir", type=Path, metavar="DIR", default=None,
                      help="the dataset's folder, holding its published train.txt and val.txt (when it is empty "
                           "or missing, the demo prints the command that downloads it)")
    real.add_argument("--minutes", type=_minutes, metavar="M", default=d.minutes,
                      help=f"time budget of the whole demo on a real dataset; training gets {int(TRAIN_SHARE * 100)}%% "
                           f"of it (default: {d.minutes:g})")
    p.set_defaults(run=run)


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 24 * 60:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected minutes in (0, 1440], got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    common = dict(arch=args.arch, seed=args.seed, device=args.device or "auto", batch_size=args.batch_size,
                  keep_freed_memory=True)
    if args.crop is not None:
        common["crop_size"] = args.crop
    if args.dataset:
        settings = real_data_settings(args.dataset, args.data_dir, args.minutes, steps=args.steps, **common)
    elif args.data_dir is not None:
        raise DgcnetError("--data-dir names a real dataset's folder: give --dataset too (e.g. --dataset camvid)")
    else:
        settings = replace(DemoSettings(), steps=args.steps or DemoSettings.steps, image_size=args.size,
                           train_images=args.train_images, val_images=args.val_images, **common)
    result = run_demo(args.out, settings, say=print, progress=sys.stderr.isatty())
    print()
    print(result.table, end="")
    print(f"meanIU {result.miou:.4f} on {result.val_images} {'' if args.dataset else 'synthetic '}validation images, "
          f"{result.seconds['total']:.0f} s in all")
    print()
    print(f"summary:           {result.summary}")
    print(f"evaluation:        {result.result_dir / 'result.txt'}")
    print(f"predictions:       {result.predictions_dir}  (comparison: {result.comparison})")
    print(f"training curve:    {result.curve}")
    print(f"final checkpoint:  {result.checkpoint}")
    print(f"{'dataset' if args.dataset else 'synthetic dataset'}: {result.data_dir}")
    return 0
