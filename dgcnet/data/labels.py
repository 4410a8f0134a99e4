"""Class definitions: Cityscapes ids, names and colours, and users' own class files, in one place."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE_INDEX = 255

# (labelId, trainId, name, colour) of the 19 evaluated Cityscapes classes, in trainId order.
_CITYSCAPES = [
    (7, 0, "road", (128, 64, 128)),
    (8, 1, "sidewalk", (244, 35, 232)),
    (11, 2, "building", (70, 70, 70)),
    (12, 3, "wall", (102, 102, 156)),
    (13, 4, "fence", (190, 153, 153)),
    (17, 5, "pole", (153, 153, 153)),
    (19, 6, "traffic light", (250, 170, 30)),
    (20, 7, "traffic sign", (220, 220, 0)),
    (21, 8, "vegetation", (107, 142, 35)),
    (22, 9, "terrain", (152, 251, 152)),
    (23, 10, "sky", (70, 130, 180)),
    (24, 11, "person", (220, 20, 60)),
    (25, 12, "rider", (255, 0, 0)),
    (26, 13, "car", (0, 0, 142)),
    (27, 14, "truck", (0, 0, 70)),
    (28, 15, "bus", (0, 60, 100)),
    (31, 16, "train", (0, 80, 100)),
    (32, 17, "motorcycle", (0, 0, 230)),
    (33, 18, "bicycle", (119, 11, 32)),
]
# Every labelId Cityscapes defines (0..33, plus -1 stored as 255 in 8-bit PNGs).
CITYSCAPES_LABEL_IDS = tuple(range(34)) + (255,)


@dataclass(frozen=True)
class ClassInfo:
    """What a dataset's label PNGs mean.

    ``id_to_train`` maps a stored pixel value (0..255) to a train id (or ``ignore_index``);
    ``None`` means the PNGs already hold train ids. ``valid_ids`` lists the stored values a
    label may contain; anything else is an error in the data. ``dataset`` names a dataset the
    package knows (``cityscapes``, ``camvid``, ...); empty for a user's class file.
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX
    id_to_train: np.ndarray | None = field(default=None, compare=False)
    valid_ids: tuple[int, ...] | None = None
    dataset: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_train_ids(self, label: np.ndarray) -> np.ndarray:
        if self.id_to_train is None:
            return label.astype(np.uint8, copy=False)
        return self.id_to_train[label]

    def train_to_ids(self, train_ids: np.ndarray) -> np.ndarray:
        """Inverse mapping (train id -> stored id), e.g. for the Cityscapes test server."""
        if self.id_to_train is None:
            return train_ids.astype(np.uint8, copy=False)
        inverse = np.zeros(256, dtype=np.uint8)  # ignore maps to 0 ("unlabeled")
        for stored in range(255, -1, -1):
            train = int(self.id_to_train[stored])
            if train != self.ignore_index:
                inverse[train] = stored
        return inverse[train_ids]

    def label_mapping(self) -> tuple[tuple[int, int], ...]:
        """Every stored value a label may hold, with the train id (or ignore) it stands for."""
        stored = self.valid_ids if self.valid_ids is not None else tuple(range(self.num_classes)) + (self.ignore_index,)
        return tuple((int(v), int(self.to_train_ids(np.array([v], dtype=np.uint8))[0])) for v in stored)

    def colorize(self, train_ids: np.ndarray) -> np.ndarray:
        """HxW train ids -> HxWx3 uint8 RGB; ignored and unknown ids are black."""
        palette = np.zeros((256, 3), dtype=np.uint8)
        palette[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        return palette[train_ids]


def _cityscapes() -> ClassInfo:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id, _, _ in _CITYSCAPES:
        lut[label_id] = train_id
    return ClassInfo(
        names=tuple(c[2] for c in _CITYSCAPES),
        colors=tuple(c[3] for c in _CITYSCAPES),
        id_to_train=lut,
        valid_ids=CITYSCAPES_LABEL_IDS,
        dataset="cityscapes",
    )


CITYSCAPES = _cityscapes()
LABEL_ID_TO_TRAIN_ID = CITYSCAPES.id_to_train
