"""Data lists from a dataset tree: Cityscapes in the authors' format and order, the other datasets
known by name (datasets.py) in their own layouts, and users' folder datasets.

The authors' lists (train.txt, val.txt, test.txt, trainval.txt) hold one sample a line,
``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png<TAB>gtFine/<split>/<city>/<name>_gtFine_labelIds.png``,
sorted by the image path as a plain string; test.txt has the image column only, and
trainval.txt is train.txt followed by val.txt. Every file ends with a newline.

Users' own data in a folder tree ``images/<split>/**/<name>.{png,jpg,jpeg}`` with labels
``labels/<split>/**/<name>.png`` gets one ``<split>.txt`` per split in the same format (image
only when the split has no labels folder).

CamVid (``train/``, ``trainannot/``, ``val/``, ...) gets train, val, test and trainval in the same
format; the lists SegNet published read as they are (see data/dataset.py's ``read_list``).

ADE20K (``images/training/``, ``annotations/training/``, ...), Pascal Context (VOC2010 with
``SegmentationClassContext/`` labels and ``ImageSets/SegmentationContext/`` splits) and Mapillary
Vistas (``training/images/``, ``training/labels/``, ...) get the same list names too: train, val,
test where the dataset has it, and trainval.

The authors' own six lists ship with the package (``dgcnet lists --authors``), byte for byte.
"""
from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path
from typing import Callable

from dgcnet.errors import DgcnetError
from dgcnet.io import write_bytes

# The authors' lists, in dgcnet/data/authors_lists/<name>.gz; train+/train++ add coarse labels.
AUTHORS_LISTS = ("train.txt", "val.txt", "test.txt", "trainval.txt", "train+.txt", "train++.txt")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def split_lines(data_dir: str | Path, split: str, with_labels: bool) -> list[str]:
    """List lines for every ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` in the tree, sorted."""
    data_dir = Path(data_dir)
    images = sorted(p.relative_to(data_dir).as_posix()
                    for p in (data_dir / "leftImg8bit" / split).glob(f"*/*{IMAGE_SUFFIX}"))
    if not with_labels:
        return images
    lines = []
    for image in images:
        label = "gtFine" + image[len("leftImg8bit"):-len(IMAGE_SUFFIX)] + LABEL_SUFFIX
        if not (data_dir / label).is_file():
            raise DgcnetError(f"{data_dir / image}: its label {data_dir / label} is missing")
        lines.append(f"{image}\t{label}")
    return lines


FOLDER_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def folder_lines(data_dir: str | Path, split: str) -> list[str]:
    """List lines of ``images/<split>/`` in a folder dataset, sorted by image path."""
    return paired_lines(Path(data_dir), f"images/{split}", f"labels/{split}", FOLDER_IMAGE_SUFFIXES)


def cityscapes_lists(data_dir: str | Path) -> dict[str, list[str]]:
    """The splits present in a Cityscapes tree (train, val, test, and trainval when both are there)."""
    data_dir = Path(data_dir)
    lists: dict[str, list[str]] = {}
    for split in ("train", "val", "test"):
        lines = split_lines(data_dir, split, with_labels=split != "test")
        if lines:
            lists[f"{split}.txt"] = lines
    if not lists:
        raise DgcnetError(f"{data_dir}: no images under leftImg8bit/{{train,val,test}}/<city>/")
    return with_trainval(lists)


def with_trainval(lists: dict[str, list[str]]) -> dict[str, list[str]]:
    """``lists`` plus trainval.txt (train then val) when both are there."""
    if "train.txt" in lists and "val.txt" in lists:
        lists["trainval.txt"] = lists["train.txt"] + lists["val.txt"]
    return lists


def paired_lines(data_dir: Path, image_dir: str, label_dir: str | None, image_suffixes: tuple[str, ...],
                 label_suffix: str = ".png", label_name: Callable[[str], str] | None = None) -> list[str]:
    """List lines for the images in ``image_dir`` (recursively, sorted), each paired with the file
    of the same relative name (``label_name`` of the image's stem, default the stem itself) and
    ``label_suffix`` in ``label_dir``; images only when ``label_dir`` is None or missing."""
    images = sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / image_dir).rglob("*")
                    if p.suffix.lower() in image_suffixes and p.is_file())
    if label_dir is None or not (data_dir / label_dir).is_dir():
        return images
    lines = []
    for image in images:
        stem = image[len(image_dir) + 1:].rsplit(".", 1)[0]
        label = f"{label_dir}/{label_name(stem) if label_name else stem}{label_suffix}"
        if not (data_dir / label).is_file():
            raise DgcnetError(f"{data_dir / image}: its label {data_dir / label} is missing")
        lines.append(f"{image}\t{label}")
    return lines


def camvid_lists(data_dir: str | Path) -> dict[str, list[str]]:
    """CamVid as SegNet published it: ``<split>/*.png`` with labels in ``<split>annot/`` (test
    listed with labels only when ``testannot/`` is there); trainval is train then val."""
    data_dir = Path(data_dir)
    lists = {f"{split}.txt": paired_lines(data_dir, split, f"{split}annot", (".png",))
             for split in ("train", "val", "test") if (data_dir / split).is_dir()}
    lists = {name: lines for name, lines in lists.items() if lines}
    if not lists:
        raise DgcnetError(f"{data_dir}: no CamVid images under train/, val/ or test/")
    return with_trainval(lists)


def split_folder_lists(data_dir: Path, splits: tuple[tuple[str, str, str | None], ...], what: str
                       ) -> dict[str, list[str]]:
    """{<split>.txt: lines} for each (split, image folder, label folder or None for an unlabelled
    split) whose image folder is there, plus trainval; ``what`` names the layout in the error
    when there is none. A labelled split without its label folder is an error, never an image-only list."""
    lists = {}
    for split, image_dir, label_dir in splits:
        if not (data_dir / image_dir).is_dir():
            continue
        if label_dir is not None and not (data_dir / label_dir).is_dir():
            raise DgcnetError(f"{data_dir / image_dir}: its labels folder {data_dir / label_dir} is missing")
        lines = paired_lines(data_dir, image_dir, label_dir, (".jpg",))
        if lines:
            lists[f"{split}.txt"] = lines
    if not lists:
        raise DgcnetError(f"{data_dir}: no {what}")
    return with_trainval(lists)


def ade20k_lists(data_dir: str | Path) -> dict[str, list[str]]:
    """ADE20K as the SceneParsing benchmark's ADEChallengeData2016.zip unpacks: ``images/training/``
    and ``images/validation/`` (.jpg) with same-named .png labels in ``annotations/``; the test
    images of release_test.zip, unpacked into the same folder (``release_test/testing/``), without labels."""
    return split_folder_lists(Path(data_dir), (
        ("train", "images/training", "annotations/training"),
        ("val", "images/validation", "annotations/validation"),
        ("test", "release_test/testing", None),
    ), "ADE20K images under images/training/, images/validation/ or release_test/testing/")


def mapillary_label_dir(data_dir: Path, split: str) -> str:
    """The folder of a Mapillary Vistas split's v1.2 labels: ``<split>/labels`` as the v1.2 download
    unpacks, ``<split>/v1.2/labels`` in the v2.0 download (which holds both versions' labels)."""
    return next((d for d in (f"{split}/labels", f"{split}/v1.2/labels") if (data_dir / d).is_dir()),
                f"{split}/labels")


def mapillary_lists(data_dir: str | Path) -> dict[str, list[str]]:
    """Mapillary Vistas: ``training/images/`` and ``validation/images/`` (.jpg) with same-named .png
    v1.2 labels (see :func:`mapillary_label_dir`); ``testing/images/`` without labels."""
    data_dir = Path(data_dir)
    return split_folder_lists(data_dir, (
        ("train", "training/images", mapillary_label_dir(data_dir, "training")),
        ("val", "validation/images", mapillary_label_dir(data_dir, "validation")),
        ("test", "testing/images", None),
    ), "Mapillary Vistas images under training/images/, validation/images/ or testing/images/")


PASCAL_CONTEXT_LABELS = "SegmentationClassContext"
PASCAL_CONTEXT_SPLITS = "ImageSets/SegmentationContext"


def pascal_context_root(data_dir: Path) -> str | None:
    """Where the VOC2010 folder is, relative to ``data_dir`` ("VOCdevkit/VOC2010", or "" when
    ``data_dir`` is that folder); None when neither holds the converted labels."""
    return next((root for root in ("VOCdevkit/VOC2010", "") if (data_dir / root / PASCAL_CONTEXT_LABELS).is_dir()),
                None)


def pascal_context_lists(data_dir: str | Path) -> dict[str, list[str]]:
    """Pascal Context as its PNG conversion lays it out in VOC2010: ``JPEGImages/<id>.jpg``, labels
    ``SegmentationClassContext/<id>.png``, the ids of each split in
    ``ImageSets/SegmentationContext/{train,val}.txt``. ``data_dir`` is the folder holding
    ``VOCdevkit`` or the VOC2010 folder itself; paths in the lists are relative to it."""
    data_dir = Path(data_dir)
    root = pascal_context_root(data_dir)
    if root is None:
        raise DgcnetError(f"{data_dir}: no {PASCAL_CONTEXT_LABELS}/ in VOCdevkit/VOC2010/ or here; convert the "
                          f"Pascal Context annotations to PNG labels first (docs/data.md)")
    prefix = f"{root}/" if root else ""
    lists = {}
    for split in ("train", "val"):
        split_file = data_dir / prefix / PASCAL_CONTEXT_SPLITS / f"{split}.txt"
        if not split_file.is_file():
            continue
        ids = sorted({line.strip() for line in split_file.read_text().splitlines() if line.strip()})
        lines = []
        for image_id in ids:
            image = f"{prefix}JPEGImages/{image_id}.jpg"
            label = f"{prefix}{PASCAL_CONTEXT_LABELS}/{image_id}.png"
            for path in (image, label):
                if not (data_dir / path).is_file():
                    raise DgcnetError(f"{split_file}: {image_id}: {data_dir / path} is missing")
            lines.append(f"{image}\t{label}")
        if lines:
            lists[f"{split}.txt"] = lines
    if not lists:
        raise DgcnetError(f"{data_dir}: no image ids in {prefix}{PASCAL_CONTEXT_SPLITS}/train.txt or val.txt")
    return with_trainval(lists)


def folder_dataset_lists(data_dir: str | Path) -> dict[str, list[str]]:
    """One list per split folder of a folder dataset (``images/<split>/``, ``labels/<split>/``)."""
    data_dir = Path(data_dir)
    splits = sorted(p.name for p in (data_dir / "images").iterdir() if p.is_dir()) \
        if (data_dir / "images").is_dir() else []
    lists = {f"{split}.txt": folder_lines(data_dir, split) for split in splits}
    lists = {name: lines for name, lines in lists.items() if lines}
    if not lists:
        raise DgcnetError(f"{data_dir}: no images under images/<split>/")
    return lists


def make_lists(data_dir: str | Path) -> dict[str, list[str]]:
    """{list file name: lines} of a tree whose layout is recognised: a Cityscapes tree
    (leftImg8bit/), CamVid as published (trainannot/), Pascal Context (SegmentationClassContext/),
    ADE20K (annotations/training/), Mapillary Vistas (training/labels/), or a folder dataset
    (images/, labels/)."""
    data_dir = Path(data_dir)
    if (data_dir / "leftImg8bit").is_dir():
        return cityscapes_lists(data_dir)
    if (data_dir / "trainannot").is_dir() or (data_dir / "valannot").is_dir():
        return camvid_lists(data_dir)
    if pascal_context_root(data_dir) is not None:
        return pascal_context_lists(data_dir)
    # Before the folder dataset: ADE20K also has images/<split>/, but its labels are in annotations/.
    if any((data_dir / "annotations" / split).is_dir() for split in ("training", "validation")):
        return ade20k_lists(data_dir)
    if any((data_dir / mapillary_label_dir(data_dir, split)).is_dir() for split in ("training", "validation")):
        return mapillary_lists(data_dir)
    if (data_dir / "images").is_dir():
        return folder_dataset_lists(data_dir)
    raise DgcnetError(f"{data_dir}: neither a Cityscapes tree (leftImg8bit/), CamVid (train/, trainannot/), "
                      f"Pascal Context (VOCdevkit/VOC2010/SegmentationClassContext/), ADE20K (annotations/), "
                      f"Mapillary Vistas (training/labels/) nor a folder dataset (images/); name the dataset "
                      f"with --dataset")


def authors_list(name: str) -> bytes:
    """The bytes of one of the authors' Cityscapes lists, e.g. ``authors_list("val.txt")``."""
    if name not in AUTHORS_LISTS:
        raise DgcnetError(f"no authors' list {name!r}; there are {', '.join(AUTHORS_LISTS)}")
    return gzip.decompress((resources.files("dgcnet.data") / "authors_lists" / f"{name}.gz").read_bytes())


def write_lists(data_dir: str | Path, out_dir: str | Path,
                make: Callable[[Path], dict[str, list[str]]] | None = None) -> dict[str, int]:
    """Write the lists of a dataset tree into out_dir (``make``: a dataset's own lister, default
    :func:`make_lists`); returns {file name: number of lines}."""
    lists = (make or make_lists)(Path(data_dir))
    write_list_files(out_dir, {name: "".join(line + "\n" for line in lines).encode() for name, lines in lists.items()})
    return {name: len(lines) for name, lines in lists.items()}


def write_authors_lists(out_dir: str | Path) -> dict[str, int]:
    """Write the authors' six lists into out_dir, byte for byte; returns {file name: number of lines}."""
    contents = {name: authors_list(name) for name in AUTHORS_LISTS}
    write_list_files(out_dir, contents)
    return {name: data.count(b"\n") for name, data in contents.items()}


def write_list_files(out_dir: str | Path, contents: dict[str, bytes]) -> None:
    """Write list files, refusing to replace a different file that is already there."""
    out_dir = Path(out_dir)
    for name, data in contents.items():
        path = out_dir / name
        if path.exists() and (not path.is_file() or path.read_bytes() != data):
            raise DgcnetError(f"{path}: already exists with other content; remove it or choose another --output-dir")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DgcnetError(f"{out_dir}: cannot write the lists ({error.strerror or error})") from None
    for name, data in contents.items():
        write_bytes(out_dir / name, data)  # an interrupted run never leaves half a list
