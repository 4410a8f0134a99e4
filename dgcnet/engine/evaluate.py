"""Evaluation: mIoU of a model over a data list by the published protocol, and its output files."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from dgcnet.data.dataset import ReportErrors, SegmentationDataset, default_workers
from dgcnet.engine.inference import infer_logits, model_device, resolve_tile, runs_whole
from dgcnet.engine.predict import PredictionWriter, output_names, whole_note
from dgcnet.errors import DgcnetError
from dgcnet.io import atomic_write, write_text
from dgcnet.metrics import (class_table, confusion_heatmap, confusion_matrix, format_table, iou_per_class,
                            pixel_accuracy, write_table_csv)


@dataclass
class EvalResult:
    """``miou``/``iou`` are None when no image of the list has a label (prediction only)."""

    miou: float | None
    iou: np.ndarray | None
    confusion: np.ndarray
    images_per_s: float
    num_images: int
    num_labelled: int
    seconds: float
    class_names: tuple[str, ...]

    @property
    def pixel_accuracy(self) -> float | None:
        return None if self.miou is None else pixel_accuracy(self.confusion)


def evaluate(model: nn.Module, dataset: SegmentationDataset, *, mode: str = "sliding", tile: int | None = None,
             stride: int | None = None, scales: Sequence[float] = (1.0,), flip: bool = False,
             batch_tiles: int = 4, device: str | torch.device | None = None, amp: str = "off",
             workers: int | None = None, progress: bool = True, writer: PredictionWriter | None = None,
             note: Callable[[str], None] | None = None) -> EvalResult:
    """Run ``model`` over an evaluation dataset (``train=False``) and score it.

    Defaults are the protocol the model was trained for (``model.info``): sliding window with
    the training crop as the tile (832 at stride 555 for the published recipe), single scale,
    no flip; images no larger than the tile run whole, which ``note`` hears once. ``device`` moves the model (default: where it is). Loading runs in ``workers`` loader
    processes (default: :func:`default_workers`), overlapping inference. ``writer`` receives every
    prediction (train ids), named after the image's path (see :func:`output_names`). The model's
    train/eval mode is restored afterwards.
    """
    if dataset.train:
        raise ValueError("evaluate needs a dataset built with train=False")
    if device is not None:
        model.to(device)
    device = model_device(model)
    if mode == "sliding":
        tile, stride = resolve_tile(model, tile, stride)
    was_training = model.training
    model.eval()
    num_classes = dataset.classes.num_classes
    confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
    workers = default_workers() if workers is None else workers
    loader = DataLoader(ReportErrors(dataset), batch_size=None, num_workers=workers, pin_memory=device.type == "cuda")
    names = output_names([s.image for s in dataset.samples]) if writer is not None else []
    num_labelled = 0
    start = time.perf_counter()
    try:
        for item, error in tqdm(loader, total=len(dataset), desc="eval", unit="image",
                                disable=not progress, file=sys.stderr):
            if error is not None:
                raise DgcnetError(error)
            image, label, index = item
            sample = dataset.samples[index]
            if note is not None and mode == "sliding" and runs_whole(*image.shape[-2:], tile):
                note(whole_note(tile, sample.image, image.shape[-2:]))
                note = None
            logits = infer_logits(model, image.to(device, non_blocking=True), mode=mode, tile=tile,
                                  stride=stride, scales=scales, flip=flip, batch_tiles=batch_tiles, amp=amp)
            if logits.shape[0] != num_classes:
                raise DgcnetError(f"the model predicts {logits.shape[0]} classes, the data has {num_classes}")
            pred = logits.argmax(0)
            if label.numel():
                try:
                    # The dataset gives labels with 255 for "ignore", whatever the class file says.
                    confusion += confusion_matrix(pred, label.to(device, non_blocking=True), num_classes)
                except ValueError as error:
                    raise DgcnetError(f"{sample.where}: {sample.label}: {error}") from None
                num_labelled += 1
            if writer is not None:
                writer.submit(pred.to(torch.uint8).cpu().numpy(), names[index], image_path=sample.image,
                              truth=label.to(torch.uint8).numpy() if label.numel() else None)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    matrix = confusion.cpu().numpy()
    iou = iou_per_class(matrix) if num_labelled else None
    return EvalResult(
        miou=float(iou.mean()) if iou is not None else None,
        iou=iou,
        confusion=matrix,
        images_per_s=len(dataset) / seconds if seconds > 0 else 0.0,
        num_images=len(dataset),
        num_labelled=num_labelled,
        seconds=seconds,
        class_names=tuple(dataset.classes.names),
    )


# What write_results writes into OUTPUT/result/.
RESULT_FILES = ("result.txt", "per_class.md", "per_class.csv", "confusion.npy", "confusion.png", "summary.json")


def write_results(result: EvalResult, output_dir: str | Path, settings: dict | None = None) -> Path:
    """Write ``OUTPUT/result/``: result.txt (the port's JSON {"meanIU", "IU_array"}), per_class.md,
    per_class.csv, confusion.npy, confusion.png and summary.json (speed and settings).
    Returns the result folder. Nothing but summary.json is written without labels."""
    folder = Path(output_dir) / "result"
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"num_images": result.num_images, "num_labelled": result.num_labelled,
               "seconds": round(result.seconds, 3), "images_per_s": result.images_per_s,
               **(settings or {})}
    if result.miou is not None:
        write_text(folder / "result.txt", json.dumps({"meanIU": result.miou, "IU_array": result.iou.tolist()}))
        rows = class_table(result.class_names, result.iou, result.confusion)
        write_text(folder / "per_class.md", format_table(rows, result.miou, markdown=True))
        write_table_csv(rows, folder / "per_class.csv")
        with atomic_write(folder / "confusion.npy") as f:
            np.save(f, result.confusion)
        with atomic_write(folder / "confusion.png") as f:
            confusion_heatmap(result.confusion, result.class_names).save(f, format="PNG")
        summary.update(meanIU=result.miou, pixel_accuracy=result.pixel_accuracy)
    write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    return folder
