"""`dgcnet export`: an ONNX graph (or a torch.export program) of a trained model, checked against PyTorch."""
from __future__ import annotations

import argparse

from dgcnet.cli.common import CommandAdder, image_size
from dgcnet.data.datasets import describe_classes
from dgcnet.errors import DgcnetError
from dgcnet.io import check_output_file
from dgcnet.formats.load import load_model
from dgcnet.formats.onnx import (OPSET, check_onnx, export_onnx, export_onnx_end_to_end, export_pt2,
                                 label_agreement, onnx_runner, pt2_runner)

TOLERANCE = 1e-4
MIN_AGREEMENT = 0.999  # end-to-end graphs: share of pixels whose label equals dgcnet.predict's


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "export",
        description=f"Export to ONNX (opset {OPSET}; needs the 'onnx' extra) and/or a torch.export program. "
                    "By default the ONNX graph takes 'image', a normalised float32 NCHW tensor, and returns "
                    "'logits' at stride 8. With --end-to-end (always for --pt2) it takes 'image', uint8 "
                    "(N, H, W, 3) RGB of any batch and size, and returns 'labels', uint8 (N, H, W) train ids "
                    "at the input's resolution: normalisation, the whole image in one pass, upsampling and "
                    "argmax are in the graph, and the class names, palette and normalisation are its metadata.")
    p.add_argument("--restore-from", required=True, metavar="CKPT",
                   help="weights in any format dgcnet convert reads, also by http(s) URL, Hugging Face folder "
                        "or hf://OWNER/NAME (or an arch name for random weights)")
    p.add_argument("--onnx", metavar="OUT.onnx", help="ONNX file to write (an existing file only with --overwrite)")
    p.add_argument("--pt2", metavar="OUT.pt2", help="torch.export program to write (end to end; an existing file only with --overwrite)")
    p.add_argument("--end-to-end", action="store_true",
                   help="ONNX graph from uint8 images to labels (see above) instead of normalised input to logits")
    p.add_argument("--size", type=image_size, default=None,
                   help="input size HxW traced, and the first size --check runs (and the only size of a plain "
                        "graph unless --dynamic) (default: the model's training crop, 832x832 for the "
                        "published weights)")
    p.add_argument("--dynamic", action="store_true",
                   help="plain graph: allow any batch size, height and width (end-to-end graphs always do)")
    p.add_argument("--check", action="store_true",
                   help=f"plain graph: run it with onnxruntime and fail unless the logits match PyTorch within "
                        f"{TOLERANCE:g} relative; end to end: run it (onnxruntime; torch.export.load for .pt2) on "
                        f"images of two sizes and fail below {MIN_AGREEMENT:.1%} of pixels labelled as "
                        f"dgcnet.predict labels them")
    p.add_argument("--overwrite", action="store_true", help="replace the output files if they exist")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.onnx and not args.pt2:
        raise DgcnetError("nothing to write: give --onnx OUT.onnx and/or --pt2 OUT.pt2")
    if args.onnx:
        check_output_file(args.onnx, "--onnx", args.overwrite, inputs=[args.restore_from])
    if args.pt2:
        check_output_file(args.pt2, "--pt2", args.overwrite, inputs=[args.restore_from])
    model = load_model(args.restore_from)
    info = model.info
    facts = f"{info.arch}, {describe_classes(info.classes)}"
    size = args.size or info.crop_size
    shape = f"{size[0]}x{size[1]}"
    if args.onnx and args.end_to_end:
        export_onnx_end_to_end(model, args.onnx, size)
        print(f"wrote {args.onnx} ({facts}, end to end: uint8 images of any "
              f"batch and size -> labels, opset {OPSET})")
        if args.check:
            _check_labels(model, args.onnx, onnx_runner(args.onnx), size, "onnxruntime")
    elif args.onnx:
        export_onnx(model, args.onnx, size, dynamic=args.dynamic)
        print(f"wrote {args.onnx} ({facts}, "
              f"{'dynamic' if args.dynamic else 'static'} input {shape}, opset {OPSET})")
        if args.check:
            error = check_onnx(model, args.onnx, size)
            if error > TOLERANCE:
                raise DgcnetError(f"{args.onnx}: onnxruntime logits differ from PyTorch by {error:.2e} relative "
                                  f"(limit {TOLERANCE:g})")
            print(f"onnxruntime check passed: max relative logit difference {error:.2e}")
    if args.pt2:
        export_pt2(model, args.pt2, size)
        print(f"wrote {args.pt2} ({facts}, torch.export, end to end)")
        if args.check:
            _check_labels(model, args.pt2, pt2_runner(args.pt2), size, "torch.export.load")
    return 0


def _check_labels(model, path: str, runner, size: tuple[int, int], what: str) -> None:
    agreement = label_agreement(model, runner, size, path)
    if agreement < MIN_AGREEMENT:
        raise DgcnetError(f"{path}: {what} labels agree with dgcnet.predict on only {agreement:.3%} of pixels "
                          f"(limit {MIN_AGREEMENT:.1%})")
    print(f"{what} check passed: labels agree with dgcnet.predict on {agreement:.3%} of pixels "
          f"(worst of two image sizes)")
