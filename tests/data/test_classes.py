"""Users' own data: class files (YAML/JSON) and a folder dataset through the same code path."""
import json
from pathlib import Path

import numpy as np
import pytest

from dgcnet.cli import main
from dgcnet.data import SegmentationDataset
from dgcnet.data.classes import load_class_file
from dgcnet.errors import DgcnetError
from tests.data.conftest import save_png

YAML = """\
# pets
names: [background, cat, dog]
colors:
  - [0, 0, 0]
  - [255, 0, 0]
  - [0, 255, 0]
ignore_index: 250
id_mapping: {0: 0, 10: 1, 20: 2, 99: 250}
"""


def test_yaml_class_file(tmp_path: Path) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text(YAML)
    info = load_class_file(path)
    assert info.names == ("background", "cat", "dog") and info.num_classes == 3
    assert info.colors == ((0, 0, 0), (255, 0, 0), (0, 255, 0))
    assert info.ignore_index == 250 and info.valid_ids == (0, 10, 20, 99)
    stored = np.array([0, 10, 20, 99, 5], dtype=np.uint8)
    assert info.to_train_ids(stored).tolist() == [0, 1, 2, 250, 250]
    assert info.train_to_ids(np.array([0, 1, 2], dtype=np.uint8)).tolist() == [0, 10, 20]


def test_json_class_file_without_mapping_or_colours(tmp_path: Path) -> None:
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"names": ["a", "b"]}, indent=1))
    info = load_class_file(path)
    assert info.names == ("a", "b") and info.ignore_index == 255 and info.id_to_train is None
    assert info.valid_ids == (0, 1, 255)
    assert len(set(info.colors)) == 2 and all(len(c) == 3 for c in info.colors)


@pytest.mark.parametrize("text, where, message", [
    ("names: [a, b]\ncolors: [[0, 0, 0]]\n", ":2:", "1 colors for 2 names"),
    ("names: [a, b]\ncolors:\n  - [0, 0, 0]\n  - [0, 300, 0]\n", ":4:", "must be in 0..255, got 300"),
    ("names: [a, a]\n", ":1:", "given twice"),
    ("names: [a]\nignore_index: 0\n", ":2:", "is a class index"),
    ("names: [a]\nid_mapping:\n  3: 0\n  4: 7\n", ":4:", "class index 7"),
    ("names: [a]\ncolour: []\n", ":2:", "unknown key 'colour'"),
    ("colors: []\n", ":1:", "missing 'names'"),
    ("names: [a]\nignore_index: high\n", ":2:", "must be an integer, got 'high'"),
    ("names: [a\n", ":2:", "invalid YAML"),
    ("- a\n- b\n", ":1:", "expected a mapping"),
])
def test_class_file_errors_name_file_and_line(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text(text)
    with pytest.raises(DgcnetError) as error:
        load_class_file(path)
    assert str(error.value).startswith(f"{path}{where}") and message in str(error.value)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "classes.json"
    path.write_text('{\n  "names": ["a",]\n}\n')
    with pytest.raises(DgcnetError, match=r"classes\.json:2: invalid JSON"):
        load_class_file(path)


def test_folder_dataset_with_class_file(tmp_path: Path) -> None:
    (tmp_path / "classes.yaml").write_text(YAML)
    info = load_class_file(tmp_path / "classes.yaml")
    label = np.array([[0, 10], [20, 99]], dtype=np.uint8)
    save_png(tmp_path / "images/train/x.png", np.zeros((2, 2, 3), dtype=np.uint8))
    save_png(tmp_path / "labels/train/x.png", label)
    assert main(["lists", "--data-dir", str(tmp_path), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "train.txt").read_text() == "images/train/x.png\tlabels/train/x.png\n"
    dataset = SegmentationDataset(tmp_path, tmp_path / "train.txt", classes=info)
    assert dataset[0][1].tolist() == [[0, 1], [2, 255]]  # the own ignore value arrives as 255
    train = SegmentationDataset(tmp_path, tmp_path / "train.txt", classes=info, train=True, crop_size=(3, 3))
    assert set(train[0][1].unique().tolist()) <= {0, 1, 2, 255}
    # check-data takes its valid ids from the class file.
    args = ["check-data", "--data-dir", str(tmp_path), "--data-list", str(tmp_path / "train.txt")]
    assert main(args + ["--classes", str(tmp_path / "classes.yaml")]) == 0
    assert main(args) == 1  # 10 and 20 are fine Cityscapes ids, 99 is not
