"""The full data check behind `dgcnet check-data`: every line of a list, every file decoded.

Problems come out as ``LIST:LINE: PATH: what is wrong``. Files are checked in a thread pool
(PNG decoding and numpy release the GIL).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dgcnet.data.dataset import Sample, parse_list
from dgcnet.data.labels import CITYSCAPES, ClassInfo
from dgcnet.data.transforms import open_image
from dgcnet.errors import DgcnetError

LABEL_MODES = ("L", "P")  # single-channel 8-bit


@dataclass(frozen=True)
class Problem:
    list_path: Path
    line: int  # 0 for problems of the whole list
    path: Path | None
    message: str

    def __str__(self) -> str:
        where = f"{self.list_path}:{self.line}" if self.line else f"{self.list_path}"
        return f"{where}: {self.path}: {self.message}" if self.path is not None else f"{where}: {self.message}"


@dataclass(frozen=True)
class CheckResult:
    list_path: Path
    samples: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"{self.list_path}: {self.samples} samples, no problems"
        lines = len({p.line for p in self.problems})
        return (f"{self.list_path}: {self.samples} samples, {len(self.problems)} problem(s) "
                f"on {lines} line(s)")


def _open(path: Path, what: str) -> tuple[Image.Image | None, str | None]:
    """Fully decode a file; (image, None) or (None, what is wrong)."""
    if not path.is_file():
        return None, "no such file"
    try:
        with open_image(path, what) as img:
            return img.copy(), None
    except DgcnetError as error:
        return None, str(error).removeprefix(f"{path}: ")


def check_sample(sample: Sample, classes: ClassInfo = CITYSCAPES) -> list[Problem]:
    """Every problem of one list line: missing or unreadable files, label format, sizes, ids."""
    problems = []

    def problem(path: Path, message: str) -> None:
        problems.append(Problem(sample.list_path, sample.line, path, message))

    image, error = _open(sample.image, "image")
    if error:
        problem(sample.image, error)
    if sample.label is None:
        return problems
    label, error = _open(sample.label, "label")
    if error:
        problem(sample.label, error)
        return problems
    assert label is not None
    if label.mode not in LABEL_MODES:
        problem(sample.label, f"label must be a single-channel 8-bit image, got mode {label.mode}")
        return problems
    if image is not None and image.size != label.size:
        problem(sample.label, f"label size {label.width}x{label.height} differs from image size "
                              f"{image.width}x{image.height}")
    valid = classes.valid_ids if classes.valid_ids is not None else \
        tuple(range(classes.num_classes)) + (classes.ignore_index,)
    counts = np.bincount(np.asarray(label).ravel(), minlength=256)
    unknown = sorted(set(np.flatnonzero(counts).tolist()) - set(valid))
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        problem(sample.label, f"label ids outside the known set: {shown}")
    return problems


def check_list(data_dir: str | Path, list_path: str | Path, *, classes: ClassInfo = CITYSCAPES,
               workers: int = 4, progress: bool = False) -> CheckResult:
    """Check a data list line by line and every file it names; never raises for bad data."""
    list_path = Path(list_path)
    try:
        entries = parse_list(list_path)
    except DgcnetError as error:
        return CheckResult(list_path, 0, [Problem(list_path, 0, None, str(error).removeprefix(f"{list_path}: "))])
    problems: list[Problem] = []
    samples: list[Sample] = []
    first_seen: dict[tuple[str, ...], int] = {}
    labelled = any(len(columns) == 2 for _, columns in entries)
    for number, columns in entries:
        where = Path(data_dir) / columns[0]
        if len(columns) > 2:
            problems.append(Problem(list_path, number, where,
                                    f"expected 'image<TAB>label' or 'image', got {len(columns)} columns"))
            continue
        if len(columns) == 1 and labelled:
            problems.append(Problem(list_path, number, where, "no label column (other lines have one)"))
            continue
        key = tuple(columns)
        if key in first_seen:
            problems.append(Problem(list_path, number, where, f"duplicate of line {first_seen[key]}"))
            continue
        first_seen[key] = number
        label = Path(data_dir) / columns[1] if len(columns) == 2 else None
        samples.append(Sample(where, label, list_path, number))
    if not entries:
        problems.append(Problem(list_path, 0, None, "the data list is empty"))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda s: check_sample(s, classes), samples)
        for found in tqdm(results, total=len(samples), desc="check-data", unit="sample", disable=not progress):
            problems.extend(found)
    problems.sort(key=lambda p: p.line)
    return CheckResult(list_path, len(entries), problems)
