"""Time training steps or inference passes of a model and relate them to its FLOP count, or the
loading of training samples."""
from __future__ import annotations

import itertools
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from dgcnet.config import AMP_MODES
from dgcnet.data import CITYSCAPES, ClassInfo, SegmentationDataset
from dgcnet.data.dataset import collate
from dgcnet.data.store import store_size
from dgcnet.data.transforms import ImageWindow, WindowBatch
from dgcnet.engine.heap import loader_worker_init
from dgcnet.models.fast import optimize_for_inference
from dgcnet.engine.precision import amp_dtype
from dgcnet.errors import DgcnetError
from dgcnet.losses import dgcnet_loss
from dgcnet.models import build_model
from dgcnet.models.complexity import count_flops


# Dense (no sparsity) datasheet peaks in TFLOP/s: (bf16, fp16, tf32, fp32). Matched against
# torch.cuda.get_device_name() in this order, so the more specific names come first.
GPU_PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.2}),
    ("H100 NVL", {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    ("H100", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("V100", {"fp16": 125.0, "fp32": 15.7}),
)


@dataclass
class BenchmarkResult:
    arch: str
    size: tuple[int, int]
    mode: str
    batch: int
    device: str
    device_name: str
    amp: str
    channels_last: bool
    compile: bool
    warmup: int
    iters: int
    first_step_s: float          # the first warm-up step alone (includes compilation)
    median_ms: float
    min_ms: float
    max_ms: float
    images_per_s: float
    peak_memory_mb: float        # CUDA: max allocated; CPU: peak resident set of the process
    flops_per_step: int
    achieved_tflops: float
    peak_tflops: float | None
    peak_share: float | None     # achieved / peak, 0..1


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model_name()


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def known_peak_tflops(name: str, amp: str) -> float | None:
    """Datasheet dense peak of a known GPU for the precision the convolutions run in."""
    if amp == "off":
        # cuDNN runs fp32 convolutions on the TF32 tensor cores unless that is switched off.
        precision = "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
    else:
        precision = amp
    for key, peaks in GPU_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return peaks.get(precision, peaks.get("fp32"))
    return None


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, size: tuple[int, int], batches: int = 2, batch: int = 2,
                        seed: int = 0) -> nn.Module:
    """Give a randomly initialised model realistic BatchNorm statistics: the running statistics
    become the exact averages over ``batches`` random batches (as after training), so in eval mode
    every BatchNorm normalises its input. Returns the model in eval mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    for _ in range(batches):
        model(torch.randn(batch, 3, *size, device=device, generator=generator))
    return model.eval()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA's max allocated, else the process's peak RSS (NaN where unknown)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource  # Unix only
    except ImportError:
        return float("nan")
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def time_steps(step: Callable[[], object], device: torch.device, warmup: int, iters: int) -> tuple[float, list[float]]:
    """Run ``step`` warmup + iters times; return the first step's seconds and the timed steps' ms."""
    times = []
    first = 0.0
    for i in range(warmup + iters):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        elapsed = time.perf_counter() - start
        if i == 0:
            first = elapsed
        if i >= warmup:
            times.append(elapsed * 1000)
    return first, times


def train_step(model: nn.Module, num_classes: int, batch: int, size: tuple[int, int], device: torch.device,
               amp: str, channels_last: bool, compile: bool) -> Callable[[], None]:
    """One training step on fixed random data: forward, the recipe's loss, backward, SGD."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    generator = torch.Generator(device).manual_seed(0)
    images = torch.randn(batch, 3, *size, device=device, generator=generator)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, num_classes, (batch, *size), device=device, generator=generator)
    dtype = amp_dtype(amp)

    def forward_loss(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            outputs = model(images)
        return dgcnet_loss(outputs, labels)

    if compile:  # one graph for the network and the loss, as the training engine compiles it
        forward_loss = torch.compile(forward_loss)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss(images, labels)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    return step


def _infer_step(model: nn.Module, batch: int, size: tuple[int, int], device: torch.device,
                amp: str) -> Callable[[], None]:
    images = torch.randn(batch, 3, *size, device=device, generator=torch.Generator(device).manual_seed(0))
    dtype = amp_dtype(amp)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            model(images)

    return step


def benchmark(arch: str = "dgcnet_r101", size: tuple[int, int] = (832, 832), mode: str = "infer",
              batch: int = 1, device: str = "cpu", amp: str = "off", channels_last: bool = False,
              compile: bool = False, warmup: int = 3, iters: int = 10, peak_tflops: float | None = None,
              num_classes: int = 19, model: nn.Module | None = None) -> BenchmarkResult:
    """Time ``iters`` steps after ``warmup`` steps of a model with random weights (or ``model``).

    mode "train": forward + the recipe's loss (OHEM CE + 0.4 x aux CE) + backward + SGD step (autocast for bf16/fp16, a gradient scaler
    for fp16). mode "infer": the fast inference path (``optimize_for_inference``: BatchNorm folded,
    no autograd; channels-last and compile as asked).
    """
    if mode not in ("train", "infer"):
        raise DgcnetError(f"mode must be 'train' or 'infer', got {mode!r}")
    if amp not in AMP_MODES:
        raise DgcnetError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if batch < 1 or iters < 1 or warmup < 0:
        raise DgcnetError("batch and iters must be at least 1 and warmup at least 0")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DgcnetError("--device cuda asked for, but CUDA is not available")
    if dev.type == "cuda":
        # Fixed shapes: let cuDNN time its algorithms once and keep the fastest, as training does.
        torch.backends.cudnn.benchmark = True

    # Count FLOPs on the meta device: shapes only, nothing computed.
    with torch.device("meta"):
        meta_model = build_model(arch, num_classes)
    flops = count_flops(meta_model, size, batch, train=mode == "train")

    if model is None:
        model = build_model(arch, num_classes)
    model = model.to(dev)
    if mode == "train":
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        step = train_step(model, model.num_classes, batch, size, dev, amp, channels_last, compile)
    else:
        fast = optimize_for_inference(model, channels_last=channels_last, compile=compile)
        step = _infer_step(fast, batch, size, dev, amp)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    first, times = time_steps(step, dev, warmup, iters)
    median = statistics.median(times)
    name = device_name(dev)
    achieved = flops / (median / 1000) / 1e12
    if peak_tflops is None and dev.type == "cuda":
        peak_tflops = known_peak_tflops(name, amp)
    return BenchmarkResult(
        arch=arch, size=tuple(size), mode=mode, batch=batch, device=dev.type, device_name=name, amp=amp,
        channels_last=channels_last, compile=compile, warmup=warmup, iters=iters, first_step_s=first,
        median_ms=median, min_ms=min(times), max_ms=max(times), images_per_s=batch * 1000 / median,
        peak_memory_mb=_peak_memory_mb(dev), flops_per_step=flops, achieved_tflops=achieved,
        peak_tflops=peak_tflops, peak_share=achieved / peak_tflops if peak_tflops else None,
    )


# --- Training data loading -------------------------------------------------------------------

DATA_PHASES = ("read", "decode", "augment", "collate")


@dataclass
class DataBenchmarkResult:
    source: str                  # where samples come from: the image files or a prepared store
    workers: int
    batch: int
    samples: int                 # timed samples (after each worker's first batch)
    image_size: tuple[int, int]  # of the first sample
    crop: tuple[int, int]
    wall_s: float
    samples_per_s: float         # by wall clock, all workers together
    cpu_ms_per_sample: float     # loader CPU time per sample: read + decode + augment + collate
    phase_ms: dict[str, float]   # CPU ms per sample of each of DATA_PHASES
    files_bytes: int             # the listed image and label files on disk
    store_bytes: int | None      # the prepared store on disk, when one is used
    # Crops resized on the training device: the loader's augment phase only cuts the uint8 source
    # windows, and this is the time per sample of finishing them into crops on this process's CPU
    # (on a GPU it is device time, off the CPU). None: resized in the loader.
    resize_ms: float | None = None

    @property
    def samples_per_core_s(self) -> float:
        """Samples one busy CPU core prepares per second."""
        return 1000.0 / self.cpu_ms_per_sample


class _TimedSamples(torch.utils.data.Dataset):
    """Training samples keyed by (epoch, index), each with the CPU seconds of its read, decode and
    augment (time.process_time: the worker's own CPU, whatever else runs on the machine)."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor | ImageWindow, torch.Tensor, list[float]]:
        epoch, index = key
        dataset = self.dataset
        dataset.set_epoch(epoch)
        t0 = time.process_time()
        raw = dataset.read(index)
        t1 = time.process_time()
        image, label = dataset.decode(index, raw)
        t2 = time.process_time()
        if dataset.resize_on_device:
            window, crop, y = dataset.augment.cut(image, label, dataset.rng(index))
            x = ImageWindow(window, crop)
        else:
            x, y = dataset.augment(image, label, dataset.rng(index))
        t3 = time.process_time()
        return x, y, [t1 - t0, t2 - t1, t3 - t2]


def _timed_collate(items: list[tuple[torch.Tensor | ImageWindow, torch.Tensor, list[float]]]
                   ) -> tuple[torch.Tensor | WindowBatch, list[float]]:
    start = time.process_time()
    images, _, _ = collate([(x, y, 0) for x, y, _ in items])
    seconds = time.process_time() - start
    return images, [sum(item[2][i] for item in items) for i in range(3)] + [seconds]


def data_benchmark(data_dir: str | Path, data_list: str | Path, *, workers: int = 1, iters: int = 50,
                   batch: int = 1, crop: tuple[int, int] = (832, 832), prepared: str | Path | None = "auto",
                   classes: ClassInfo | None = None, seed: int = 0,
                   resize_on_device: bool = False) -> DataBenchmarkResult:
    """Load ``iters`` batches of training samples as training does (recipe augmentation, shuffled,
    ``workers`` DataLoader processes; 0: in this process) after each worker's first batch, and
    return samples/s and the CPU time per sample of each phase. ``prepared`` as for
    SegmentationDataset: "auto" reads DATA_DIR/dgcnet-prepared when it exists, None the files.
    ``resize_on_device`` as in training: the loader sends uint8 windows, and this process
    resizes them (timed apart, as device work)."""
    if workers < 0 or iters < 1 or batch < 1:
        raise DgcnetError("workers must be at least 0, iters and batch at least 1")
    dataset = SegmentationDataset(data_dir, data_list, classes=classes or CITYSCAPES, train=True, crop_size=crop,
                                  seed=seed, prepared=prepared, resize_on_device=resize_on_device)
    shuffle = np.random.default_rng(seed)

    def batch_keys():  # shuffled epochs, as training draws them
        keys = []
        for epoch in itertools.count():
            for index in shuffle.permutation(len(dataset)).tolist():
                keys.append((epoch, index))
                if len(keys) == batch:
                    yield keys
                    keys = []

    loader = torch.utils.data.DataLoader(_TimedSamples(dataset), batch_sampler=batch_keys(), num_workers=workers,
                                         collate_fn=_timed_collate, worker_init_fn=loader_worker_init)
    batches = iter(loader)
    for _ in range(max(1, workers)):  # each worker's first batch includes its start
        next(batches)
    totals = [0.0] * len(DATA_PHASES)
    resize = 0.0
    start = time.perf_counter()
    for _ in range(iters):
        images, seconds = next(batches)
        totals = [t + s for t, s in zip(totals, seconds)]
        if isinstance(images, WindowBatch):
            started = time.process_time()
            images.images(dataset.augment, torch.device("cpu"))
            resize += time.process_time() - started
    wall = time.perf_counter() - start
    del batches
    samples = iters * batch
    files = sum(p.stat().st_size for s in dataset.samples for p in (s.image, s.label) if p is not None)
    height, width = dataset.load(0)[1].shape
    return DataBenchmarkResult(
        source=dataset.source, workers=workers, batch=batch, samples=samples, image_size=(height, width),
        crop=tuple(crop), wall_s=wall, samples_per_s=samples / wall,
        cpu_ms_per_sample=1000 * sum(totals) / samples,
        phase_ms={name: 1000 * t / samples for name, t in zip(DATA_PHASES, totals)},
        files_bytes=files, store_bytes=None if dataset.store is None else store_size(dataset.store.root),
        resize_ms=1000 * resize / samples if resize_on_device else None)
