"""Winograd F(4x4, 3x3) against oneDNN's direct convolution, one 3x3 convolution at a time, fp32 on the CPU.

    python benchmarks/winograd_conv.py
    python benchmarks/winograd_conv.py --profile dgcnet_r101 --size 512x1024

The shapes are DGCNet's at a 512x1024 input (stride 8 from layer2 on): each convolution with
random weights and input, channels-last, the two timed in turn --runs times after two warm-up
runs (fastest time of each; speed-up = median of the per-run ratios), with large
freed blocks kept for reuse as in the fast path (``keep_freed_memory``); relative
errors of both against the float64 result. With --profile, also the operator shares of one
forward of the fast inference path of that model (random weights).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgcnet.cli.common import image_size  # noqa: E402
from dgcnet.engine.heap import keep_freed_memory
from dgcnet.models.fast import optimize_for_inference  # noqa: E402
from dgcnet.models.winograd import (WinogradConv2d, tiled_positions, winograd_conv3x3,  # noqa: E402
                                     winograd_weight)
from dgcnet.models import build_model, list_models  # noqa: E402
from dgcnet.models.complexity import count_flops  # noqa: E402

# (channels, height, width, dilation, where in DGCNet at 512x1024)
SHAPES = [(256, 64, 128, 2, "layer3"), (512, 64, 128, 4, "layer4"), (512, 97, 97, 2, "head-sized, odd size"),
          (128, 64, 128, 1, "layer2"), (64, 128, 256, 1, "layer1 (stays direct)"),
          # Small maps: the fast path runs Winograd only where its tiles hold at most twice the map.
          (512, 33, 65, 4, "layer4 at 256x512"), (512, 17, 33, 4, "layer4 at 128x256 (runs direct)"),
          (256, 17, 33, 2, "layer3 at 128x256"), (256, 9, 17, 2, "layer3 at 64x128 (runs direct)"),
          (512, 65, 129, 16, "r101's last dilation at 512x1024 (runs direct)")]


def paired_ms(first, second, runs: int) -> tuple[float, float, float]:
    """Time two functions in turn, ``runs`` times after two warm-up calls each: the fastest time of
    each (ms) and the median of the per-run ratios first / second (steady when the host's speed drifts)."""
    for _ in range(2):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for function, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            function()
            out.append(time.perf_counter() - start)
    ratio = statistics.median(a / b for a, b in zip(*times))
    return min(times[0]) * 1000, min(times[1]) * 1000, ratio


def relative_error(a: torch.Tensor, exact: torch.Tensor) -> float:
    return ((a.double() - exact).norm() / exact.norm()).item()


def profile_model(arch: str, size: tuple[int, int]) -> None:
    from torch.profiler import profile

    torch.manual_seed(0)
    model = build_model(arch).eval()
    fast = optimize_for_inference(model)
    image = torch.randn(1, 3, *size)
    winograd_flops = []
    hooks = [m.register_forward_hook(lambda m, _, out: winograd_flops.append(2 * out.numel() * m.conv.in_channels * 9))
             for m in fast.modules() if isinstance(m, WinogradConv2d)]
    fast(image)
    for hook in hooks:
        hook.remove()
    share = sum(winograd_flops) / count_flops(model, size)
    print(f"\n{arch}: {len(hooks)} Winograd convolutions, {100 * share:.0f}% of the forward's FLOPs at {size[0]}x{size[1]}")
    with profile() as prof:
        fast(image)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"fast path, one forward: {total / 1e6:.2f} s in operators")
    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]:
        print(f"  {e.key:32s} {100 * e.self_cpu_time_total / total:5.1f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8, help="timed runs per convolution (default: 8)")
    parser.add_argument("--profile", choices=list_models(), default=None, help="also profile this model's fast path")
    parser.add_argument("--size", type=image_size, default=(512, 1024), help="image size for --profile (default: 512x1024)")
    args = parser.parse_args()
    keep_freed_memory()  # as the fast inference path does on the CPU
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| convolution (channels in = out) | positions in tiles / map | direct ms (fastest) | Winograd ms (fastest) "
          "| speed-up (median) | rel. error, direct / Winograd |")
    print("|---|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for channels, height, width, dilation, where in SHAPES:
        x = torch.randn(1, channels, height, width, generator=g).contiguous(memory_format=torch.channels_last)
        weight = (torch.randn(channels, channels, 3, 3, generator=g) / (3 * channels**0.5))
        weight = weight.contiguous(memory_format=torch.channels_last)
        bias = torch.randn(channels, generator=g)
        weight_t = winograd_weight(weight)
        with torch.inference_mode():
            exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=dilation, dilation=dilation)
            direct = F.conv2d(x, weight, bias, padding=dilation, dilation=dilation)
            wino = winograd_conv3x3(x, weight_t, bias, dilation)
            direct_ms, wino_ms, ratio = paired_ms(
                lambda: F.conv2d(x, weight, bias, padding=dilation, dilation=dilation),
                lambda: winograd_conv3x3(x, weight_t, bias, dilation), args.runs)
        padded = tiled_positions(height, width, dilation) / (height * width)
        print(f"| {channels}, {height}x{width}, dilation {dilation} ({where}) | {padded:.2f} | {direct_ms:.1f} | {wino_ms:.1f} | "
              f"{ratio:.2f}x | {relative_error(direct, exact):.1e} / {relative_error(wino, exact):.1e} |")
    if args.profile:
        profile_model(args.profile, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
