"""The authors' six Cityscapes lists, read against a tree of tiny PNGs with exactly their file
names, and the list writer reproducing them from that tree."""
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgcnet.cli import main
from dgcnet.data import SegmentationDataset, read_list
from dgcnet.data.dataset import check_files_exist
from dgcnet.data.lists import AUTHORS_LISTS, make_lists

REAL_LISTS = ("train.txt", "val.txt", "test.txt", "trainval.txt", "train+.txt", "train++.txt")
# sha256 of the authors' own files, as published with their code.
AUTHORS_SHA256 = {
    "test.txt": "1621b89c37ac43437dd23c6acf5cf533d088e825983068e2ed543b987adfa16b",
    "train++.txt": "723c9c7cfb1d81d9d0592a5991d9777b46a3f106a752b7552b60fc768cde32c8",
    "train+.txt": "ad4a09aba828f18c4268490b9e230e53f5b45ea7fc5e557365a3c3b28361e80d",
    "train.txt": "25647778c44e295522e6f53720bf272f84fc643d4a0eddfee3875a00e23873d6",
    "trainval.txt": "eba9de9631bd78a66a1e87cb7fdcfc01a2facf6f2e7d2364936f4ef773f5970c",
    "val.txt": "9f201d730966d5850cc10db842e1d1e0ada8b64a99f1b748fcd909fbc0911e9a",
}


@pytest.fixture(scope="session")
def lists_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The authors' lists as `dgcnet lists --authors` writes them."""
    out = tmp_path_factory.mktemp("authors_lists")
    assert main(["lists", "--authors", "--output-dir", str(out)]) == 0
    return out


def test_authors_lists_are_written_byte_for_byte(lists_dir: Path, tmp_path: Path) -> None:
    assert set(AUTHORS_LISTS) == set(REAL_LISTS) == set(AUTHORS_SHA256)
    assert sorted(p.name for p in lists_dir.iterdir()) == sorted(REAL_LISTS)
    for name in REAL_LISTS:
        assert hashlib.sha256((lists_dir / name).read_bytes()).hexdigest() == AUTHORS_SHA256[name], name
    # Again into the same folder: nothing changes; a different file there is never replaced.
    assert main(["lists", "--authors", "--output_dir", str(lists_dir)]) == 0
    (tmp_path / "val.txt").write_text("mine\n")
    assert main(["lists", "--authors", "--out", str(tmp_path)]) == 1
    assert (tmp_path / "val.txt").read_text() == "mine\n"


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def real_tree(tmp_path_factory: pytest.TempPathFactory, lists_dir: Path) -> Path:
    """Every file named by the six real lists, as an 8x16 PNG (labels hold road and sky ids)."""
    root = tmp_path_factory.mktemp("cityscapes")
    image, label = root / "image.png", root / "label.png"
    image.write_bytes(_png_bytes(np.full((8, 16, 3), 90, dtype=np.uint8)))
    label_ids = np.full((8, 16), 7, dtype=np.uint8)
    label_ids[:4] = 23
    label.write_bytes(_png_bytes(label_ids))
    paths = set()
    for name in REAL_LISTS:
        for line in (lists_dir / name).read_text().splitlines():
            paths.update(line.split())
    folders = {str(Path(rel).parent) for rel in paths}
    for folder in sorted(folders):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for rel in paths:  # hard links: ~50k files in a few seconds
        os.link(image if rel.startswith("leftImg8bit/") else label, root / rel)
    return root


@pytest.mark.parametrize("name", REAL_LISTS)
def test_reads_every_real_list(real_tree: Path, lists_dir: Path, name: str) -> None:
    lines = (lists_dir / name).read_text().splitlines()
    samples = read_list(lists_dir / name, real_tree)
    assert len(samples) == len(lines)
    check_files_exist(samples[::50])  # all of them would take long for the 23k-line lists
    step = 1 if len(lines) < 5000 else 7  # a spread-out seventh of the 23k-line lists
    for sample, line in list(zip(samples, lines))[::step]:
        columns = line.split()
        assert sample.image == real_tree / columns[0]
        assert sample.label == (real_tree / columns[1] if len(columns) == 2 else None)
    if name == "test.txt":
        assert all(s.label is None for s in samples)
    else:
        assert all(s.label is not None and s.label.name.endswith("_labelIds.png") for s in samples)
    coarse = [s for s in samples if s.label is not None and "gtCoarse" in s.label.parts]
    assert bool(coarse) == (name in ("train+.txt", "train++.txt"))


def test_space_separated_line_and_coarse_labels_load(real_tree: Path, lists_dir: Path, tmp_path: Path) -> None:
    # Line 13 of the authors' train.txt separates its columns with three spaces, not a tab.
    assert "   " in (lists_dir / "train.txt").read_text().splitlines()[12]
    train = read_list(lists_dir / "train.txt", real_tree)
    assert train[12].label == real_tree / "gtFine/train/aachen/aachen_000012_000019_gtFine_labelIds.png"
    coarse = next(line for line in (lists_dir / "train+.txt").read_text().splitlines() if "gtCoarse" in line)
    (tmp_path / "coarse.txt").write_text(coarse + "\n")
    image, label, _ = SegmentationDataset(real_tree, tmp_path / "coarse.txt")[0]
    assert image.shape == (3, 8, 16)
    assert label[:4].unique().tolist() == [10] and label[4:].unique().tolist() == [0]  # sky, road
    test = SegmentationDataset(real_tree, lists_dir / "test.txt")
    assert test[0][1].numel() == 0


def test_lists_command_reproduces_the_authors_lists(real_tree: Path, lists_dir: Path, tmp_path: Path) -> None:
    assert main(["lists", "--data-dir", str(real_tree), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.txt", "train.txt", "trainval.txt", "val.txt"]
    for name in ("val.txt", "test.txt", "trainval.txt"):
        assert (tmp_path / name).read_bytes() == (lists_dir / name).read_bytes(), name
    # train.txt matches byte for byte except the authors' one space-separated line.
    real = (lists_dir / "train.txt").read_bytes()
    assert real.count(b"png   gtFine") == 1
    assert (tmp_path / "train.txt").read_bytes() == real.replace(b"png   gtFine", b"png\tgtFine")


def test_lists_need_labels_for_train_and_val(tmp_path: Path) -> None:
    image = tmp_path / "leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(_png_bytes(np.zeros((8, 16, 3), dtype=np.uint8)))
    with pytest.raises(Exception, match="lindau_000000_000019_gtFine_labelIds.png is missing"):
        make_lists(tmp_path)
    assert main(["lists", "--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 1


def test_folder_dataset_lists(tmp_path: Path) -> None:
    for split, with_labels in (("train", True), ("unlabelled", False)):
        for name in ("b", "a"):
            path = tmp_path / "images" / split / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path)
            if with_labels:
                label = tmp_path / "labels" / split / f"{name}.png"
                label.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(label)
    lists = make_lists(tmp_path)
    assert lists == {"train.txt": ["images/train/a.jpg\tlabels/train/a.png", "images/train/b.jpg\tlabels/train/b.png"],
                     "unlabelled.txt": ["images/unlabelled/a.jpg", "images/unlabelled/b.jpg"]}
