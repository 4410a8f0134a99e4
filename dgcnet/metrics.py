"""Segmentation metrics: the confusion matrix, per-class IoU and mean IoU of the evaluation protocol."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from dgcnet.data.labels import IGNORE_INDEX
from dgcnet.io import write_text


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts: rows are true classes, columns predictions.

    Pixels whose label equals ``ignore_index`` are left out. Runs on the tensors' device.
    Labels outside 0..num_classes-1 (other than the ignore value) raise ValueError.
    """
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(label.shape)}")
    keep = label != ignore_index
    truth = label[keep].long()
    guess = pred[keep].long()
    if truth.numel() and (int(truth.min()) < 0 or int(truth.max()) >= num_classes):
        raise ValueError(f"label values must be in 0..{num_classes - 1} or {ignore_index}, "
                         f"found {int(truth.min())}..{int(truth.max())}")
    counts = torch.bincount(truth * num_classes + guess, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU = tp / max(1, row + col - tp) per class; a class absent from labels and predictions scores 0."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(axis=1) + confusion.sum(axis=0) - tp
    return tp / np.maximum(1.0, union)


def mean_iou(confusion: np.ndarray) -> float:
    """The mean of :func:`iou_per_class` over all classes (the protocol's meanIU)."""
    return float(iou_per_class(confusion).mean())


def pixel_accuracy(confusion: np.ndarray) -> float:
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


def class_table(class_names: Sequence[str], iou: np.ndarray, confusion: np.ndarray) -> list[dict]:
    """One row per class: name, IoU, labelled pixels, predicted pixels."""
    return [{"class": name, "iou": float(iou[i]), "label_pixels": int(confusion[i].sum()),
             "pred_pixels": int(confusion[:, i].sum())} for i, name in enumerate(class_names)]


def format_table(rows: list[dict], miou: float, markdown: bool = False) -> str:
    """The per-class table as aligned text (terminal) or a markdown table."""
    width = max(len("mean"), *(len(r["class"]) for r in rows))
    if markdown:
        lines = ["| class | IoU (%) | label pixels | predicted pixels |", "|---|---:|---:|---:|"]
        lines += [f"| {r['class']} | {100 * r['iou']:.2f} | {r['label_pixels']} | {r['pred_pixels']} |" for r in rows]
        lines.append(f"| **mean** | **{100 * miou:.2f}** | | |")
    else:
        lines = [f"{'class':<{width}}  {'IoU %':>6}"]
        lines += [f"{r['class']:<{width}}  {100 * r['iou']:6.2f}" for r in rows]
        lines.append(f"{'mean':<{width}}  {100 * miou:6.2f}")
    return "\n".join(lines) + "\n"


def write_table_csv(rows: list[dict], path: str | Path) -> None:
    lines = ["class,iou,label_pixels,pred_pixels"]
    lines += [f"{r['class']},{r['iou']:.6f},{r['label_pixels']},{r['pred_pixels']}" for r in rows]
    write_text(path, "\n".join(lines) + "\n")


def confusion_heatmap(confusion: np.ndarray, class_names: Sequence[str], cell: int = 24) -> Image.Image:
    """The row-normalised confusion matrix as an RGB image: white (0) to dark blue (1), class
    indices on the axes and names on the left (rows: true class, columns: prediction)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    n = len(confusion)
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1.0)
    # Linear ramp from white to (8, 48, 107), the dark end of a common "Blues" colour map.
    dark = np.array([8, 48, 107], dtype=np.float64)
    colours = (255.0 + rows[..., None] * (dark - 255.0)).round().astype(np.uint8)
    grid = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
    margin_left = 8 + 6 * max((len(f"{i} {name}") for i, name in enumerate(class_names)), default=1)
    margin_top = 16
    canvas = Image.new("RGB", (margin_left + n * cell + 1, margin_top + n * cell + 1), "white")
    canvas.paste(Image.fromarray(grid), (margin_left, margin_top))
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(class_names):
        draw.text((4, margin_top + i * cell + cell // 2 - 5), f"{i} {name}", fill="black")
        draw.text((margin_left + i * cell + 4, 2), str(i), fill="black")
    return canvas
