"""Training samples per CPU core: decoding the PNGs vs the prepared store (`dgcnet prepare`), with
crops resized in the loader or on the training device, side by side in one run, crop 832 from
full-size 1024x2048 Cityscapes-style PNGs.

    python benchmarks/loader_throughput.py [--data DIR] [--workers 1] [--iters 40] [--rounds 3]

Without --data, writes 8 synthetic images (`dgcnet synth --size 1024x2048`) to a temporary folder.
Prepares the store (DATA/dgcnet-prepared) if it is not there, then alternates three paths for
--rounds rounds: files (decoding the PNGs, crops resized in the loader: the path without a store),
store (crops resized in the loader: training on the CPU), windows (the store, the loader cutting the
uint8 windows the device resizes: training on a GPU; the resizing is device work, not counted), of `dgcnet.benchmark.data_benchmark` (loader workers as in training) and prints
each round, the medians and the best rounds: samples per CPU core (the workers' own CPU time, so
other work on the machine changes it less than wall time), the CPU time by phase, and the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dgcnet.benchmark import DATA_PHASES, data_benchmark
from dgcnet.data.prepare import prepare
from dgcnet.data.synth import write_synth


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="a dataset with train.txt (default: write 8 synthetic images)")
    p.add_argument("--workers", type=int, default=1, help="loader processes (default: 1; 0: in this process)")
    p.add_argument("--iters", type=int, default=40, help="samples per round and path (default: 40)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, alternating the two paths (default: 3)")
    p.add_argument("--crop", type=int, default=832)
    args = p.parse_args()
    torch.set_num_threads(1)  # --workers 0: one core, as in a loader worker

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        if not (data / "train.txt").exists():
            write_synth(data, train=8, val=0, size=(1024, 2048))
        start = time.process_time()
        prepared = prepare(data, data / "train.txt")
        if prepared.prepared:
            print(f"prepared {prepared.prepared} samples in {time.process_time() - start:.1f} s of CPU time")
        paths = {"files": (None, False), "store": (prepared.store, False), "windows": (prepared.store, True)}
        figures: dict[str, list] = {name: [] for name in paths}
        for round_ in range(args.rounds):
            for name, (source, on_device) in paths.items():
                r = data_benchmark(data, data / "train.txt", workers=args.workers, iters=args.iters,
                                   crop=(args.crop, args.crop), prepared=source, seed=round_,
                                   resize_on_device=on_device)
                figures[name].append(r)
                phases = "  ".join(f"{k} {v:5.1f}" for k, v in r.phase_ms.items())
                print(f"round {round_ + 1} {name:7s} {r.samples_per_core_s:6.1f} samples/s per core, "
                      f"{r.samples_per_s:6.1f} by wall clock; CPU ms/sample {phases}")
        h, w = figures["files"][0].image_size
        print(f"medians ({args.rounds} rounds of {args.iters} samples, crop {args.crop} from {h}x{w}, "
              f"{args.workers} worker(s)):")
        for name, results in figures.items():
            phases = "  ".join(f"{k} {statistics.median(r.phase_ms[k] for r in results):5.1f}" for k in DATA_PHASES)
            print(f"  {name:7s} {statistics.median(r.samples_per_core_s for r in results):6.1f} samples/s per core;"
                  f" CPU ms/sample {phases}")
        for name in ("store", "windows"):
            ratios = [s.samples_per_core_s / f.samples_per_core_s for f, s in zip(figures["files"], figures[name])]
            print(f"  {name} / files per core: {statistics.median(ratios):.1f}x (rounds: "
                  f"{', '.join(f'{x:.1f}' for x in ratios)})")
        # On a busy machine other processes slow memory-bound work most; the best round of each
        # path is the one least disturbed.
        best = {name: max(r.samples_per_core_s for r in results) for name, results in figures.items()}
        print("  best rounds: " + ", ".join(f"{name} {value:.1f}" for name, value in best.items())
              + f" samples/s per core; store {best['store'] / best['files']:.1f}x, windows "
              f"{best['windows'] / best['files']:.1f}x")
        resize = statistics.median(r.resize_ms for r in figures["windows"])
        print(f"  windows resized into crops in this process: {resize:.1f} ms per sample on this CPU "
              "(on a GPU: device work)")
        store = figures["store"][0]
        print(f"  on disk: image files {store.files_bytes / 2**20:.0f} MiB, prepared store "
              f"{store.store_bytes / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
