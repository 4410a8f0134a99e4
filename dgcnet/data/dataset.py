"""Data lists (``image<TAB>label`` per line, relative to the data dir) and the dataset reading them."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from dgcnet.data.datasets import LIST_PREFIXES
from dgcnet.data.labels import CITYSCAPES, IGNORE_INDEX, ClassInfo
from dgcnet.data.store import PreparedStore, find_store
from dgcnet.data.transforms import ImageWindow, TrainAugment, WindowBatch, normalize, read_image, read_label
from dgcnet.errors import DgcnetError


class ReportErrors(Dataset):
    """Items as (item, None), or (None, message) when a file cannot be read: the one shape in which
    loader workers return errors. Raised in a worker, the error would reach the user wrapped in the
    worker's traceback instead of as its one line."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> tuple[Any, str | None]:
        try:
            return self.dataset[key], None
        except DgcnetError as error:
            return None, str(error)


@dataclass(frozen=True)
class Sample:
    image: Path
    label: Path | None
    list_path: Path
    line: int  # 1-based line number in the list, for error messages

    @property
    def where(self) -> str:
        return f"{self.list_path}:{self.line}"


def split_columns(line: str) -> list[str]:
    """A line with a TAB is split on TABs only, so paths may hold spaces; otherwise on runs of
    spaces (the authors' lists use both)."""
    if "\t" in line:
        return [column.strip() for column in line.split("\t") if column.strip()]
    return line.split()


def relative_to_data_dir(column: str) -> str:
    """A list's path with a known dataset's published prefix (CamVid's ``/SegNet/CamVid/``) taken
    off, so that it reads relative to the data dir like every other list's paths."""
    for prefix in LIST_PREFIXES:
        if column.startswith(prefix):
            return column[len(prefix):]
    return column


def parse_list(list_path: str | Path) -> list[tuple[int, list[str]]]:
    """(line number, columns) of each non-blank line (see :func:`split_columns`), a known dataset's
    published prefix taken off each path (:func:`relative_to_data_dir`); UTF-8, with or without a
    byte order mark."""
    list_path = Path(list_path)
    try:
        text = list_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise DgcnetError(f"{list_path}: cannot read data list ({reason})") from None
    return [(number, [relative_to_data_dir(column) for column in split_columns(line)])
            for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_list(list_path: str | Path, data_dir: str | Path, require_labels: bool = False) -> list[Sample]:
    """Parse a data list: ``image<TAB>label`` or ``image`` a line, paths relative to data_dir.

    Tabs and runs of spaces both separate columns (the authors' train.txt mixes them); on a line
    with a TAB only TABs do, so paths may hold spaces. Blank lines are skipped. The published
    prefix of a known dataset's lists stands for data_dir. Errors read ``LIST:LINE: PATH: what is wrong``.
    """
    list_path, data_dir = Path(list_path), Path(data_dir)
    samples = []
    for number, columns in parse_list(list_path):
        where = f"{list_path}:{number}: {data_dir / columns[0]}"
        if len(columns) > 2:
            raise DgcnetError(f"{where}: expected 'image<TAB>label' or 'image', got {len(columns)} columns")
        if require_labels and len(columns) < 2:
            raise DgcnetError(f"{where}: no label column, but this list needs labels")
        label = data_dir / columns[1] if len(columns) == 2 else None
        samples.append(Sample(data_dir / columns[0], label, list_path, number))
    if not samples:
        raise DgcnetError(f"{list_path}: the data list is empty")
    return samples


def check_files_exist(samples: list[Sample]) -> None:
    """The cheap check run before training or evaluation: every listed file exists."""
    for s in samples:
        for path in (s.image, s.label):
            if path is not None and not path.is_file():
                raise DgcnetError(f"{s.where}: {path}: no such file")


def default_workers(local_processes: int = 1) -> int:
    """Loader workers per process when none are asked for: the CPUs this process may use, shared
    by the ``local_processes`` training (or evaluating) processes on this machine, less one for
    each of those processes, and at most 16. One worker prepares about 8 training crops, or 8
    whole 2048x1024 images, a second (benchmarks/loader_throughput.py), so one fast GPU needs
    several; beyond 16, workers mostly add batches waiting in shared memory."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(16, cpus // max(1, local_processes) - 1))


def collate(items: list[tuple[Any, torch.Tensor, int]]) -> list[Any]:
    """A batch of SegmentationDataset items: [images, labels, indices], the images a WindowBatch
    when the items carry ImageWindows."""
    if isinstance(items[0][0], ImageWindow):
        return [WindowBatch([x for x, _, _ in items])] + default_collate([(y, i) for _, y, i in items])
    return default_collate(items)


def _read_bytes(sample: Sample, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DgcnetError(f"{sample.where}: {path}: no such file") from None
    except OSError as error:
        raise DgcnetError(f"{sample.where}: {path}: cannot read ({error.strerror or error})") from None


class SegmentationDataset(Dataset):
    """Images (and labels, as train ids) from a data list.

    train=True applies the recipe's augmentation; each sample's randomness comes from
    (seed, epoch, index) alone, so it does not depend on the number of loader workers.
    train=False returns the whole normalised image. Items: (image, label, index); label is uint8
    for training crops (widened on the device), int64 for whole images, and an empty tensor for
    lists without labels.

    prepared: a store made by `dgcnet prepare` to read decoded arrays from instead of decoding
    the files (the same arrays, so the same samples); "auto": DATA_DIR/dgcnet-prepared when it
    exists; None: always decode the files. ``source`` says which one is used.

    resize_on_device: training items carry an ImageWindow (the uint8 source window the crop reads)
    instead of the float crop; ``collate`` batches them as a WindowBatch, which the training device
    finishes into the same crops.
    """

    def __init__(self, data_dir: str | Path, list_path: str | Path, *, classes: ClassInfo = CITYSCAPES,
                 train: bool = False, crop_size: tuple[int, int] = (832, 832), scale: bool = True,
                 scale_range: tuple[float, float] = (0.7, 2.1), mirror: bool = True, rgb: bool = True, seed: int = 0,
                 prepared: str | Path | None = None, resize_on_device: bool = False) -> None:
        self.samples = read_list(list_path, data_dir, require_labels=train)
        check_files_exist(self.samples)
        self.classes = classes
        self.train = train
        self.rgb = rgb
        self.augment = TrainAugment(crop_size, scale, mirror, rgb, scale_range)
        self.resize_on_device = resize_on_device
        self.seed = seed
        self.epoch = 0
        store = find_store(data_dir, prepared)
        self.store = None if store is None else PreparedStore(store, classes)
        self.stored = None if self.store is None else self.store.entries(self.samples, data_dir)

    @property
    def source(self) -> str:
        if self.store is None:
            return ("decoding the image files (`dgcnet prepare` makes a store that needs a quarter of the CPU "
                    "per sample, a twentieth with crops resized on a GPU)")
        return f"prepared store {self.store.root} (decoded arrays, memory-mapped)"

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> tuple[Any, Any]:
        """The sample's raw data: the files' bytes, or with a store its memory-mapped arrays."""
        if self.stored is not None:
            image, label = self.stored[index]
            try:
                return image.open(), None if label is None else label.open()
            except DgcnetError as error:
                raise DgcnetError(f"{self.samples[index].where}: {error}") from None
        s = self.samples[index]
        return _read_bytes(s, s.image), None if s.label is None else _read_bytes(s, s.label)

    def decode(self, index: int, raw: tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw RGB uint8 image and train-id label (None without a label column) from ``read``'s data."""
        if self.stored is not None:
            return raw
        s = self.samples[index]
        try:
            image = read_image(s.image, raw[0])
            label = None if s.label is None else self.classes.to_train_ids(read_label(s.label, raw[1]))
        except DgcnetError as error:
            raise DgcnetError(f"{s.where}: {error}") from None
        if label is not None and self.classes.ignore_index != IGNORE_INDEX:
            # Losses, metrics and padding all use 255 for "ignore", whatever the class file says.
            label = np.where(label == self.classes.ignore_index, IGNORE_INDEX, label).astype(np.uint8)
        if label is not None and self.classes.id_to_train is None:
            # Without an id mapping, stored values are train ids: anything else would crash the loss.
            outside = np.unique(label[(label >= self.classes.num_classes) & (label != IGNORE_INDEX)])
            if outside.size:
                raise DgcnetError(f"{s.where}: {s.label}: label value(s) {', '.join(map(str, outside[:5].tolist()))} "
                                  f"are not classes (0..{self.classes.num_classes - 1}) nor the ignore index "
                                  f"{self.classes.ignore_index}; add an id_mapping to the class file")
        if label is not None and label.shape != image.shape[:2]:
            raise DgcnetError(f"{s.where}: {s.label}: label size {label.shape[1]}x{label.shape[0]} "
                              f"differs from image size {image.shape[1]}x{image.shape[0]}")
        return image, label

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw RGB uint8 image and train-id label (None without a label column)."""
        return self.decode(index, self.read(index))

    def rng(self, index: int) -> np.random.Generator:
        """The random draws of sample ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor | ImageWindow, torch.Tensor, int]:
        image, label = self.load(index)
        if self.train and self.resize_on_device:
            window, crop, y = self.augment.cut(image, label, self.rng(index))
            return ImageWindow(window, crop), y, index
        if self.train:
            x, y = self.augment(image, label, self.rng(index))
            return x, y, index
        y = torch.empty(0, dtype=torch.long) if label is None else torch.from_numpy(label.astype(np.int64))
        return normalize(image, self.rgb), y, index
