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

from dgcnet.data.classes import default_colors, load_class_file
from dgcnet.data.labels import CITYSCAPES, IGNORE_INDEX, ClassInfo
from dgcnet.data.lists import ade20k_lists, camvid_lists, cityscapes_lists, mapillary_lists, pascal_context_lists
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

# ADE20K (SceneParsing, objectInfo150 order): 150 classes stored as 1..150, 0 is "other objects";
# the palette ADE20K code commonly draws with (mmsegmentation's, for one).
_ADE20K_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
_ADE20K_COLORS = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80), (140, 140, 140),
    (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70),
    (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3), (0, 102, 200),
    (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220),
    (255, 9, 92), (112, 9, 255), (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140),
    (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0), (0, 0, 255),
    (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255), (11, 200, 200), (255, 82, 0), (0, 255, 245),
    (0, 61, 255), (0, 255, 112), (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0),
    (0, 255, 153), (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194), (0, 255, 82),
    (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255), (0, 255, 163), (255, 153, 0),
    (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112),
    (92, 255, 0), (0, 224, 255), (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0),
    (255, 0, 163), (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255), (255, 255, 0),
    (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0), (0, 133, 255), (255, 214, 0),
    (25, 194, 194), (102, 255, 0), (92, 0, 255),
)
ADE20K = indexed_classes("ade20k", _ADE20K_NAMES, _ADE20K_COLORS, first_id=1, void_ids=(0,))

# Pascal Context's 59 most frequent classes as the PNG conversion stores them: 0 is background and
# each class is its rank among the 459-label table's ids, which are in alphabetical order, so the
# values 1..59 follow the names alphabetically. No official palette: distinct hues, the same colour
# for a class in both variants.
_PASCAL_CONTEXT_NAMES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building",
    "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door",
    "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain",
    "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign",
    "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window",
    "wood",
)
_PASCAL_CONTEXT_COLORS = default_colors(len(_PASCAL_CONTEXT_NAMES) + 1)
PASCAL_CONTEXT = indexed_classes("pascal_context", _PASCAL_CONTEXT_NAMES, _PASCAL_CONTEXT_COLORS[1:], first_id=1,
                                 void_ids=(0,))
# The 60-class variant scores background as class 0.
PASCAL_CONTEXT_60 = indexed_classes("pascal_context_60", ("background",) + _PASCAL_CONTEXT_NAMES,
                                    _PASCAL_CONTEXT_COLORS)

# Mapillary Vistas v1.2 (config.json order and colours): 65 classes stored as 0..64, 65 is "Unlabeled".
_MAPILLARY = (
    ("Bird", (165, 42, 42)), ("Ground Animal", (0, 192, 0)), ("Curb", (196, 196, 196)), ("Fence", (190, 153, 153)),
    ("Guard Rail", (180, 165, 180)), ("Barrier", (90, 120, 150)), ("Wall", (102, 102, 156)),
    ("Bike Lane", (128, 64, 255)), ("Crosswalk - Plain", (140, 140, 200)), ("Curb Cut", (170, 170, 170)),
    ("Parking", (250, 170, 160)), ("Pedestrian Area", (96, 96, 96)), ("Rail Track", (230, 150, 140)),
    ("Road", (128, 64, 128)), ("Service Lane", (110, 110, 110)), ("Sidewalk", (244, 35, 232)),
    ("Bridge", (150, 100, 100)), ("Building", (70, 70, 70)), ("Tunnel", (150, 120, 90)), ("Person", (220, 20, 60)),
    ("Bicyclist", (255, 0, 0)), ("Motorcyclist", (255, 0, 100)), ("Other Rider", (255, 0, 200)),
    ("Lane Marking - Crosswalk", (200, 128, 128)), ("Lane Marking - General", (255, 255, 255)),
    ("Mountain", (64, 170, 64)), ("Sand", (230, 160, 50)), ("Sky", (70, 130, 180)), ("Snow", (190, 255, 255)),
    ("Terrain", (152, 251, 152)), ("Vegetation", (107, 142, 35)), ("Water", (0, 170, 30)),
    ("Banner", (255, 255, 128)), ("Bench", (250, 0, 30)), ("Bike Rack", (100, 140, 180)),
    ("Billboard", (220, 220, 220)), ("Catch Basin", (220, 128, 128)), ("CCTV Camera", (222, 40, 40)),
    ("Fire Hydrant", (100, 170, 30)), ("Junction Box", (40, 40, 40)), ("Mailbox", (33, 33, 33)),
    ("Manhole", (100, 128, 160)), ("Phone Booth", (142, 0, 0)), ("Pothole", (70, 100, 150)),
    ("Street Light", (210, 170, 100)), ("Pole", (153, 153, 153)), ("Traffic Sign Frame", (128, 128, 128)),
    ("Utility Pole", (0, 0, 80)), ("Traffic Light", (250, 170, 30)), ("Traffic Sign (Back)", (192, 192, 192)),
    ("Traffic Sign (Front)", (220, 220, 0)), ("Trash Can", (140, 140, 20)), ("Bicycle", (119, 11, 32)),
    ("Boat", (150, 0, 255)), ("Bus", (0, 60, 100)), ("Car", (0, 0, 142)), ("Caravan", (0, 0, 90)),
    ("Motorcycle", (0, 0, 230)), ("On Rails", (0, 80, 100)), ("Other Vehicle", (128, 64, 64)),
    ("Trailer", (0, 0, 110)), ("Truck", (0, 0, 70)), ("Wheeled Slow", (0, 0, 192)), ("Car Mount", (32, 32, 32)),
    ("Ego Vehicle", (120, 10, 10)),
)
MAPILLARY = indexed_classes("mapillary", tuple(n for n, _ in _MAPILLARY), tuple(c for _, c in _MAPILLARY),
                            void_ids=(65,))

_PASCAL_CONTEXT_SOURCE = (
    "Download the VOC2010 trainval tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2010/) and the Pascal Context "
    "annotations (https://cs.stanford.edu/~roozbeh/pascal-context/), convert the annotations to PNG label maps "
    "in VOCdevkit/VOC2010/SegmentationClassContext/ with the Detail API (as mmsegmentation's "
    "tools/convert_datasets/pascal_context.py does, which also writes the splits to "
    "ImageSets/SegmentationContext/), then run `dgcnet lists --dataset {name} --data-dir DIR --output-dir DIR` "
    "(DIR: the folder holding VOCdevkit)")

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
    "ade20k": DatasetSpec(
        name="ade20k", title="ADE20K (SceneParsing benchmark, 150 classes)", classes=ADE20K,
        crop_size=(512, 512), scale_range=(0.5, 2.0), make_lists=ade20k_lists,
        where_to_get="Download ADEChallengeData2016.zip from the MIT Scene Parsing benchmark "
                     "(http://sceneparsing.csail.mit.edu/), unzip it (and release_test.zip into the same folder "
                     "for the test images), then run `dgcnet lists --dataset ade20k --data-dir DIR --output-dir DIR` "
                     "(DIR: ADEChallengeData2016)"),
    # Crop 480: the crop Pascal Context recipes commonly use (VOC images are at most 500 pixels a side).
    "pascal_context": DatasetSpec(
        name="pascal_context", title="Pascal Context (59 classes, background ignored)", classes=PASCAL_CONTEXT,
        crop_size=(480, 480), scale_range=(0.5, 2.0), make_lists=pascal_context_lists,
        where_to_get=_PASCAL_CONTEXT_SOURCE.format(name="pascal_context")),
    "pascal_context_60": DatasetSpec(
        name="pascal_context_60", title="Pascal Context (60 classes, background included)",
        classes=PASCAL_CONTEXT_60, crop_size=(480, 480), scale_range=(0.5, 2.0), make_lists=pascal_context_lists,
        where_to_get=_PASCAL_CONTEXT_SOURCE.format(name="pascal_context_60")),
    # The Cityscapes recipe's crop and scales, which the authors' Mapillary reader also draws (it first scales
    # each image's long side to 2177 pixels; this loader does not).
    "mapillary": DatasetSpec(
        name="mapillary", title="Mapillary Vistas (v1.2, 65 classes)", classes=MAPILLARY,
        crop_size=(832, 832), scale_range=(0.7, 2.1), make_lists=mapillary_lists,
        where_to_get="Mapillary Vistas needs a free account: download it from "
                     "https://www.mapillary.com/dataset/vistas, unzip it, then run "
                     "`dgcnet lists --dataset mapillary --data-dir DIR --output-dir DIR`"),
}
DATASET_NAMES = tuple(DATASETS)
# The path prefixes of the known datasets' published lists, which stand for the data folder.
LIST_PREFIXES = tuple(spec.list_prefix for spec in DATASETS.values() if spec.list_prefix)


def get_dataset(name: str) -> DatasetSpec:
    """The spec of a dataset by name; an unknown name is a one-line error listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DgcnetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)} "
                          f"(or describe your own with a class file, --classes)") from None


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
