"""`dgcnet export`: an ONNX graph of a trained model, checked against PyTorch with onnxruntime."""
from __future__ import annotations

import argparse

from dgcnet.cli.common import CommandAdder, image_size
from dgcnet.errors import DgcnetError
from dgcnet.io import check_output_file
from dgcnet.formats.load import load_model
from dgcnet.formats.onnx import OPSET, check_onnx, export_onnx

TOLERANCE = 1e-4


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "export",
        description=f"Export to ONNX (opset {OPSET}; needs the 'onnx' extra). The graph takes 'image', a "
                    "normalised float32 NCHW tensor, and returns 'logits' at stride 8.")
    p.add_argument("--restore-from", required=True, metavar="CKPT",
                   help="weights in any format dgcnet convert reads, also by http(s) URL, Hugging Face folder "
                        "or hf://OWNER/NAME (or an arch name for random weights)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--size", type=image_size, default=(832, 832),
                   help="input size HxW traced (and the only size unless --dynamic) (default: 832x832)")
    p.add_argument("--dynamic", action="store_true", help="allow any batch size, height and width")
    p.add_argument("--check", action="store_true",
                   help=f"run the graph with onnxruntime and fail unless the logits match PyTorch within "
                        f"{TOLERANCE:g} relative")
    p.add_argument("--overwrite", action="store_true", help="replace the ONNX file if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.onnx, "--onnx", args.overwrite, inputs=[args.restore_from])
    model = load_model(args.restore_from)
    export_onnx(model, args.onnx, args.size, dynamic=args.dynamic)
    print(f"wrote {args.onnx} ({model.arch}, {model.num_classes} classes, "
          f"{'dynamic' if args.dynamic else 'static'} input {args.size[0]}x{args.size[1]}, opset {OPSET})")
    if args.check:
        error = check_onnx(model, args.onnx, args.size)
        if error > TOLERANCE:
            raise DgcnetError(f"{args.onnx}: onnxruntime logits differ from PyTorch by {error:.2e} relative "
                              f"(limit {TOLERANCE:g})")
        print(f"onnxruntime check passed: max relative logit difference {error:.2e}")
    return 0
