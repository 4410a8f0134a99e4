"""What huge pages under the heap (``dgcnet.engine.heap.use_huge_pages``) are worth on the CPU.

    python benchmarks/huge_pages.py --arch dgcnet_r101 --size 512x1024 --pairs 3

The setting is process-wide and cannot be undone, so each measurement is a process of its own:
both settings keep large freed blocks (as the fast path does), one of them also reserves the
heap with huge pages before the model is built. The processes alternate, pair by pair, so load
from elsewhere hits both alike. Each process runs the fast inference copy (random weights) on
one synthetic image, warms up twice and reports the median of --passes timed passes, and how
much of its memory ended up in huge pages (``AnonHugePages``).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = ("keep freed blocks", "keep freed blocks, huge pages")


def measure(args: argparse.Namespace) -> None:
    """One process: set the heap, build, warm up, time; prints 'median_s huge_kib'."""
    import numpy as np
    import torch

    from dgcnet.data.synth import synth_scene
    from dgcnet.data.transforms import normalize
    from dgcnet.engine.heap import keep_freed_memory, use_huge_pages
    from dgcnet.models import build_model
    from dgcnet.models.fast import optimize_for_inference

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    if args.child == SETTINGS[1] and not use_huge_pages():
        raise SystemExit("this kernel gives no transparent huge pages on request")
    torch.manual_seed(0)
    model = build_model(args.arch).eval()
    fast = optimize_for_inference(model)
    image, _ = synth_scene(np.random.default_rng(0), *args.size)
    x = normalize(image, model.info.rgb)[None]
    times = []
    with torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext():
        for i in range(2 + args.passes):
            start = time.perf_counter()
            fast(x)
            if i >= 2:
                times.append(time.perf_counter() - start)
    with open("/proc/self/smaps_rollup") as rollup:
        huge = next((int(line.split()[1]) for line in rollup if line.startswith("AnonHugePages:")), 0)
    print(f"{statistics.median(times)} {huge}")


def main() -> int:
    from dgcnet.cli.common import image_size
    from dgcnet.models import list_models

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="dgcnet_r101", choices=list_models())
    parser.add_argument("--size", type=image_size, default=(512, 1024), help="image size HxW (default: 512x1024)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                        help="bf16 (autocast) or fp32 (default: bf16)")
    parser.add_argument("--pairs", type=int, default=3, help="processes per setting, alternating (default: 3)")
    parser.add_argument("--passes", type=int, default=6, help="timed passes per process (default: 6)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args)
        return 0
    results: dict[str, list[tuple[float, int]]] = {setting: [] for setting in SETTINGS}
    for _ in range(args.pairs):
        for setting in SETTINGS:
            command = [sys.executable, __file__, "--arch", args.arch, "--size", "x".join(map(str, args.size)),
                       "--precision", args.precision, "--passes", str(args.passes), "--threads", str(args.threads),
                       "--child", setting]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            median, huge = done.stdout.split()[-2:]
            results[setting].append((float(median), int(huge)))
    h, w = args.size
    print(f"{args.arch} {h}x{w} {args.precision}, {args.threads} threads, {args.pairs} processes per setting "
          f"alternating, {args.passes} timed passes each, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| heap | median of the processes' medians, s | each process, s | huge pages afterwards, MiB |")
    print("|---|---|---|---|")
    for setting, rows in results.items():
        medians = [m for m, _ in rows]
        print(f"| {setting} | {statistics.median(medians):.3f} | {' '.join(f'{m:.3f}' for m in medians)} | "
              f"{statistics.median(k for _, k in rows) / 1024:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
