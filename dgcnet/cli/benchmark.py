"""`dgcnet benchmark`: time training steps or inference passes with random weights."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from dgcnet.benchmark import benchmark
from dgcnet.cli.common import CommandAdder, add_device_arg, count, image_size, positive_int
from dgcnet.config import AMP_MODES
from dgcnet.engine.distributed import resolve_device
from dgcnet.models import list_models


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "benchmark",
        description="Time a model with random weights on random inputs: median/min/max ms per step "
                    "after warm-up, images/s, peak memory, achieved TFLOP/s (from the FLOP counter) and, "
                    "on known GPUs or with --peak-tflops, the share of peak. Train mode times forward + "
                    "loss + backward + SGD step; infer mode times the fast inference path "
                    "(BatchNorm folded into the convolutions, no autograd).")
    p.add_argument("--arch", default="dgcnet_r101", choices=list_models(), help="architecture (default: dgcnet_r101)")
    p.add_argument("--size", type=image_size, default=(832, 832), help="input size HxW (default: 832x832)")
    p.add_argument("--mode", choices=("train", "infer"), default="infer", help="what to time (default: infer)")
    p.add_argument("--batch-size", "--batch", dest="batch", type=positive_int, default=1,
                   help="images per step (default: 1)")
    add_device_arg(p)
    p.add_argument("--amp", choices=AMP_MODES, default="off",
                   help="mixed precision: autocast to bf16 or fp16 (fp16 training adds a gradient scaler) "
                        "(default: off)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout for weights and inputs")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (train: the model and the loss as one graph; warm-up includes compiling)")
    p.add_argument("--warmup", type=count, default=3, help="untimed steps before timing (default: 3)")
    p.add_argument("--iters", type=positive_int, default=10, help="timed steps (default: 10)")
    p.add_argument("--num-classes", type=positive_int, default=19, help="number of classes (default: 19)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak TFLOP/s of the device for the share-of-peak column (default: the datasheet "
                        "value for H100/H200/A100/V100, none otherwise)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    device = str(resolve_device(args.device))
    r = benchmark(args.arch, args.size, args.mode, batch=args.batch, device=device, amp=args.amp,
                  channels_last=args.channels_last, compile=args.compile, warmup=args.warmup,
                  iters=args.iters, peak_tflops=args.peak_tflops, num_classes=args.num_classes)
    if args.json:
        print(json.dumps(asdict(r)))
        return 0
    h, w = r.size
    options = [f"amp {r.amp}"] + (["channels-last"] if r.channels_last else []) + (["compiled"] if r.compile else [])
    print(f"{r.arch} {r.mode} {h}x{w} batch {r.batch} on {r.device_name} ({', '.join(options)})")
    print(f"ms per step       median {r.median_ms:.1f}  min {r.min_ms:.1f}  max {r.max_ms:.1f}  "
          f"({r.iters} steps after {r.warmup} warm-up; first step {r.first_step_s:.1f} s)")
    print(f"images/s          {r.images_per_s:.2f}")
    memory = "max allocated" if r.device == "cuda" else "peak RSS of the process"
    print(f"peak memory       {r.peak_memory_mb:,.0f} MiB ({memory})")
    print(f"TFLOP/s achieved  {r.achieved_tflops:.3f} ({r.flops_per_step / 1e12:.3f} TFLOP per step)")
    if r.peak_share is not None:
        print(f"share of peak     {100 * r.peak_share:.1f}% of {r.peak_tflops:g} TFLOP/s")
    return 0
