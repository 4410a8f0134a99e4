"""`dgcnet benchmark`: time training steps or inference passes with random weights, or the
loading of training samples."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch

from dgcnet.benchmark import DataBenchmarkResult, benchmark, data_benchmark
from dgcnet.cli.common import CommandAdder, add_dataset_arg, add_device_arg, count, image_size, positive_int
from dgcnet.config import AMP_MODES, RESIZE_ON, resize_on_device
from dgcnet.data import default_workers
from dgcnet.data.datasets import resolve_classes
from dgcnet.data.store import DEFAULT_NAME, find_store
from dgcnet.engine.distributed import resolve_device
from dgcnet.errors import DgcnetError
from dgcnet.models import list_models


def add_parser(subparsers: CommandAdder) -> None:
    p = subparsers.add_parser(
        "benchmark",
        description="Time a model with random weights on random inputs: median/min/max ms per step "
                    "after warm-up, images/s, peak memory, achieved TFLOP/s (from the FLOP counter) and, "
                    "on known GPUs or with --peak-tflops, the share of peak. Train mode times forward + "
                    "loss + backward + SGD step; infer mode times the fast inference path "
                    "(BatchNorm folded into the convolutions, no autograd). Data mode loads training "
                    "samples of --data-list as training does (recipe augmentation, --workers loader "
                    "processes) and prints samples/s, CPU time per sample split into read, decode, "
                    "augment and collate, and the prepared store's size when one is used.")
    p.add_argument("--arch", default="dgcnet_r101", choices=list_models(), help="architecture (default: dgcnet_r101)")
    p.add_argument("--size", type=image_size, default=(832, 832), help="input size HxW (default: 832x832)")
    p.add_argument("--mode", choices=("train", "infer", "data"), default="infer",
                   help="what to time: training steps, inference passes, or training data loading (default: infer)")
    p.add_argument("--batch-size", "--batch", dest="batch", type=positive_int, default=1,
                   help="images per step, or per loaded batch (default: 1)")
    add_device_arg(p)
    p.add_argument("--amp", choices=AMP_MODES, default="off",
                   help="mixed precision: autocast to bf16 or fp16 (fp16 training adds a gradient scaler) "
                        "(default: off)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout for weights and inputs")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (train: the model and the loss as one graph; warm-up includes compiling)")
    p.add_argument("--warmup", type=count, default=3, help="untimed steps before timing (default: 3)")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="timed steps (default: 10), or loaded batches in data mode (default: 50)")
    p.add_argument("--num-classes", type=positive_int, default=19, help="number of classes (default: 19)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak TFLOP/s of the device for the share-of-peak column (default: the datasheet "
                        "value for H100/H200/A100/V100, none otherwise)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    data = p.add_argument_group("data mode")
    data.add_argument("--data-dir", type=Path, help="folder the list's paths are relative to")
    data.add_argument("--data-list", type=Path, help="training list (image<TAB>label per line)")
    data.add_argument("--workers", type=count, default=None,
                      help="loader processes; 0 loads in this process with one thread (default: as training, "
                           "the CPUs less one, at most 16)")
    data.add_argument("--crop", type=image_size, default=(832, 832), help="training crop HxW (default: 832x832)")
    data.add_argument("--prepared", metavar="DIR|auto|none", default="auto",
                      help=f"read this `dgcnet prepare` store (default auto: DATA_DIR/{DEFAULT_NAME} when it "
                           "exists; none: decode the image files)")
    data.add_argument("--resize-on", dest="resize_on", choices=RESIZE_ON, default="auto",
                      help="where crops are resized, as train's --resize-on: loader (in the workers) or device "
                           "(workers cut uint8 windows; this process finishes them, timed apart as device work) "
                           "(default auto: device when --device is a GPU, else loader)")
    data.add_argument("--compare", action="store_true",
                      help="time today's path (decoding the image files, crops resized in the loader) and then "
                           "the prepared store with --resize-on, one after the other, and print the ratio of "
                           "samples per CPU core")
    add_dataset_arg(data, "cityscapes")
    data.add_argument("--classes", type=Path, help="class file of your own data (default: the dataset's classes)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.mode == "data":
        return run_data(args)
    device = str(resolve_device(args.device))
    r = benchmark(args.arch, args.size, args.mode, batch=args.batch, device=device, amp=args.amp,
                  channels_last=args.channels_last, compile=args.compile, warmup=args.warmup,
                  iters=args.iters or 10, peak_tflops=args.peak_tflops, num_classes=args.num_classes)
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


def run_data(args: argparse.Namespace) -> int:
    if args.data_dir is None or args.data_list is None:
        raise DgcnetError("--mode data needs --data-dir and --data-list")
    workers = default_workers() if args.workers is None else args.workers
    if workers == 0:  # one core's figures, as in a loader worker
        torch.set_num_threads(1)
    classes = resolve_classes(args.dataset, args.classes)
    prepared = None if args.prepared.lower() == "none" else args.prepared
    on_device = resize_on_device(args.resize_on, resolve_device(args.device).type)
    if args.compare:
        store = find_store(args.data_dir, prepared)
        if store is None:
            raise DgcnetError(f"--compare needs a prepared store: none at {args.data_dir / DEFAULT_NAME}; "
                              f"run `dgcnet prepare --data-dir {args.data_dir} --data-list {args.data_list}`")
        runs = [(None, False), (store, on_device)]
    else:
        runs = [(prepared, on_device)]
    results = [data_benchmark(args.data_dir, args.data_list, workers=workers, iters=args.iters or 50,
                              batch=args.batch, crop=args.crop, prepared=source, classes=classes,
                              resize_on_device=device_resize)
               for source, device_resize in runs]
    if args.json:
        print(json.dumps([asdict(r) for r in results] if args.compare else asdict(results[0])))
        return 0
    for r in results:
        _print_data(r)
    if args.compare:
        files, store = results
        print(f"prepared store vs today's path: {store.samples_per_core_s / files.samples_per_core_s:.1f}x the "
              f"samples per CPU core, {store.samples_per_s / files.samples_per_s:.1f}x by wall clock")
    return 0


def _print_data(r: DataBenchmarkResult) -> None:
    (h, w), (ch, cw) = r.image_size, r.crop
    print(f"training samples from {r.source}")
    print("  crops resized " + ("in the loader workers" if r.resize_ms is None else
                                "on the training device: the loader cuts uint8 windows; finishing them took "
                                f"{r.resize_ms:.1f} ms per sample on this process's CPU (device work, not counted)"))
    print(f"  {r.samples} samples (batches of {r.batch}, crop {ch}x{cw} from {h}x{w} images), {r.workers} "
          f"loader worker(s)" + ("" if r.workers else " (in this process)"))
    workers = max(1, r.workers)
    print(f"  samples/s         {r.samples_per_s:.1f} by wall clock, {r.samples_per_s / workers:.1f} per worker")
    print(f"  per CPU core      {r.samples_per_core_s:.1f} samples/s ({r.cpu_ms_per_sample:.1f} ms CPU time per sample)")
    print("  CPU ms/sample     " + "  ".join(f"{name} {ms:.1f}" for name, ms in r.phase_ms.items()))
    print(f"  on disk           image files {r.files_bytes / 2**20:,.0f} MiB" +
          ("" if r.store_bytes is None else f", prepared store {r.store_bytes / 2**20:,.0f} MiB"))
