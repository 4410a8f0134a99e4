"""ADE20K, Pascal Context (59 and 60 classes) and Mapillary Vistas by name: tiny made-up trees in
each dataset's own layout, their lists, their class tables, check-data and the loader."""
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from dgcnet.cli import main
from dgcnet.data import SegmentationDataset
from dgcnet.data.datasets import DATASETS, get_dataset
from dgcnet.data.lists import make_lists
from dgcnet.errors import DgcnetError
from dgcnet.models.info import ModelInfo, classes_info

SIZE = (6, 10)  # height, width of every made-up image


def save_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(SIZE + (3,), 120, dtype=np.uint8)).save(path)


def save_label(path: Path, values: tuple[int, int], palette: bool = False) -> None:
    """A label whose top half holds values[0] and bottom half values[1]; ``palette``: a palette PNG
    (mode P), as Mapillary Vistas stores its labels."""
    array = np.full(SIZE, values[1], dtype=np.uint8)
    array[: SIZE[0] // 2] = values[0]
    image = Image.fromarray(array)
    if palette:
        image.putpalette([c for i in range(256) for c in (i, 255 - i, 0)])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def ade20k_tree(root: Path) -> dict[str, str]:
    """ADEChallengeData2016 (plus release_test/testing/); labels hold 0 (other objects) and 1..150."""
    for split, names, values in (("training", ("ADE_train_00000002", "ADE_train_00000001"), (0, 150)),
                                 ("validation", ("ADE_val_00000001",), (1, 0))):
        for name in names:
            save_image(root / "images" / split / f"{name}.jpg")
            save_label(root / "annotations" / split / f"{name}.png", values)
    save_image(root / "release_test/testing/ADE_test_00000001.jpg")
    train = ("images/training/ADE_train_00000001.jpg\tannotations/training/ADE_train_00000001.png\n"
             "images/training/ADE_train_00000002.jpg\tannotations/training/ADE_train_00000002.png\n")
    val = "images/validation/ADE_val_00000001.jpg\tannotations/validation/ADE_val_00000001.png\n"
    return {"train.txt": train, "val.txt": val, "test.txt": "release_test/testing/ADE_test_00000001.jpg\n",
            "trainval.txt": train + val}


def pascal_context_tree(root: Path) -> dict[str, str]:
    """VOCdevkit/VOC2010 with the converted labels (0 background, 1..59) and the split files; one
    image of VOC2010 is in neither split."""
    voc = root / "VOCdevkit/VOC2010"
    for image_id, values in (("2008_000002", (0, 59)), ("2008_000003", (1, 0)), ("2008_000007", (5, 6)),
                             ("2008_000008", (0, 0))):
        save_image(voc / "JPEGImages" / f"{image_id}.jpg")
        save_label(voc / "SegmentationClassContext" / f"{image_id}.png", values)
    splits = voc / "ImageSets/SegmentationContext"
    splits.mkdir(parents=True)
    (splits / "train.txt").write_text("2008_000003\n2008_000002\n")
    (splits / "val.txt").write_text("2008_000007\n\n")

    def line(image_id: str) -> str:
        return (f"VOCdevkit/VOC2010/JPEGImages/{image_id}.jpg\t"
                f"VOCdevkit/VOC2010/SegmentationClassContext/{image_id}.png\n")
    train, val = line("2008_000002") + line("2008_000003"), line("2008_000007")
    return {"train.txt": train, "val.txt": val, "trainval.txt": train + val}


def mapillary_tree(root: Path) -> dict[str, str]:
    """Mapillary Vistas v1.2: palette labels holding 0..64 and 65 (unlabeled)."""
    for split, name, values in (("training", "Zx9", (65, 64)), ("training", "-a1", (0, 13)),
                                ("validation", "b2", (27, 65))):
        save_image(root / split / "images" / f"{name}.jpg")
        save_label(root / split / "labels" / f"{name}.png", values, palette=True)
    save_image(root / "testing/images/c3.jpg")
    train = "training/images/-a1.jpg\ttraining/labels/-a1.png\ntraining/images/Zx9.jpg\ttraining/labels/Zx9.png\n"
    val = "validation/images/b2.jpg\tvalidation/labels/b2.png\n"
    return {"train.txt": train, "val.txt": val, "test.txt": "testing/images/c3.jpg\n", "trainval.txt": train + val}


TREES: dict[str, Callable[[Path], dict[str, str]]] = {
    "ade20k": ade20k_tree, "pascal_context": pascal_context_tree, "pascal_context_60": pascal_context_tree,
    "mapillary": mapillary_tree,
}
# Per dataset: (class count, stored values that are ignored, stored value of the first and last class,
# a stored value outside the dataset's set).
FACTS = {
    "ade20k": (150, (0,), (1, 150), 151),
    "pascal_context": (59, (0,), (1, 59), 60),
    "pascal_context_60": (60, (), (0, 59), 60),
    "mapillary": (65, (65,), (0, 64), 66),
}


def write_lists(name: str, tmp_path: Path) -> tuple[Path, Path]:
    data, out = tmp_path / "data", tmp_path / "lists"
    expected = TREES[name](data)
    assert main(["lists", "--dataset", name, "--data-dir", str(data), "--output-dir", str(out)]) == 0
    assert {p.name: p.read_text() for p in out.iterdir()} == expected
    return data, out


def test_named_datasets_follow_cityscapes_and_camvid() -> None:
    assert list(DATASETS) == ["cityscapes", "camvid", "ade20k", "pascal_context", "pascal_context_60", "mapillary"]


@pytest.mark.parametrize("name", TREES)
def test_lists_of_each_layout(name: str, tmp_path: Path) -> None:
    data, out = write_lists(name, tmp_path)
    # The layout is recognised without --dataset too.
    assert {f: "".join(line + "\n" for line in lines) for f, lines in make_lists(data).items()} == \
        {p.name: p.read_text() for p in out.iterdir()}


@pytest.mark.parametrize("name", TREES)
def test_class_tables(name: str) -> None:
    count, ignored, (first, last), _ = FACTS[name]
    classes = get_dataset(name).classes
    assert classes.num_classes == len(classes.colors) == count
    assert len(set(classes.names)) == count
    stored = np.array(ignored + (first, last, 255), dtype=np.uint8)
    assert classes.to_train_ids(stored).tolist() == [255] * len(ignored) + [0, count - 1, 255]
    assert classes.dataset == name


def test_class_names_as_published() -> None:
    ade = get_dataset("ade20k").classes
    assert (ade.names[0], ade.names[44], ade.names[149]) == ("wall", "chest of drawers", "flag")
    pascal = get_dataset("pascal_context").classes
    assert pascal.names == tuple(sorted(pascal.names))  # the conversion stores them alphabetically
    assert get_dataset("pascal_context_60").classes.names == ("background",) + pascal.names
    assert get_dataset("pascal_context_60").classes.colors[1:] == pascal.colors
    mapillary = get_dataset("mapillary").classes
    assert (mapillary.names[13], mapillary.colors[13]) == ("Road", (128, 64, 128))
    assert mapillary.names[-2:] == ("Car Mount", "Ego Vehicle")


@pytest.mark.parametrize("name", TREES)
def test_check_data_passes_and_reports_unknown_values(name: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data, out = write_lists(name, tmp_path)
    check = ["check-data", "--dataset", name, "--data-dir", str(data), "--workers", "1", "--prepared", "none"]
    for split in ("train.txt", "val.txt"):
        capsys.readouterr()
        assert main(check + ["--data-list", str(out / split)]) == 0, capsys.readouterr().out
    bad = FACTS[name][3]
    label = data / (out / "val.txt").read_text().split()[1]
    save_label(label, (bad, 0), palette=name == "mapillary")
    capsys.readouterr()
    assert main(check + ["--data-list", str(out / "val.txt")]) == 1
    assert f"label ids outside the known set: {bad}" in capsys.readouterr().out


@pytest.mark.parametrize("name", TREES)
def test_loader_gives_ignored_values_as_255(name: str, tmp_path: Path) -> None:
    data, out = write_lists(name, tmp_path)
    classes = get_dataset(name).classes
    dataset = SegmentationDataset(data, out / "trainval.txt", classes=classes, train=False)
    seen = set()
    for index in range(len(dataset)):
        stored = np.asarray(Image.open(data / dataset.samples[index].label))
        _, label, _ = dataset[index]
        assert label.shape == SIZE
        assert label.numpy().tolist() == classes.to_train_ids(stored).tolist()
        seen.update(label.unique().tolist())
    if FACTS[name][1]:  # every made-up tree labels some pixels with an ignored value
        assert 255 in seen
    assert seen - {255} and max(seen - {255}) < classes.num_classes


@pytest.mark.parametrize("name", TREES)
def test_model_info_round_trips_the_classes(name: str) -> None:
    classes = get_dataset(name).classes
    info = classes_info("dgcnet_r18", classes)
    read, missing = ModelInfo.from_metadata(info.to_metadata(), "model.safetensors")
    assert read == info and missing == []
    assert read.classes == classes
    assert read.classes.label_mapping() == classes.label_mapping()
    assert read.dataset == name


def test_pascal_context_in_the_voc2010_folder(tmp_path: Path) -> None:
    pascal_context_tree(tmp_path)
    lists = make_lists(tmp_path / "VOCdevkit/VOC2010")
    assert lists["val.txt"] == ["JPEGImages/2008_000007.jpg\tSegmentationClassContext/2008_000007.png"]


def test_missing_labels_are_errors(tmp_path: Path) -> None:
    save_image(tmp_path / "ade/images/training/a.jpg")
    (tmp_path / "ade/annotations/validation").mkdir(parents=True)
    with pytest.raises(DgcnetError, match="labels folder .*annotations/training is missing"):
        make_lists(tmp_path / "ade")
    pascal_context_tree(tmp_path / "pc")
    (tmp_path / "pc/VOCdevkit/VOC2010/SegmentationClassContext/2008_000003.png").unlink()
    with pytest.raises(DgcnetError, match="2008_000003: .*2008_000003.png is missing"):
        make_lists(tmp_path / "pc")


def test_mapillary_v2_download_layout(tmp_path: Path) -> None:
    """The v2.0 download keeps the v1.2 labels in <split>/v1.2/labels/."""
    save_image(tmp_path / "training/images/a.jpg")
    save_label(tmp_path / "training/v1.2/labels/a.png", (1, 2), palette=True)
    save_label(tmp_path / "training/v2.0/labels/a.png", (100, 2), palette=True)
    assert make_lists(tmp_path) == {"train.txt": ["training/images/a.jpg\ttraining/v1.2/labels/a.png"]}


def test_folder_dataset_with_ade20k_split_names(tmp_path: Path) -> None:
    """images/training/ with labels/training/ is a folder dataset; only annotations/ makes it ADE20K."""
    save_image(tmp_path / "images/training/a.jpg")
    save_label(tmp_path / "labels/training/a.png", (0, 1))
    assert make_lists(tmp_path) == {"training.txt": ["images/training/a.jpg\tlabels/training/a.png"]}
