"""`dgcnet eval`: mIoU of a checkpoint on a data list, by the protocol the model was trained for."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dgcnet.cli.common import CommandAdder
from dgcnet.cli.inference import add_inference_args, describe_tile, fast_heap, load_for_inference, parse_formats_arg
from dgcnet.data.dataset import SegmentationDataset, read_list
from dgcnet.engine.evaluate import RESULT_FILES, evaluate, write_results
from dgcnet.engine.predict import FORMAT_DIRS, PredictionWriter, output_names, prediction_path
from dgcnet.io import check_new_outputs, check_output_dir
from dgcnet.metrics import class_table, format_table


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "eval",
        description="Evaluate a checkpoint on a data list by the protocol it was trained for (full images, "
                    "sliding window of the training crop at 2/3 of it, logits averaged, single scale, no flip: "
                    "832 at stride 555 for the published weights; images no larger than the tile run whole) and "
                    "write OUTPUT/result/: result.txt ({\"meanIU\", \"IU_array\"}), per_class.md/.csv, "
                    "confusion.npy/.png and summary.json. A list without labels (test.txt) only predicts: labelIds PNGs unless --save-pred says otherwise.")
    p.add_argument("--data-dir", required=True, help="dataset root folder")
    p.add_argument("--data-list", required=True,
                   help="data list: 'image<TAB>label' per line relative to --data-dir (label optional)")
    p.add_argument("--output-dir", default="eval_output",
                   help="output folder (default: ./eval_output)")
    p.add_argument("--save-pred", type=parse_formats_arg, default=(),
                   help="also write predictions, any of: " + ", ".join(FORMAT_DIRS) + " (comma-separated); "
                        "labelids are the Cityscapes test-server PNGs, in OUTPUT/labelIds/; compare puts the "
                        "image, the ground truth and the prediction side by side, in OUTPUT/compare/")
    p.add_argument("--overwrite", action="store_true",
                   help="replace result and prediction files an earlier run left in the output folder "
                        "(inputs are never replaced)")
    add_inference_args(p)
    p.set_defaults(run=run)


def check_outputs(args: argparse.Namespace) -> None:
    """Before loading anything heavy: the output folder is usable, and no output replaces an
    input or (without --overwrite) a file of an earlier run."""
    check_output_dir(args.output_dir, "--output-dir")
    samples = read_list(args.data_list, args.data_dir)
    save_pred = args.save_pred or (() if any(s.label for s in samples) else ("labelids",))
    names = output_names([s.image for s in samples]) if save_pred else []
    outputs = [Path(args.output_dir) / "result" / name for name in RESULT_FILES]
    outputs += [prediction_path(args.output_dir, fmt, name) for name in names for fmt in save_pred]
    inputs = [args.data_list, args.restore_from] + [p for s in samples for p in (s.image, s.label) if p]
    check_new_outputs(outputs, inputs, args.overwrite)


def run(args: argparse.Namespace) -> int:
    check_outputs(args)
    heap = fast_heap(args)
    model, classes = load_for_inference(args)
    dataset = SegmentationDataset(args.data_dir, args.data_list, classes=classes, train=False, rgb=model.info.rgb)
    tile, stride = describe_tile(args, model)
    settings = {"restore_from": str(args.restore_from), "data_list": str(args.data_list), "mode": args.mode,
                "tile": tile, "stride": stride, "scales": list(args.scales), "flip": args.flip,
                "amp": args.amp, "device": str(next(model.parameters()).device), "fast": args.fast,
                "heap": heap}
    save_pred = args.save_pred
    if not save_pred and all(s.label is None for s in dataset.samples):
        save_pred = ("labelids",)  # nothing to score: the test-server PNGs are the result
    writer = PredictionWriter(args.output_dir, save_pred, classes) if save_pred else None
    try:
        result = evaluate(model, dataset, mode=args.mode, tile=tile, stride=stride, scales=args.scales,
                          flip=args.flip, batch_tiles=args.batch_tiles, amp=args.amp, workers=args.workers,
                          progress=sys.stderr.isatty(), writer=writer, note=print)
    finally:
        if writer is not None:
            writer.close()
    folder = write_results(result, args.output_dir, settings)
    if result.miou is not None:
        print(format_table(class_table(result.class_names, result.iou, result.confusion), result.miou), end="")
        print(f"meanIU {result.miou:.4f} over {result.num_labelled} labelled images ({folder / 'result.txt'})")
    else:
        print(f"no labels in {args.data_list}: predictions only")
    if writer is not None:
        print(f"predictions ({', '.join(save_pred)}) in {args.output_dir}")
    print(f"{result.num_images} images in {result.seconds:.1f} s: {result.images_per_s:.3f} images/s")
    return 0
