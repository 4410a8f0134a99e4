"""`dgcnet info`: parameter and FLOP counts of an architecture."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from dgcnet.cli.common import CommandAdder, image_size, positive_int
from dgcnet.models import list_models
from dgcnet.models.complexity import complexity


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser("info",
                              description="Print total parameters, parameters used at inference "
                                          "(without the auxiliary head) and FLOPs (2 x multiply-adds).")
    p.add_argument("--arch", default="dgcnet_r101", choices=list_models(), help="architecture (default: dgcnet_r101)")
    p.add_argument("--size", type=image_size, default=(832, 832), help="input size HxW (default: 832x832)")
    p.add_argument("--num-classes", type=positive_int, default=19, help="number of classes (default: 19)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    c = complexity(args.arch, args.size, args.num_classes)
    if args.json:
        print(json.dumps(asdict(c)))
        return 0
    h, w = c.size
    print(f"arch                     {c.arch} ({args.num_classes} classes)")
    print(f"parameters               {c.params_total:,}")
    print(f"parameters at inference  {c.params_inference:,}")
    print(f"forward FLOPs at {h}x{w}  {c.forward_flops / 1e12:.3f} TFLOP")
    print(f"train FLOPs at {h}x{w}    {c.train_flops / 1e12:.3f} TFLOP (forward + backward, with aux head)")
    return 0
