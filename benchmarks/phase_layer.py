"""CPU bf16 inference with layer4 in the phase layout and the int16 stem pooling, against without.

    python benchmarks/phase_layer.py --arch dgcnet_r18 --size 512x1024 --rounds 20

Three copies of the fast model (``optimize_for_inference``) run in one process, alternating within
each round, under bf16 autocast: as built (layer4 on the phase grids, the stem's pooling on int16
bit patterns), with the stem's ``max_pool2d`` back, and with both back. The table gives the median
seconds of the whole forward and of the stem pooling and layer4 alone (forward hooks). On images
whose layer4 grids would be under ``MIN_GRID_SIDE`` (under 223 pixels on a side) layer4 runs
unsplit in every copy.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgcnet.benchmark import calibrate_batchnorm  # noqa: E402
from dgcnet.cli.common import image_size  # noqa: E402
from dgcnet.engine.heap import use_fast_heap  # noqa: E402
from dgcnet.models import build_model, list_models  # noqa: E402
from dgcnet.models.fast import optimize_for_inference  # noqa: E402
from dgcnet.models.packed import PackedPhaseLayer, PackedStemPool  # noqa: E402

PARTS = ("maxpool", "layer4")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="dgcnet_r18", choices=list_models())
    parser.add_argument("--size", type=image_size, default=(512, 1024), help="image size HxW (default: 512x1024)")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (default: 20)")
    parser.add_argument("--threads", type=int, default=2, help="threads (default: 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    heap = use_fast_heap("cpu")
    torch.manual_seed(0)
    model = calibrate_batchnorm(build_model(args.arch), (args.size[0] // 2, args.size[1] // 2))

    built = optimize_for_inference(model)
    if not isinstance(built.model.layer4, PackedPhaseLayer) or not isinstance(built.model.maxpool, PackedStemPool):
        sys.exit("this model's fast copy has no phase layer or stem pool (no oneDNN in this PyTorch build?)")
    plain_pool = optimize_for_inference(model)
    plain_pool.model.maxpool = plain_pool.model.maxpool.pool
    neither = optimize_for_inference(model)
    neither.model.maxpool = neither.model.maxpool.pool
    neither.model.layer4 = nn.Sequential(*neither.model.layer4)
    variants = {"phases, int16 pool": built, "phases": plain_pool, "neither": neither}

    times: dict[tuple[str, str], list[float]] = {}
    for name, net in variants.items():
        for part in ("whole",) + PARTS:
            times[name, part] = []
        for part in PARTS:
            module, key = getattr(net.model, part), (name, part)
            module.register_forward_pre_hook(lambda *_, key=key: times[key].append(-time.perf_counter()))
            module.register_forward_hook(lambda *_, key=key: times[key].__setitem__(-1, times[key][-1] + time.perf_counter()))

    x = torch.randn(1, 3, *args.size, generator=torch.Generator().manual_seed(1))

    def run(net: nn.Module) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x)

    outputs = {name: run(net).float() for name, net in variants.items()}  # warm-up: filters packed
    for key in times:
        times[key].clear()
    for _ in range(args.rounds):
        for name, net in variants.items():
            start = time.perf_counter()
            run(net)
            times[name, "whole"].append(time.perf_counter() - start)

    h, w = args.size
    print(f"{args.arch} {h}x{w} bf16, {args.threads} threads, torch {torch.__version__}, heap: {heap}, "
          f"{args.rounds} rounds alternating, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| variant | whole ms | stem pooling ms | layer4 ms | max difference from 'neither' |")
    print("|---|---|---|---|---|")
    for name in variants:
        ms = [1000 * statistics.median(times[name, part]) for part in ("whole",) + PARTS]
        difference = float((outputs[name] - outputs["neither"]).abs().max())
        print(f"| {name} | {ms[0]:.1f} | {ms[1]:.2f} | {ms[2]:.1f} | {difference:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
