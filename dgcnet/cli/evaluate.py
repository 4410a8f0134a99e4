"""`dgcnet eval`: mIoU of a checkpoint on a data list, by the protocol the model was trained for."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from torch import nn

from dgcnet.cli.common import CommandAdder, add_device_arg, count, positive_int
from dgcnet.config import AMP_MODES
from dgcnet.data.cityscapes import SegmentationDataset, read_list
from dgcnet.data.classes import load_class_file
from dgcnet.data.labels import ClassInfo
from dgcnet.data.transforms import MAX_PIXELS, MAX_PIXELS_ENV
from dgcnet.engine.distributed import resolve_device
from dgcnet.engine.evaluate import RESULT_FILES, evaluate, write_results
from dgcnet.engine.inference import MODES, resolve_tile
from dgcnet.engine.predict import FORMAT_DIRS, PredictionWriter, output_names, parse_formats, prediction_path
from dgcnet.errors import DgcnetError
from dgcnet.io import check_new_outputs, check_output_dir
from dgcnet.metrics import class_table, format_table


MAX_SCALE = 4.0


def scales_list(text: str) -> tuple[float, ...]:
    """'0.75,1.0,1.25' -> (0.75, 1.0, 1.25)."""
    try:
        scales = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        scales = ()
    # Above 4, a 2048x1024 image becomes 8192x4096: tens of GB of activations.
    if not scales or not all(0 < s <= MAX_SCALE for s in scales):  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected numbers in (0, {MAX_SCALE:g}] like 0.75,1.0,1.25, got {text!r}")
    return scales


def add_inference_args(p: argparse.ArgumentParser) -> None:
    """The flags eval and predict share: checkpoint, inference mode, device."""
    p.add_argument("--restore-from", "--restore_from", dest="restore_from", required=True, metavar="CKPT",
                   help="weights: released .safetensors, training checkpoint, the authors' .pth or a "
                        "MindSpore .ckpt; or an http(s) URL of one (downloaded once into the torch hub cache, "
                        "#sha256=HEX pins it), a Hugging Face folder or hf://OWNER/NAME")
    p.add_argument("--mode", choices=MODES, default="sliding",
                   help="sliding: tiles of --tile at --stride, logits averaged (the protocol; an image no "
                        "larger than the tile runs whole); whole: the full image in one pass (default: sliding)")
    p.add_argument("--tile", type=positive_int, default=None,
                   help="sliding-window tile size (default: the model's, its training crop: 832 for the "
                        "published weights)")
    p.add_argument("--stride", type=positive_int, default=None,
                   help="sliding-window stride (default: the model's with its tile, else ceil(2/3 * tile); "
                        "555 for 832)")
    p.add_argument("--scales", type=scales_list, default=(1.0,),
                   help="comma-separated image scales whose logits are summed, e.g. 0.75,1.0,1.25 (default: 1.0)")
    p.add_argument("--flip", action="store_true", help="also run the mirrored image and average the logits")
    p.add_argument("--batch-tiles", "--batch_tiles", dest="batch_tiles", type=positive_int, default=4,
                   help="sliding-window tiles per forward pass (default: 4)")
    p.add_argument("--amp", choices=AMP_MODES, default="off",
                   help="mixed precision for the forward pass; logits are summed in float32 (default: off)")
    add_device_arg(p)
    p.add_argument("--workers", type=count, default=None,
                   help="image loading processes; 0 loads inline (default: the CPUs less one, at most 16)")
    p.add_argument("--num-classes", "--num_classes", dest="num_classes", type=positive_int, default=None,
                   help="number of classes, only for files that do not record it (default: from the file)")
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="class file (YAML/JSON: names, colours, ignore index, id mapping) of your own data "
                        "(default: the classes the weights record: names, colours, label ids)")
    p.add_argument("--max-pixels", "--max_pixels", dest="max_pixels", type=positive_int, default=None,
                   help=f"refuse images above this many pixels, before decoding them (default: "
                        f"${MAX_PIXELS_ENV} or {MAX_PIXELS:,} = 8192x8192)")
    p.add_argument("--no-fast", dest="fast", action="store_false",
                   help="run the plain model instead of the fast copy (BatchNorm folded, channels-last, "
                        "Winograd 3x3 convolutions on the CPU; same logits within 1e-4 relative)")


def load_for_inference(args: argparse.Namespace) -> tuple[nn.Module, ClassInfo]:
    """The model of ``--restore-from`` on its device (made fast unless --no-fast) and its classes."""
    from dgcnet.formats.load import load_model

    if args.max_pixels is not None:  # the environment carries it to the loader processes
        os.environ[MAX_PIXELS_ENV] = str(args.max_pixels)
    device = resolve_device(args.device)
    model = load_model(args.restore_from, device=device, num_classes=args.num_classes)
    classes = load_class_file(args.classes) if args.classes else model.info.classes
    if classes.num_classes != model.num_classes:
        raise DgcnetError(f"{args.classes}: {classes.num_classes} classes, but the model predicts {model.num_classes}")
    if args.fast:
        from dgcnet.models.fast import optimize_for_inference

        model = optimize_for_inference(model)
    return model, classes


def fast_heap(args: argparse.Namespace, model: nn.Module) -> str:
    """The fast path on the CPU keeps large freed blocks (a process-wide malloc setting, made here
    explicitly); returns the heap setting to record."""
    from dgcnet.engine.heap import keep_freed_memory

    if args.fast and next(model.parameters()).device.type == "cpu" and keep_freed_memory():
        return "keep freed blocks"
    return "default"


def describe_tile(args: argparse.Namespace, model: nn.Module) -> tuple[int, int]:
    """The (tile, stride) to run, printed once with where it comes from."""
    tile, stride = resolve_tile(model, args.tile, args.stride)
    if args.mode == "sliding":
        source = "given" if args.tile else f"the model's: training crop {'x'.join(map(str, model.info.crop_size))}"
        print(f"sliding window: tile {tile}, stride {stride} ({source})")
    return tile, stride


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "eval",
        description="Evaluate a checkpoint on a data list by the protocol it was trained for (full images, "
                    "sliding window of the training crop at 2/3 of it, logits averaged, single scale, no flip: "
                    "832 at stride 555 for the published weights; images no larger than the tile run whole) and "
                    "write OUTPUT/result/: result.txt ({\"meanIU\", \"IU_array\"}), per_class.md/.csv, "
                    "confusion.npy/.png and summary.json. A list without labels (test.txt) only predicts: labelIds PNGs unless --save-pred says otherwise.")
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", required=True, help="dataset root folder")
    p.add_argument("--data-list", "--data_list", dest="data_list", required=True,
                   help="data list: 'image<TAB>label' per line relative to --data-dir (label optional)")
    p.add_argument("--output-dir", "--output_dir", dest="output_dir", default="eval_output",
                   help="output folder (default: ./eval_output)")
    p.add_argument("--save-pred", "--save_pred", dest="save_pred", type=parse_formats_arg, default=(),
                   help="also write predictions, any of: " + ", ".join(FORMAT_DIRS) + " (comma-separated); "
                        "labelids are the Cityscapes test-server PNGs, in OUTPUT/labelIds/")
    p.add_argument("--overwrite", action="store_true",
                   help="replace result and prediction files an earlier run left in the output folder "
                        "(inputs are never replaced)")
    add_inference_args(p)
    p.set_defaults(run=run)


def parse_formats_arg(text: str) -> tuple[str, ...]:
    try:
        return parse_formats(text)
    except DgcnetError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
    model, classes = load_for_inference(args)
    dataset = SegmentationDataset(args.data_dir, args.data_list, classes=classes, train=False, rgb=model.info.rgb)
    tile, stride = describe_tile(args, model)
    settings = {"restore_from": str(args.restore_from), "data_list": str(args.data_list), "mode": args.mode,
                "tile": tile, "stride": stride, "scales": list(args.scales), "flip": args.flip,
                "amp": args.amp, "device": str(next(model.parameters()).device), "fast": args.fast,
                "heap": fast_heap(args, model)}
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
