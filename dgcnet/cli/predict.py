"""`dgcnet predict`: segment image files, folders or glob patterns and write PNGs."""
from __future__ import annotations

import argparse
import sys

from dgcnet.cli.common import CommandAdder
from dgcnet.cli.inference import add_inference_args, describe_tile, fast_heap, load_for_inference, parse_formats_arg
from dgcnet.engine.predict import FORMAT_DIRS, collect_inputs, prediction_path, predict_files
from dgcnet.errors import DgcnetError
from dgcnet.io import check_new_outputs, check_output_dir


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "predict",
        description="Segment images of any size (RGB, RGBA, greyscale, 16-bit) and write one PNG per image "
                    "and format to OUTPUT/<labelIds|color|overlay|trainIds>/, mirroring the inputs' paths "
                    "below their common folder. An image that cannot be read is reported and skipped; "
                    "the exit status is then 1.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files, folders (searched recursively) or glob patterns (quote them)")
    p.add_argument("--output-dir", required=True, help="output folder")
    p.add_argument("--save-pred", "--format", type=parse_formats_arg, default=("color",),
                   help="what to write, comma-separated: " + ", ".join(FORMAT_DIRS) + " (compare: the image and "
                        "the prediction side by side; default: color)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace prediction files an earlier run left in the output folder (inputs are never "
                        "replaced)")
    add_inference_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    inputs, errors = collect_inputs(args.paths)
    for line in errors:
        print(f"dgcnet predict: {line}", file=sys.stderr)
    if not inputs:
        raise DgcnetError("no input images")
    # Before loading the model: the output folder is usable and no output replaces an input.
    check_output_dir(args.output_dir, "--output-dir")
    check_new_outputs([prediction_path(args.output_dir, fmt, i.relative) for i in inputs for fmt in args.save_pred],
                      [i.path for i in inputs] + [args.restore_from], args.overwrite, "prediction")
    fast_heap(args)
    model, classes = load_for_inference(args)
    tile, stride = describe_tile(args, model)
    failures = predict_files(model, inputs, args.output_dir, args.save_pred, classes=classes, mode=args.mode,
                             tile=tile, stride=stride, scales=args.scales, flip=args.flip,
                             batch_tiles=args.batch_tiles, amp=args.amp, workers=args.workers,
                             progress=sys.stderr.isatty(), note=print)
    for line in failures:
        print(f"dgcnet predict: {line}", file=sys.stderr)
    written = len(inputs) - len(failures)
    print(f"{written} of {len(inputs)} images written to {args.output_dir} ({', '.join(args.save_pred)})")
    return 1 if errors or failures else 0
