"""The datasets the package knows by name (``--dataset``): classes, folder layout, published lists
and the training defaults that go with them.

Each :class:`DatasetSpec` holds what a user would otherwise write by hand: the class table (names,
colours, what each stored label value means), how lists are built from the dataset's own folder
layout, the prefix its published lists put before every path, and the crop and random-scale
range its reference training used. A dataset without a spec needs a class file instead
(``--classes``, see data/classes.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dgcnet.data.classes import load_class_file
from dgcnet.data.labels import CITYSCAPES, IGNORE_INDEX, ClassInfo
from dgcnet.data.lists import camvid_lists, cityscapes_lists
from dgcnet.errors import DgcnetError


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset by name: its classes and layout, and the training defaults published for it.

    ``make_lists(data_dir)`` returns {list file name: lines} from the dataset's own folder
    layout. ``list_prefix``: the folder its published lists start every path with, read as
    ``--data-dir``. ``crop_size`` and ``scale_range`` (the random scale's smallest and largest
    factor, in steps of 0.1) are the training defaults. ``where_to_get`` says how to obtain it.
    """

    name: str
    title: str
    classes: ClassInfo
    crop_size: tuple[int, int]
    scale_range: tuple[float, float]
    make_lists: Callable[[Path], dict[str, list[str]]]
    where_to_get: str
    list_prefix: str = ""


def indexed_classes(name: str, names: tuple[str, ...], colors: tuple[tuple[int, int, int], ...],
                    *, first_id: int = 0, void_ids: tuple[int, ...] = ()) -> ClassInfo:
    """Classes stored as consecutive label values from ``first_id``; ``void_ids`` are stored
    values that mean "not labelled" (ignored in the loss and the mIoU)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[first_id:first_id + len(names)] = np.arange(len(names), dtype=np.uint8)
    stored = tuple(range(first_id, first_id + len(names)))
    valid = tuple(sorted(set(stored) | set(void_ids) | {IGNORE_INDEX}))
    identity = first_id == 0 and not set(void_ids) - {IGNORE_INDEX}
    return ClassInfo(names=names, colors=colors, id_to_train=None if identity else lut, valid_ids=valid,
                     dataset=name)


# CamVid as SegNet published it: 11 classes stored as 0..10, 11 is void; SegNet's colours.
_CAMVID = (
    ("Sky", (128, 128, 128)), ("Building", (128, 0, 0)), ("Pole", (192, 192, 128)), ("Road", (128, 64, 128)),
    ("Pavement", (60, 40, 222)), ("Tree", (128, 128, 0)), ("SignSymbol", (192, 128, 128)),
    ("Fence", (64, 64, 128)), ("Car", (64, 0, 128)), ("Pedestrian", (64, 64, 0)), ("Bicyclist", (0, 128, 192)),
)
CAMVID = indexed_classes("camvid", tuple(n for n, _ in _CAMVID), tuple(c for _, c in _CAMVID), void_ids=(11,))

DATASETS: dict[str, DatasetSpec] = {
    "cityscapes": DatasetSpec(
        name="cityscapes", title="Cityscapes (fine annotations, 19 classes)", classes=CITYSCAPES,
        crop_size=(832, 832), scale_range=(0.7, 2.1), make_lists=cityscapes_lists,
        where_to_get="Cityscapes needs a free login: download leftImg8bit_trainvaltest.zip and "
                     "gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com/downloads/, unzip both "
                     "into one folder, then run `dgcnet lists --data-dir DIR --output-dir DIR`"),
    "camvid": DatasetSpec(
        name="camvid", title="CamVid (SegNet's 11-class split, 480x360)", classes=CAMVID,
        crop_size=(360, 360), scale_range=(0.5, 2.0), make_lists=camvid_lists,
        where_to_get="`dgcnet download camvid --output-dir DIR` fetches it (701 images with labels, "
                     "233 test images)",
        list_prefix="/SegNet/CamVid/"),
}
DATASET_NAMES = tuple(DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    """The spec of a dataset by name; an unknown name is a one-line error listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DgcnetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)} "
                          f"(or describe your own with a class file, --classes)") from None


def list_prefixes() -> tuple[str, ...]:
    """The path prefixes of every known dataset's published lists."""
    return tuple(spec.list_prefix for spec in DATASETS.values() if spec.list_prefix)


def resolve_classes(dataset: str | None, class_file: str | Path | None, default: ClassInfo = CITYSCAPES
                    ) -> ClassInfo:
    """The classes a command runs with: a class file when given, else the named dataset's, else
    ``default`` (Cityscapes, or the model's recorded classes)."""
    if class_file:
        return load_class_file(class_file)
    return get_dataset(dataset).classes if dataset else default


def describe_classes(classes: ClassInfo) -> str:
    """``camvid's 11 classes (Sky, Building, ...)``: the classes a command runs with, for its output."""
    return f"{classes.dataset or 'the class file'}'s {classes.num_classes} classes ({', '.join(classes.names)})"
