"""Training-loader throughput of one worker: SegmentationDataset(train=True)[i] at crop 832 from
full-size 1024x2048 Cityscapes-style PNGs (made with `dgcnet synth --size 1024x2048`).

    python benchmarks/loader_throughput.py [--data DIR] [--samples 40]

Prints samples/s for one worker (one thread, as in a DataLoader worker), by process CPU time and
by wall time, and where the CPU time goes (PNG decoding of image and label, label-id mapping,
augmentation); then whole images/s as evaluation loads them (no crop, the full image normalised).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dgcnet.data import SegmentationDataset
from dgcnet.data.synth import write_synth
from dgcnet.data.transforms import read_image, read_label


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="a dataset with train.txt (default: write 8 synthetic images)")
    p.add_argument("--samples", type=int, default=40, help="samples to time")
    p.add_argument("--crop", type=int, default=832)
    args = p.parse_args()
    torch.set_num_threads(1)  # a DataLoader worker runs single-threaded

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        if not (data / "train.txt").exists():
            write_synth(data, train=8, val=0, size=(1024, 2048))
        dataset = SegmentationDataset(data, data / "train.txt", train=True, crop_size=(args.crop, args.crop))
        dataset[0]  # warm up
        start, cpu_start = time.perf_counter(), time.process_time()
        for i in range(args.samples):
            dataset.set_epoch(i // len(dataset))
            dataset[i % len(dataset)]
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start

        parts = {"decode image": 0.0, "decode label": 0.0, "map label ids": 0.0, "augment": 0.0}
        for i in range(args.samples):
            s = dataset.samples[i % len(dataset)]
            t0 = time.process_time()
            image = read_image(s.image)
            t1 = time.process_time()
            raw = read_label(s.label)
            t2 = time.process_time()
            label = dataset.classes.to_train_ids(raw)
            t3 = time.process_time()
            dataset.augment(image, label, np.random.default_rng([0, 0, i]))
            t4 = time.process_time()
            for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key] += seconds
        h, w = image.shape[:2]
        # CPU time is what one worker costs on an otherwise idle core; wall time includes waiting
        # for the CPU when other processes compete for it.
        print(f"{args.samples / cpu:.1f} samples/s per worker by CPU time, {args.samples / wall:.1f} by wall time "
              f"(crop {args.crop}, images {h}x{w}, {args.samples} samples)")
        for key, seconds in parts.items():
            print(f"  {key:14s} {1000 * seconds / args.samples:7.1f} ms/sample (CPU time)")

        # Evaluation and prediction load whole images: decode, map ids, normalise the full image.
        whole = SegmentationDataset(data, data / "train.txt", train=False)
        cpu_start = time.process_time()
        for i in range(args.samples):
            whole[i % len(whole)]
        cpu = time.process_time() - cpu_start
        print(f"{args.samples / cpu:.1f} whole images/s per worker by CPU time (evaluation loading, {h}x{w})")


if __name__ == "__main__":
    main()
