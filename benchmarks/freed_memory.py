"""What keeping large freed blocks (``dgcnet.engine.heap.keep_freed_memory``) is worth on the CPU.

    python benchmarks/freed_memory.py --arch dgcnet_r101 --size 512x1024 --rounds 5

glibc's malloc settings are process-wide and can be changed at any time, so one process times
the eager model and the fast path with glibc's defaults (large blocks mapped fresh, freed memory
returned to the system) and with the blocks kept, alternating the two settings round by round.
Random weights; a synthetic street scene as input. Linux with glibc only.
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgcnet.cli.common import image_size  # noqa: E402
from dgcnet.data.synth import synth_scene  # noqa: E402
from dgcnet.data.transforms import normalize  # noqa: E402
from dgcnet.engine.heap import M_MMAP_MAX, M_TRIM_THRESHOLD, keep_freed_memory  # noqa: E402
from dgcnet.models.fast import optimize_for_inference  # noqa: E402
from dgcnet.models import build_model, list_models  # noqa: E402

# glibc's defaults (malloc.h): at most 65536 mapped blocks, freed memory above 128 KiB at the top
# of the heap returned to the system.
DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD = 65536, 128 * 1024


def glibc_defaults(libc: ctypes.CDLL) -> None:
    libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
    libc.malloc_trim(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="dgcnet_r101", choices=list_models())
    parser.add_argument("--size", type=image_size, default=(512, 1024), help="image size HxW (default: 512x1024)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per setting (default: 5)")
    args = parser.parse_args()
    libc = ctypes.CDLL(None)

    torch.manual_seed(0)
    model = build_model(args.arch).eval()
    variants = {"eager": model, "fast": optimize_for_inference(model)}
    image_np, _ = synth_scene(np.random.default_rng(0), *args.size)
    image = normalize(image_np, model.info.rgb)[None]
    times: dict[tuple[str, str], list[float]] = {}
    with torch.no_grad():
        for net in variants.values():  # warm-up
            net(image)
        for _ in range(args.rounds):
            for setting in ("glibc defaults", "freed blocks kept"):
                if setting == "glibc defaults":
                    glibc_defaults(libc)
                else:
                    keep_freed_memory()
                for name, net in variants.items():
                    start = time.perf_counter()
                    net(image)
                    times.setdefault((name, setting), []).append(time.perf_counter() - start)

    print(f"{args.arch} {args.size[0]}x{args.size[1]}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} rounds per setting\n")
    print("| variant | malloc | fastest s | median s | rounds (s) |")
    print("|---|---|---|---|---|")
    for (name, setting), values in times.items():
        print(f"| {name} | {setting} | {min(values):.2f} | {statistics.median(values):.2f} | "
              f"{' '.join(f'{v:.2f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
