"""`dgcnet synth`: Cityscapes layout and names, real label ids, all classes, byte-identical reruns."""
import re
from pathlib import Path

import numpy as np
from PIL import Image

from dgcnet.cli import main
from dgcnet.data import CITYSCAPES, SegmentationDataset, read_list
from dgcnet.data.synth import synth_scene


def test_layout_names_and_lists(synth_dir: Path) -> None:
    images = sorted(p.relative_to(synth_dir).as_posix() for p in synth_dir.rglob("*_leftImg8bit.png"))
    assert len(images) == 11
    for image in images:
        m = re.fullmatch(r"leftImg8bit/(train|val|test)/([a-z]+)/\2_(\d{6})_(\d{6})_leftImg8bit\.png", image)
        assert m, image
        label = synth_dir / f"gtFine/{m[1]}/{m[2]}/{m[2]}_{m[3]}_{m[4]}_gtFine_labelIds.png"
        assert label.is_file()
    lists = {name: (synth_dir / name).read_text() for name in ("train.txt", "val.txt", "test.txt", "trainval.txt")}
    assert lists["trainval.txt"] == lists["train.txt"] + lists["val.txt"]
    assert [len(t.splitlines()) for t in lists.values()] == [6, 3, 2, 9]
    assert all("\t" not in line for line in lists["test.txt"].splitlines())
    assert len(read_list(synth_dir / "trainval.txt", synth_dir)) == 9


def test_labels_hold_real_ids_all_classes_and_some_void(synth_dir: Path) -> None:
    for sample in read_list(synth_dir / "trainval.txt", synth_dir):
        with Image.open(sample.label) as img:
            assert img.mode == "L" and img.size == (128, 64)
            label = np.asarray(img)
        with Image.open(sample.image) as img:
            assert img.mode == "RGB" and img.size == (128, 64)
        ids = set(np.unique(label).tolist())
        assert ids <= set(CITYSCAPES.valid_ids)
        train_ids = CITYSCAPES.to_train_ids(label)
        assert set(np.unique(train_ids).tolist()) == set(range(19)) | {255}
        void = (train_ids == 255).mean()
        assert 0.01 < void < 0.15
        # Sky on top, road at the bottom (above the ego vehicle).
        assert (train_ids[0] == 10).mean() > 0.5
        assert (train_ids[int(0.85 * 64)] == 0).mean() > 0.3


def test_every_class_is_big_enough_at_stride_8() -> None:
    # At 128x256 every class covers at least a few 8x8 output cells in every scene.
    for index in range(20):
        _, label = synth_scene(np.random.default_rng([0, 1, index]), 128, 256)
        counts = np.bincount(CITYSCAPES.to_train_ids(label).ravel(), minlength=256)[:19]
        assert counts.min() >= 3 * 64, (index, counts.argmin(), counts.min())


def test_not_separable_by_colour_alone(synth_dir: Path) -> None:
    # Within one class pixel colours spread widely (texture, lighting, noise).
    dataset = SegmentationDataset(synth_dir, synth_dir / "train.txt")
    image, label, _ = dataset[0]
    for train_id in (0, 2, 8, 13):
        assert image[:, label == train_id].std(dim=1).mean() > 0.1


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    args = ["synth", "--train", "2", "--val", "1", "--size", "40x80", "--seed", "7"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    assert main(["synth", "--train", "2", "--val", "1", "--size", "40x80", "--seed", "8",
                 "--out", str(tmp_path / "c")]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 6 + 3  # 3 images, 3 labels, train/val/trainval lists
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    differs = [(tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes()
               for rel in files if rel.suffix == ".png"]
    assert all(differs)


def test_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    args = ["synth", "--train", "1", "--val", "0", "--size", "32x64", "--out", str(tmp_path)]
    assert main(args) == 0
    before = (tmp_path / "train.txt").read_bytes()
    assert main(args + ["--seed", "1"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "train.txt").read_bytes() == before
