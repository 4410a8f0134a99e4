"""labelId <-> trainId, names and colours, checked against DESIGN.md section 2 and the official
Cityscapes table."""
import numpy as np

from dgcnet.data.labels import CITYSCAPES, IGNORE_INDEX, LABEL_ID_TO_TRAIN_ID

# DESIGN.md section 2.
DESIGN_MAPPING = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                  25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
# cityscapesScripts' labels.py: name and colour of each evaluated class, in trainId order.
OFFICIAL = [("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)), ("building", (70, 70, 70)),
            ("wall", (102, 102, 156)), ("fence", (190, 153, 153)), ("pole", (153, 153, 153)),
            ("traffic light", (250, 170, 30)), ("traffic sign", (220, 220, 0)),
            ("vegetation", (107, 142, 35)), ("terrain", (152, 251, 152)), ("sky", (70, 130, 180)),
            ("person", (220, 20, 60)), ("rider", (255, 0, 0)), ("car", (0, 0, 142)), ("truck", (0, 0, 70)),
            ("bus", (0, 60, 100)), ("train", (0, 80, 100)), ("motorcycle", (0, 0, 230)),
            ("bicycle", (119, 11, 32))]


def test_label_to_train_lookup_table() -> None:
    assert LABEL_ID_TO_TRAIN_ID.shape == (256,) and LABEL_ID_TO_TRAIN_ID.dtype == np.uint8
    for stored in range(256):
        assert LABEL_ID_TO_TRAIN_ID[stored] == DESIGN_MAPPING.get(stored, IGNORE_INDEX), stored
    label = np.array([[7, 0, 33], [255, 24, 6]], dtype=np.uint8)  # 255 is how -1 is stored
    assert CITYSCAPES.to_train_ids(label).tolist() == [[0, 255, 18], [255, 11, 255]]


def test_inverse_mapping() -> None:
    train_ids = np.arange(19, dtype=np.uint8).reshape(1, 19)
    assert CITYSCAPES.train_to_ids(train_ids)[0].tolist() == sorted(DESIGN_MAPPING)
    assert CITYSCAPES.train_to_ids(np.array([255], dtype=np.uint8)).tolist() == [0]
    stored = np.array(sorted(DESIGN_MAPPING), dtype=np.uint8)
    assert (CITYSCAPES.train_to_ids(CITYSCAPES.to_train_ids(stored)) == stored).all()


def test_names_colours_and_valid_ids() -> None:
    assert CITYSCAPES.names == tuple(name for name, _ in OFFICIAL)
    assert CITYSCAPES.colors == tuple(colour for _, colour in OFFICIAL)
    assert CITYSCAPES.num_classes == 19 and CITYSCAPES.ignore_index == 255
    assert set(CITYSCAPES.valid_ids) == set(range(34)) | {255}
    rgb = CITYSCAPES.colorize(np.array([[0, 10, 255]], dtype=np.uint8))
    assert rgb.tolist() == [[[128, 64, 128], [70, 130, 180], [0, 0, 0]]]
