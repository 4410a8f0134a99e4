"""What the head's bf16 paths (``PackedDualGCNHead`` in ``dgcnet/models/packed.py``) are worth.

    python benchmarks/packed_head.py --arch dgcnet_r101 --size 512x1024 --rounds 8

Two timings, each alternating its two variants round by round in one process, in bf16 on the
CPU, with the heap the CLI sets for the fast path:
  convolutions   the head's 3x3 convolutions on their own, as one packed convolution and as
                 pieces of 256 input channels summed into one output (slicing included)
  model          the fast copy as built, against the same copy whose head is packed like the
                 rest of the model (every convolution packed, the concatenations copied)
Random weights: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgcnet.cli.common import image_size  # noqa: E402
from dgcnet.data.synth import synth_scene  # noqa: E402
from dgcnet.data.transforms import normalize  # noqa: E402
from dgcnet.engine.heap import use_fast_heap  # noqa: E402
from dgcnet.models import build_model, list_models  # noqa: E402
from dgcnet.models.fast import fold_batchnorm, optimize_for_inference  # noqa: E402
from dgcnet.models.packed import PackedConcatConv2d, PackedConv2d, use_packed_convs  # noqa: E402


def alternate(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each variant, after one warm-up call each, variants alternating."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for run in variants.values():
            run()
        for _ in range(rounds):
            for name, run in variants.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="dgcnet_r101", choices=list_models())
    parser.add_argument("--size", type=image_size, default=(512, 1024), help="image size HxW (default: 512x1024)")
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds (default: 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    heap = use_fast_heap("cpu")
    torch.manual_seed(0)
    model = build_model(args.arch).eval()
    image, _ = synth_scene(np.random.default_rng(0), *args.size)
    x = normalize(image, model.info.rgb)[None]
    h, w = args.size
    print(f"{args.arch} {h}x{w} bf16, {args.threads} threads, heap: {heap}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} rounds\n")

    features = (h // 8 + 1, w // 8 + 1)  # the stride-8 map the head sees (ceil-mode pooling)
    print("| convolution (3x3, bf16) | one convolution, ms | pieces of 256 input channels, ms |")
    print("|---|---|---|")
    for conv in (model.head.conva[0], model.head.bottleneck[0]):
        inputs = torch.randn(1, conv.in_channels, *features).relu().contiguous(memory_format=torch.channels_last)
        whole, pieces = PackedConv2d(conv, relu=True), PackedConcatConv2d(conv, relu=True)
        medians = alternate({"whole": lambda: whole(inputs), "pieces": lambda: pieces(inputs)}, args.rounds)
        print(f"| {conv.in_channels} -> {conv.out_channels}, {features[0]}x{features[1]} | "
              f"{1000 * medians['whole']:.1f} | {1000 * medians['pieces']:.1f} |")

    fast = optimize_for_inference(model)
    plain_head = copy.deepcopy(model.head)
    fold_batchnorm(plain_head)
    use_packed_convs(plain_head)
    without = copy.deepcopy(fast)
    without.model.head = plain_head
    medians = alternate({"with": lambda: fast(x), "without": lambda: without(x)}, args.rounds)
    print("\n| fast copy | median s |")
    print("|---|---|")
    print(f"| head packed like the rest | {medians['without']:.3f} |")
    print(f"| head's bf16 paths (as built) | {medians['with']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
