"""What `dgcnet eval` and `dgcnet predict` share: the inference flags, and loading the model they name."""
from __future__ import annotations

import argparse
import os

from torch import nn

from dgcnet.cli.common import add_dataset_arg, add_device_arg, count, positive_int
from dgcnet.config import AMP_MODES
from dgcnet.data.datasets import resolve_classes
from dgcnet.data.labels import ClassInfo
from dgcnet.data.transforms import MAX_PIXELS, MAX_PIXELS_ENV
from dgcnet.engine.distributed import resolve_device
from dgcnet.engine.inference import MODES, resolve_tile
from dgcnet.engine.predict import parse_formats
from dgcnet.errors import DgcnetError

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
    p.add_argument("--restore-from", required=True, metavar="CKPT",
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
    p.add_argument("--batch-tiles", type=positive_int, default=4,
                   help="sliding-window tiles per forward pass (default: 4)")
    p.add_argument("--amp", choices=AMP_MODES, default="off",
                   help="mixed precision for the forward pass; logits are summed in float32 (default: off)")
    add_device_arg(p)
    p.add_argument("--workers", type=count, default=None,
                   help="image loading processes; 0 loads inline (default: the CPUs less one, at most 16)")
    p.add_argument("--num-classes", type=positive_int, default=None,
                   help="number of classes, only for files that do not record it (default: from the file)")
    add_dataset_arg(p, "the dataset the weights record; for weights that record none, such as the authors' "
                       ".pth, the classes their class count implies")
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="class file (YAML/JSON: names, colours, ignore index, id mapping) of your own data "
                        "(default: the classes the weights record: names, colours, label values)")
    p.add_argument("--max-pixels", type=positive_int, default=None,
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
    classes = resolve_classes(args.dataset, args.classes, default=model.info.classes)
    if classes.num_classes != model.num_classes:
        raise DgcnetError(f"{args.classes or args.dataset}: {classes.num_classes} classes, but the model predicts "
                          f"{model.num_classes}")
    if args.fast:
        from dgcnet.models.fast import optimize_for_inference

        model = optimize_for_inference(model)
    return model, classes


def fast_heap(args: argparse.Namespace) -> str:
    """The fast path on the CPU keeps large freed blocks and uses huge pages (process-wide malloc
    settings, made here explicitly, before the model loads); returns the heap setting to record."""
    from dgcnet.engine.heap import use_fast_heap

    return use_fast_heap(resolve_device(args.device).type) if args.fast else "default"


def describe_tile(args: argparse.Namespace, model: nn.Module) -> tuple[int, int]:
    """The (tile, stride) to run, printed once with where it comes from."""
    tile, stride = resolve_tile(model, args.tile, args.stride)
    if args.mode == "sliding":
        source = "given" if args.tile else f"the model's: training crop {'x'.join(map(str, model.info.crop_size))}"
        print(f"sliding window: tile {tile}, stride {stride} ({source})")
    return tile, stride


def parse_formats_arg(text: str) -> tuple[str, ...]:
    try:
        return parse_formats(text)
    except DgcnetError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
