"""`dgcnet convert`: weights from any supported format to any other."""
from __future__ import annotations

import argparse

from dgcnet.formats.convert import TARGETS, convert
from dgcnet.io import check_output_dir, check_output_file
from dgcnet.models import list_models
from dgcnet.cli.common import CommandAdder
from dgcnet.errors import DgcnetError


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "convert",
        description="Convert DGCNet weights. The format of SRC is recognised from its content: the authors' "
                    ".pth (full model, or the ImageNet deep-stem backbone with fc.*), a dgcnet training "
                    "checkpoint, a safetensors file, or a MindSpore .ckpt (bare or saved by the port's "
                    "train.py). Prints what was converted, skipped, missing and unexpected; fails on "
                    "shape mismatches without writing DST.")
    p.add_argument("src", metavar="SRC",
                   help="weights to read: a file, an http(s) URL (downloaded once into the torch hub cache; "
                        "#sha256=HEX pins it), a Hugging Face folder or hf://OWNER/NAME")
    p.add_argument("dst", metavar="DST", help="file to write (--to hf: a folder, missing or empty)")
    p.add_argument("--to", choices=TARGETS + ("hf",), default="dgcnet",
                   help="output format: dgcnet = safetensors with metadata (arch, classes, normalisation; "
                        "what dgcnet.load_model and torch.hub read, needs a complete model), safetensors = "
                        "plain tensors, mindspore = .ckpt with the port's names, pth = plain PyTorch state "
                        "dict as the authors' code loads it, hf = a Hugging Face model folder (model.safetensors "
                        "in the dgcnet format, config.json, README.md model card), ready to upload (default: dgcnet)")
    p.add_argument("--arch", choices=list_models(), default=None,
                   help="architecture (default: inferred from the tensor names and shapes)")
    p.add_argument("--strict", action="store_true", help="fail when names are missing or unexpected")
    p.add_argument("--prefix", default="",
                   help="name prefix for --to mindspore: 'net.' for the port's train.py --restore_from, which "
                        "loads nothing without it (its eval.py takes either); default: none, the bare network names")
    p.add_argument("--crc", action="store_true",
                   help="with --to mindspore: append the CRC-32 trailer (MindSpore's crc_check=True)")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists (never SRC)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.to == "hf":
        from dgcnet.formats.hf import convert_to_hf

        if args.prefix or args.crc:
            raise DgcnetError("--prefix and --crc only apply to --to mindspore")
        check_output_dir(args.dst, "DST")
        report = convert_to_hf(args.src, args.dst, arch=args.arch, strict=args.strict)
    else:
        check_output_file(args.dst, "DST", args.overwrite, inputs=[args.src])
        report = convert(args.src, args.dst, args.to, arch=args.arch, strict=args.strict, prefix=args.prefix,
                         crc=args.crc)
    for line in report.lines():
        print(line)
    print(f"wrote          {args.dst} ({args.to})")
    return 0
