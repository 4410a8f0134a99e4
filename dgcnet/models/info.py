"""``ModelInfo``: the facts needed to run a trained model right, carried by every model as ``model.info``.

Architecture, classes (names, palette, the ids labels store them as), input normalisation and the
training crop with the evaluation tile it implies. Every weights format records them: training
checkpoints (``"info"``), released safetensors and ONNX files (string metadata, :meth:`to_metadata`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from dgcnet.data.classes import default_colors
from dgcnet.data.datasets import DATASETS
from dgcnet.data.labels import CITYSCAPES, IGNORE_INDEX, ClassInfo
from dgcnet.data.transforms import BGR_MEAN, IMAGENET_MEAN, IMAGENET_STD
from dgcnet.errors import DgcnetError

PUBLISHED_CROP = (832, 832)  # the recipe's training crop; its tile 832 gives the protocol's stride 555


def default_stride(tile: int) -> int:
    """The protocol's sliding-window stride: ceil(2/3 of the tile), 555 for 832."""
    return math.ceil(tile * 2 / 3)


@dataclass(frozen=True)
class ModelInfo:
    """What the logits mean, what the input must look like, and how the model was trained to be run.

    ``label_ids``: the value each class is stored as in label PNGs (Cityscapes labelIds, 7 for
    road); equal to the class index for data labelled by class index. ``rgb``: ImageNet RGB
    normalisation (the recipe); False: Caffe-style BGR mean subtraction. ``crop_size``: the
    training crop (height, width). ``tile``/``stride``: the sliding window evaluation uses,
    by default the larger crop side and ceil(2/3 of it). ``dataset``: the named dataset it was
    trained on (``cityscapes``, ``camvid``, ...; empty for a user's class file).
    ``label_mapping``: every value a label PNG of that data may hold, with the class index (or
    ``ignore_index``) it stands for, e.g. CamVid's void 11 -> 255; empty: ``label_ids`` and
    ``ignore_index`` alone.
    """

    arch: str
    num_classes: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    label_ids: tuple[int, ...]
    ignore_index: int = IGNORE_INDEX
    rgb: bool = True
    crop_size: tuple[int, int] = PUBLISHED_CROP
    tile: int = max(PUBLISHED_CROP)
    stride: int = default_stride(max(PUBLISHED_CROP))
    dataset: str = ""
    label_mapping: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        n = self.num_classes
        problems = [what for what, ok in (
            ("class_names", len(self.class_names) == n), ("palette", len(self.palette) == n),
            ("label_ids", len(self.label_ids) == n)) if not ok]
        if problems:
            raise ValueError(f"{', '.join(problems)} must have one entry per class ({n})")
        if n < 1 or min(self.crop_size) < 1 or self.tile < 1 or self.stride < 1:
            raise ValueError("num_classes, crop_size, tile and stride must be positive")
        for stored, index in self.label_mapping:
            if not (0 <= stored <= 255 and (0 <= index < n or index == self.ignore_index)):
                raise ValueError(f"label_mapping: {stored} -> {index} is not a label value (0..255) mapped to "
                                 f"a class (0..{n - 1}) or the ignore index {self.ignore_index}")
        mapped = dict(self.label_mapping)
        disagree = [c for c, stored in enumerate(self.label_ids) if self.label_mapping and mapped.get(stored) != c]
        if disagree:
            raise ValueError(f"label_mapping does not map label_ids to their classes (class {disagree[0]}: "
                             f"label id {self.label_ids[disagree[0]]})")

    @property
    def channels(self) -> str:
        return "RGB" if self.rgb else "BGR"

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel mean on the 0..255 scale, in :attr:`channels` order: input = (pixel - mean) / std."""
        return tuple(round(m * 255.0, 6) for m in IMAGENET_MEAN) if self.rgb else BGR_MEAN  # type: ignore[return-value]

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(round(s * 255.0, 6) for s in IMAGENET_STD) if self.rgb else (1.0, 1.0, 1.0)  # type: ignore[return-value]

    @property
    def classes(self) -> ClassInfo:
        """The classes as the data code knows them: every label value the data may hold readable
        (all 34 Cityscapes label ids; CamVid's void)."""
        mapping = self.label_mapping or tuple((int(i), c) for c, i in enumerate(self.label_ids)) + \
            ((self.ignore_index, self.ignore_index),)
        valid = tuple(sorted({stored for stored, _ in mapping} | {self.ignore_index}))
        if all(stored == index for stored, index in mapping):
            return ClassInfo(self.class_names, self.palette, self.ignore_index, valid_ids=valid, dataset=self.dataset)
        lut = np.full(256, self.ignore_index, dtype=np.uint8)
        for stored, index in mapping:
            lut[stored] = index
        return ClassInfo(self.class_names, self.palette, self.ignore_index, lut, valid, dataset=self.dataset)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, numbers, strings), as a training checkpoint stores them."""
        return {k: _plain(v) for k, v in asdict(self).items()}

    def to_metadata(self) -> dict[str, str]:
        """String metadata for safetensors and ONNX files: ``arch`` as is, every other value JSON;
        ``channels``, ``mean`` and ``std`` spell out the normalisation for readers without dgcnet."""
        values = {**self.to_dict(), "channels": self.channels, "mean": list(self.mean), "std": list(self.std)}
        return {k: v if k in ("arch", "channels") else json.dumps(v) for k, v in values.items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], where: str) -> tuple[ModelInfo, list[str]]:
        """Read :meth:`to_metadata`'s strings; see :meth:`from_values` for what is returned."""
        values: dict[str, Any] = {}
        for key in _FIELDS:
            if key in metadata:
                try:
                    values[key] = metadata[key] if key == "arch" else json.loads(metadata[key])
                except (ValueError, TypeError):
                    raise DgcnetError(f"{where}: metadata {key!r} is not valid JSON: {metadata[key]!r}") from None
        return cls.from_values(values, where)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], where: str) -> tuple[ModelInfo, list[str]]:
        """Facts from plain values (a checkpoint's ``info``). ``arch``, ``num_classes`` and
        ``class_names`` are required; the others, when absent (files of older versions), take the
        published values or ones derived from the classes. Returns the facts and the absent keys."""
        missing = [k for k in ("arch", "num_classes", "class_names") if values.get(k) is None]
        if missing:
            raise DgcnetError(f"{where}: the model description lacks {', '.join(missing)}")
        try:
            names = tuple(str(n) for n in values["class_names"])
            if len(names) != int(values["num_classes"]):  # a file must describe its own output
                raise DgcnetError(f"{where}: {len(names)} class names for {values['num_classes']} classes")
            base = classes_info(str(values["arch"]), _classes_for(names), crop_size=PUBLISHED_CROP)
            given = {k: values[k] for k in _FIELDS if values.get(k) is not None}
            if "crop_size" in given and "tile" not in given:
                base = classes_info(base.arch, base.classes, crop_size=tuple(given["crop_size"]))
            fields = {**asdict(base), **given}
            label_ids = tuple(int(i) for i in fields["label_ids"])
            if "label_mapping" not in given and (label_ids, int(fields["ignore_index"])) != \
                    (base.label_ids, base.ignore_index):
                fields["label_mapping"], fields["dataset"] = (), given.get("dataset", "")  # older files: label_ids alone
            info = cls(arch=str(fields["arch"]), num_classes=int(fields["num_classes"]), class_names=names,
                       palette=tuple(tuple(int(c) for c in color) for color in fields["palette"]),
                       label_ids=label_ids,
                       ignore_index=int(fields["ignore_index"]), rgb=bool(fields["rgb"]),
                       crop_size=tuple(int(s) for s in fields["crop_size"]),
                       tile=int(fields["tile"]), stride=int(fields["stride"]), dataset=str(fields["dataset"]),
                       label_mapping=tuple((int(stored), int(index)) for stored, index in fields["label_mapping"]))
        except (ValueError, TypeError) as error:
            raise DgcnetError(f"{where}: bad model description: {error}") from None
        if len(info.crop_size) != 2:
            raise DgcnetError(f"{where}: bad model description: crop_size must be [height, width]")
        # The dataset and the label mapping follow from the classes in files that predate them.
        return info, [k for k in _FIELDS if k not in given and k not in ("dataset", "label_mapping")]


_FIELDS = ("arch", "num_classes", "class_names", "palette", "label_ids", "ignore_index", "rgb", "crop_size",
           "tile", "stride", "dataset", "label_mapping")


def _plain(value: Any) -> Any:
    """Tuples (nested too) as lists, for JSON and checkpoints."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def cityscapes_label_ids() -> tuple[int, ...]:
    """The labelId of each Cityscapes train id (7 for road ... 33 for bicycle)."""
    return tuple(int(i) for i in CITYSCAPES.train_to_ids(np.arange(CITYSCAPES.num_classes, dtype=np.uint8)))


def _classes_for(names: tuple[str, ...]) -> ClassInfo:
    """A known dataset's classes for its class names (Cityscapes, CamVid, ...); otherwise the names
    labelled by class index, distinct colours."""
    for spec in DATASETS.values():
        if names == spec.classes.names:
            return spec.classes
    return ClassInfo(names=names, colors=default_colors(len(names)))


def classes_info(arch: str, classes: ClassInfo, *, rgb: bool = True,
                 crop_size: tuple[int, int] = PUBLISHED_CROP) -> ModelInfo:
    """The facts of ``arch`` trained on ``classes`` with crops of ``crop_size``: the evaluation
    tile is the larger crop side, the stride ceil(2/3 of it)."""
    n = classes.num_classes
    label_ids = tuple(int(i) for i in classes.train_to_ids(np.arange(n, dtype=np.uint8)))
    tile = max(crop_size)
    return ModelInfo(arch=arch, num_classes=n, class_names=tuple(classes.names), palette=tuple(classes.colors),
                     label_ids=label_ids, ignore_index=classes.ignore_index, rgb=rgb,
                     crop_size=(int(crop_size[0]), int(crop_size[1])), tile=tile, stride=default_stride(tile),
                     dataset=classes.dataset, label_mapping=classes.label_mapping())


def default_info(arch: str, num_classes: int = 19) -> ModelInfo:
    """The published recipe's facts: Cityscapes classes (19), RGB normalisation, 832x832 crop,
    tile 832 at stride 555. Other class counts get names ``class_<i>``, labelled by class index."""
    if num_classes == CITYSCAPES.num_classes:
        return classes_info(arch, CITYSCAPES)
    return classes_info(arch, _classes_for(tuple(f"class_{i}" for i in range(num_classes))))
