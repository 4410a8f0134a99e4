"""The demo: DGCNet trains, evaluates and predicts for real on a synthetic Cityscapes, on any machine,
or on a real dataset the package knows by name (CamVid) within a time budget.

``run_demo`` writes a synthetic Cityscapes (the ``synth`` command's library), trains a small
DGCNet on it with the training engine, scores it with the evaluator, segments a few validation
images with the prediction code, then draws the training curve and writes a one-page summary.
Nothing is downloaded. The default settings reach mIoU >= 0.80 on the synthetic validation set
in a few minutes on a 2-core CPU. With ``dataset`` and ``data_dir`` set, the same flow runs on
that dataset's published train and val lists, the number of iterations fitted to ``minutes``.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from dgcnet.benchmark import time_steps, train_step
from dgcnet.config import load_config
from dgcnet.engine.distributed import resolve_device
from dgcnet.data.dataset import SegmentationDataset, read_list
from dgcnet.data.datasets import get_dataset
from dgcnet.data.labels import CITYSCAPES, ClassInfo
from dgcnet.data.synth import write_synth
from dgcnet.data.transforms import read_image, read_label
from dgcnet.engine.evaluate import EvalResult, evaluate, write_results
from dgcnet.engine.heap import use_fast_heap
from dgcnet.models.fast import optimize_for_inference
from dgcnet.engine.predict import COMPARE_GAP, FORMAT_DIRS, collect_inputs, comparison_row, predict_files
from dgcnet.engine.runlog import read_metrics
from dgcnet.engine.train import train
from dgcnet.errors import DgcnetError
from dgcnet.formats.load import load_model
from dgcnet.metrics import class_table, format_table
from dgcnet.models import build_model
from dgcnet.plots import training_curve

PREDICTION_FORMATS = ("color", "overlay", "trainids")


@dataclass
class DemoSettings:
    """What the demo makes and how it trains; the defaults are the tuned demo."""

    arch: str = "dgcnet_r18"
    steps: int | None = 150  # None (real data only): as many as fit ``minutes``
    seed: int = 0
    device: str = "auto"  # auto: cuda when available
    image_size: tuple[int, int] = (128, 256)  # synthetic images, height x width
    train_images: int = 200
    val_images: int = 20
    crop_size: tuple[int, int] | None = None  # training crop; None: a square of the image height
    batch_size: int = 8
    lr: float = 0.05  # the recipe has 0.01 for 60000 iterations; a short schedule needs a higher rate
    # Random rescaling would show the network objects at sizes the validation images never have.
    scale: bool = False
    validations: int = 3  # validations spread over the training (the mIoU curve); 0: none
    predictions: int = 4  # validation images segmented into colour and overlay PNGs
    workers: int = 1  # data loading processes
    # Let the fast path on the CPU keep large freed blocks (a process-wide malloc setting).
    keep_freed_memory: bool = False
    # A real dataset by name (its published train.txt and val.txt in data_dir) instead of the
    # synthetic one; ``minutes`` then bounds the whole demo, the iterations fitted to it.
    dataset: str | None = None
    data_dir: Path | None = None
    minutes: float = 10.0
    amp: str = "off"
    channels_last: bool = False


def real_data_settings(dataset: str, data_dir: str | Path, minutes: float = 10.0, **changes) -> DemoSettings:
    """The demo on a real dataset: configs/camvid_r18_cpu.yaml's recipe (the dataset's crop and
    random scale, batch 8, lr 0.02, bf16 on the CPU), the iterations fitted to ``minutes``. No
    validations during training: on a short budget they would take the time of the training; the
    evaluation after it scores the model."""
    spec = get_dataset(dataset)
    base = DemoSettings(dataset=dataset, data_dir=Path(data_dir), minutes=minutes, crop_size=spec.crop_size,
                        lr=0.02, scale=True, validations=0, amp="bf16", channels_last=True)
    return replace(base, **changes)


@dataclass
class DemoResult:
    out_dir: Path
    data_dir: Path
    run_dir: Path
    checkpoint: Path
    result_dir: Path      # holds result.txt and the per-class tables
    predictions_dir: Path
    comparison: Path      # input, ground truth and prediction side by side
    curve: Path
    summary: Path
    miou: float
    iou: np.ndarray
    table: str            # the per-class table as text
    seconds: dict[str, float]
    val_images: int


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DgcnetError(f"{out_dir}: already exists and is not an empty folder; choose another --output-dir "
                          f"or remove it")


def crop_size(settings: DemoSettings) -> tuple[int, int]:
    h, w = settings.image_size
    return settings.crop_size or (h, min(h, w))


def train_overrides(settings: DemoSettings, data_dir: Path, run_dir: Path, device: torch.device) -> list[tuple]:
    """The training config of the demo, as (key, value) pairs over the recipe's defaults."""
    pairs: list[tuple] = [("data.dataset", settings.dataset)] if settings.dataset else []
    pairs += [
        ("model.arch", settings.arch),
        ("data.data_dir", str(data_dir)),
        ("data.data_list", str(data_dir / "train.txt")),
        ("data.input_size", list(crop_size(settings))),
        ("data.scale", settings.scale),
        ("data.workers", settings.workers),
        ("train.batch_size", settings.batch_size),
        ("train.lr", settings.lr),
        ("train.num_steps", settings.steps),
        ("train.amp", settings.amp),
        ("train.channels_last", settings.channels_last),
        ("run.save_dir", str(run_dir)),
        ("run.save_every", settings.steps),
        ("run.keep", 1),
        ("run.log_every", max(1, settings.steps // 40)),  # about 40 points on the curve
        ("run.seed", settings.seed),
        ("run.device", str(device)),
    ]
    if settings.validations:
        pairs += [("val.every", max(1, settings.steps // settings.validations)), ("val.data_list", str(data_dir / "val.txt")),
                  ("val.mode", "sliding")]  # the tile follows the crop, as in eval
    return pairs


def comparison_image(items: list[tuple[Path, Path | None, Path]], classes: ClassInfo = CITYSCAPES) -> Image.Image:
    """One row per image: input, ground truth in class colours (void black), prediction; the
    prediction is read back from its train-id PNG."""
    rows = []
    for image_path, label_path, train_ids_path in items:
        truth = classes.to_train_ids(read_label(label_path)) if label_path is not None else None
        rows.append(comparison_row(read_image(image_path), truth, read_label(train_ids_path), classes))
        rows.append(np.full((COMPARE_GAP, rows[-1].shape[1], 3), 255, dtype=np.uint8))
    return Image.fromarray(np.concatenate(rows[:-1], axis=0))


def run_demo(out_dir: str | Path, settings: DemoSettings | None = None, *,
             say: Callable[[str], None] = print, progress: bool = False) -> DemoResult:
    """Run the whole demo into ``out_dir`` (must be missing or empty). ``say`` receives one line
    per stage; the training engine prints its own log lines."""
    settings = settings or DemoSettings()
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    device = resolve_device(settings.device)
    data_dir, run_dir, eval_dir = out_dir / "data", out_dir / "train", out_dir / "eval"
    predictions_dir = out_dir / "predictions"
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    if settings.dataset:
        data_dir = _real_data_dir(settings)
        spec = get_dataset(settings.dataset)
        say(f"[1/5] {spec.title}: {len(read_list(data_dir / 'train.txt', data_dir))} train + "
            f"{len(read_list(data_dir / 'val.txt', data_dir))} val images in {data_dir}")
        if settings.steps is None:
            steps, per_step = fit_steps(settings, device, settings.minutes * 60 * TRAIN_SHARE
                                        - (time.perf_counter() - start))
            say(f"      {per_step:.2f} s per iteration measured: {steps} iterations fit {settings.minutes:g} minutes")
            settings = replace(settings, steps=steps)
        config = load_config(None, train_overrides(settings, data_dir, run_dir, device))
    else:
        # The training config is checked before anything is written.
        config = load_config(None, train_overrides(settings, data_dir, run_dir, device))
        h, w = settings.image_size
        say(f"[1/5] synthetic Cityscapes: {settings.train_images} train + {settings.val_images} val images "
            f"of {h}x{w} -> {data_dir}")
        write_synth(data_dir, train=settings.train_images, val=settings.val_images, size=settings.image_size,
                    seed=settings.seed, progress=progress)
    seconds["data"] = time.perf_counter() - start

    say(f"[2/5] training {settings.arch} from scratch for {settings.steps} iterations "
        f"(batch {settings.batch_size}, crop {'x'.join(map(str, crop_size(settings)))}, SGD lr {settings.lr}); "
        f"each log line ends with the time per iteration and the training's ETA")
    t = time.perf_counter()
    trained = train(config)
    seconds["train"] = time.perf_counter() - t

    # Evaluation and prediction run as `dgcnet eval` and `dgcnet predict` do without flags: by
    # the model's own facts (sliding window of its training crop).
    t = time.perf_counter()
    heap = use_fast_heap(device.type) if settings.keep_freed_memory else "default"
    model = optimize_for_inference(load_model(trained.checkpoint, device=device))
    info = model.info
    dataset = SegmentationDataset(data_dir, data_dir / "val.txt", classes=info.classes, rgb=info.rgb)
    say(f"[3/5] evaluating on {len(dataset)} validation images (sliding window: tile {info.tile}, "
        f"stride {info.stride}, the training crop)")
    result = evaluate(model, dataset, workers=settings.workers, progress=progress)
    if result.miou is None:
        raise DgcnetError(f"{data_dir / 'val.txt'}: no labelled validation image")
    result_dir = write_results(result, eval_dir, {
        "restore_from": str(trained.checkpoint), "data_list": str(data_dir / "val.txt"),
        "mode": "sliding", "tile": info.tile, "stride": info.stride, "scales": [1.0], "flip": False,
        "amp": "off", "device": str(device), "fast": True, "heap": heap})
    seconds["eval"] = time.perf_counter() - t

    samples = read_list(data_dir / "val.txt", data_dir)[:settings.predictions]
    say(f"[4/5] segmenting {len(samples)} validation images -> {predictions_dir}")
    t = time.perf_counter()
    inputs, _ = collect_inputs([str(s.image) for s in samples])
    failures = predict_files(model, inputs, predictions_dir, PREDICTION_FORMATS, workers=0, progress=progress)
    if failures:
        raise DgcnetError("; ".join(failures))
    train_ids = [predictions_dir / FORMAT_DIRS["trainids"] / i.relative for i in inputs]
    comparison = predictions_dir / "comparison.png"
    comparison_image([(s.image, s.label, t) for s, t in zip(samples, train_ids)], info.classes).save(comparison)
    seconds["predict"] = time.perf_counter() - t

    say(f"[5/5] training curve and summary -> {out_dir}")
    curve = out_dir / "training_curve.png"
    records = read_metrics(trained.metrics_path)
    training_curve(records, title=f"{settings.arch} on {data_title(settings)}").save(curve)
    seconds["total"] = time.perf_counter() - start
    table = format_table(class_table(result.class_names, result.iou, result.confusion), result.miou)
    summary = out_dir / "summary.md"
    summary.write_text(summary_markdown(settings, device, result, seconds, out_dir, trained.checkpoint,
                                        result_dir, [predictions_dir / FORMAT_DIRS["overlay"] / i.relative
                                                     for i in inputs], comparison, curve))
    return DemoResult(out_dir, data_dir, run_dir, trained.checkpoint, result_dir, predictions_dir, comparison,
                      curve, summary, result.miou, result.iou, table, seconds, result.num_labelled)


# The share of the time budget that training gets; validations, evaluation and predictions take the rest.
TRAIN_SHARE = 0.75


def _real_data_dir(settings: DemoSettings) -> Path:
    """The data folder of a real dataset, with its published train and val lists."""
    spec = get_dataset(settings.dataset)
    data_dir = settings.data_dir
    if data_dir is None:
        raise DgcnetError(f"the demo on {settings.dataset} needs --data-dir")
    if not data_dir.is_dir() or not any(data_dir.iterdir()):
        raise DgcnetError(f"{data_dir}: no {spec.title} here; {spec.where_to_get.replace('DIR', str(data_dir))}")
    for name in ("train.txt", "val.txt"):
        if not (data_dir / name).is_file():
            raise DgcnetError(f"{data_dir / name}: missing; `dgcnet lists --dataset {settings.dataset} --data-dir "
                              f"{data_dir} --output-dir {data_dir}` writes the lists")
    return data_dir


def fit_steps(settings: DemoSettings, device: torch.device, seconds: float) -> tuple[int, float]:
    """How many training iterations of ``settings`` fit ``seconds`` on ``device`` (at least 10),
    and the seconds one takes: two steps timed on random data after one warm-up step."""
    spec = get_dataset(settings.dataset)
    model = build_model(settings.arch, spec.classes.num_classes).to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step = train_step(model, spec.classes.num_classes, settings.batch_size, crop_size(settings), device,
                      settings.amp, settings.channels_last, False)
    _, times = time_steps(step, device, warmup=1, iters=2)
    per_step = sorted(times)[0] / 1000 * 1.1  # data loading and logging add a little
    return max(10, int(seconds / per_step)), per_step


def data_title(settings: DemoSettings) -> str:
    return get_dataset(settings.dataset).title if settings.dataset else "synthetic Cityscapes"


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def summary_markdown(settings: DemoSettings, device: torch.device, result: EvalResult, seconds: dict[str, float],
                     out_dir: Path, checkpoint: Path, result_dir: Path, overlays: list[Path], comparison: Path,
                     curve: Path) -> str:
    """The one-page summary: settings, times, mIoU, per-class table, pictures, commands to go on."""
    rel = lambda p: _relative(p, out_dir)  # noqa: E731 - links are relative, so the folder can move
    real = settings.dataset is not None
    data_dir = settings.data_dir if real else out_dir / "data"
    title = data_title(settings)
    resolved = {**asdict(settings), "crop_size": crop_size(settings), "device": device.type}
    for key in ("image_size", "train_images", "val_images") if real else ("dataset", "data_dir", "minutes"):
        resolved.pop(key)  # settings of the other kind of data
    settings_rows = "\n".join(f"| {k} | {'x'.join(map(str, v)) if isinstance(v, tuple) else v} |"
                              for k, v in resolved.items())
    times = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items() if k != "total")
    table = format_table(class_table(result.class_names, result.iou, result.confusion), result.miou,
                         markdown=True)
    q = lambda p: shlex.quote(str(p))  # noqa: E731
    overlay_lines = "\n".join(f"- [{rel(p)}]({rel(p)})" for p in overlays)
    first_step = (f"dgcnet download {settings.dataset} --output-dir {q(data_dir)}  # once" if real else
                  f"dgcnet synth --output-dir {q(data_dir)} --train {settings.train_images} --val {settings.val_images} "
                  f"--size {settings.image_size[0]}x{settings.image_size[1]} --seed {settings.seed}")
    data_line = (f"- `{data_dir}`: {title}, read in place" if real else
                 "- `data/`: the synthetic Cityscapes (Cityscapes layout, label ids) and its lists")
    return f"""# DGCNet demo: {settings.arch} on {title}

**mIoU {100 * result.miou:.2f}** on {result.num_labelled} {"" if real else "synthetic "}validation images (mean over all
{len(result.class_names)} classes), after training from scratch for {settings.steps} iterations on {device.type}.
Total time {seconds['total']:.0f} s ({times}).

## Pictures

Input, ground truth (void in black) and prediction, one validation image a row:

![comparison]({rel(comparison)})

Overlays: predictions over the input images (colour-only versions in
[{rel(comparison.parent / FORMAT_DIRS['color'])}/]({rel(comparison.parent / FORMAT_DIRS['color'])}/)):

{overlay_lines}

![training curve]({rel(curve)})

## Per-class IoU

{table}
The evaluator's files are in [{rel(result_dir)}/]({rel(result_dir)}/): `result.txt` (`meanIU`,
`IU_array`), `per_class.md`/`.csv`, `confusion.png`, `summary.json`.

## Settings

| setting | value |
|---|---|
{settings_rows}

The full training configuration is [train/config.yaml](train/config.yaml); the training log is
[train/metrics.jsonl](train/metrics.jsonl), and every line it printed is in
[train/train.log](train/train.log).

## Where everything is

{data_line}
- `train/`: the run folder; final checkpoint `{rel(checkpoint)}`
- `eval/result/`: evaluation results
- `predictions/`: colour and overlay predictions, `comparison.png`
- `training_curve.png`, `summary.md`

## The same steps by hand

```
{first_step}
dgcnet train --config {q(out_dir / 'train' / 'config.yaml')} run.save_dir=NEW_RUN_FOLDER
dgcnet eval --restore-from {q(checkpoint)} --data-dir {q(data_dir)} --data-list {q(data_dir / 'val.txt')} --output-dir NEW_EVAL_FOLDER
dgcnet predict YOUR_IMAGES --restore-from {q(checkpoint)} --save-pred color,overlay --output-dir OUTPUT
```
"""
