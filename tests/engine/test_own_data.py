"""Users' own data end to end: a class file with an id mapping and its own ignore value, through
train, eval and predict."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgcnet.cli import main
from dgcnet.data import SegmentationDataset

CLASSES = """\
names: [background, cat, dog]
colors: [[0, 0, 0], [255, 0, 0], [0, 255, 0]]
ignore_index: 250
id_mapping: {0: 0, 10: 1, 20: 2, 99: 250}
"""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def pets(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        label = rng.choice(np.array([0, 10, 20, 99], dtype=np.uint8), size=(6, 7)).repeat(8, 0).repeat(8, 1)
        image = np.zeros((*label.shape, 3), dtype=np.uint8)
        image[label == 10] = (200, 40, 40)
        image[label == 20] = (40, 200, 40)
        Image.fromarray(image).save(tmp_path / f"{i}.jpg")
        Image.fromarray(label).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.jpg\t{i}.png")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "classes.yaml").write_text(CLASSES)
    return tmp_path


def test_own_ignore_value_becomes_255(pets: Path):
    from dgcnet.data.classes import load_class_file

    dataset = SegmentationDataset(pets, pets / "list.txt", classes=load_class_file(pets / "classes.yaml"))
    stored = np.asarray(Image.open(pets / "0.png"))
    label = dataset[0][1].numpy()
    assert set(np.unique(label)) <= {0, 1, 2, 255}
    np.testing.assert_array_equal(label == 255, stored == 99)


def test_train_eval_predict_with_a_class_file(pets: Path, capsys):
    run = pets / "run"
    assert main(["train", "--arch", "dgcnet_r18", "--data_dir", str(pets), "--data_list", str(pets / "list.txt"),
                 "--classes", str(pets / "classes.yaml"), "--num_classes", "3", "--input_size", "65,65",
                 "--num_steps", "2", "--save_dir", str(run), "--device", "cpu", "--workers", "0",
                 "--ohem_keep", "100", "--log-every", "1"]) == 0
    checkpoint = run / "checkpoint_0000002.pt"
    info = torch.load(checkpoint, weights_only=True)["info"]
    assert info["class_names"] == ["background", "cat", "dog"] and info["crop_size"] == [65, 65]

    out = pets / "eval"
    assert main(["eval", "--data-dir", str(pets), "--data-list", str(pets / "list.txt"), "--restore-from",
                 str(checkpoint), "--classes", str(pets / "classes.yaml"), "--output-dir", str(out),
                 "--mode", "whole", "--workers", "0", "--save-pred", "labelids,color"]) == 0
    import json
    assert len(json.loads((out / "result" / "result.txt").read_text())["IU_array"]) == 3
    stored = np.unique(np.asarray(Image.open(next((out / "labelIds").rglob("*.png")))))
    assert set(stored.tolist()) <= {0, 10, 20}  # written back as the dataset's own ids
    colours = np.asarray(Image.open(next((out / "color").rglob("*.png")))).reshape(-1, 3)
    assert {tuple(c) for c in np.unique(colours, axis=0)} <= {(0, 0, 0), (255, 0, 0), (0, 255, 0)}

    # A class file that does not fit the model is a one-line error.
    (pets / "two.yaml").write_text("names: [a, b]\n")
    assert main(["predict", "--restore-from", str(checkpoint), "--classes", str(pets / "two.yaml"),
                 str(pets / "0.jpg"), "--output-dir", str(pets / "pred"), "--workers", "0"]) == 1
    assert "2 classes, but the model predicts 3" in capsys.readouterr().err


def test_train_refuses_a_class_count_mismatch(pets: Path, capsys):
    # Left unset, the number of classes follows the class file; given, it must agree with it.
    assert main(["train", "--arch", "dgcnet_r18", "--data_dir", str(pets), "--data_list", str(pets / "list.txt"),
                 "--classes", str(pets / "classes.yaml"), "--num_classes", "19", "--save_dir", str(pets / "r"),
                 "--device", "cpu"]) == 1
    assert "has 3 classes but model.num_classes is 19" in capsys.readouterr().err
