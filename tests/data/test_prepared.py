"""The prepared store (`dgcnet prepare`): the same training samples as decoding the files, resumable
and idempotent preparation, and every kind of stale or damaged store data an error naming the file."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import dgcnet.data.prepare as prepare_module
from dgcnet.cli import main
from dgcnet.data import SegmentationDataset, load_class_file
from dgcnet.data.dataset import collate
from dgcnet.data.prepare import check_store, prepare
from dgcnet.data.store import MANIFEST, default_store, find_store
from dgcnet.data.synth import write_synth
from dgcnet.data.transforms import WindowBatch
from dgcnet.errors import DgcnetError

CROP = (48, 80)  # larger than the 64x128 images at scale 0.7 (45x90): padded crops too


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A fresh synthetic tree (4 train images of 64x128) with its store at the default place."""
    root = tmp_path / "data"
    write_synth(root, train=4, val=0, size=(64, 128), seed=7)
    prepare(root, root / "train.txt")
    return root


def _draws(dataset: SegmentationDataset, index: int, image_size: tuple[int, int]) -> tuple[int, str, str, bool]:
    """The scale step, vertical and horizontal crop position (first, last, inner) and flip of a
    sample, drawn as TrainAugment draws them."""
    rng = dataset.rng(index)
    height, width = image_size
    k = int(rng.integers(0, 15))
    f = 0.7 + k / 10.0
    h, w = int(height * f + 0.5), int(width * f + 0.5)
    top_max, left_max = max(h, CROP[0]) - CROP[0], max(w, CROP[1]) - CROP[1]
    top, left = int(rng.integers(0, top_max + 1)), int(rng.integers(0, left_max + 1))
    where = lambda p, last: "first" if p == 0 else "last" if p == last else "inner"  # noqa: E731
    return k, where(top, top_max), where(left, left_max), bool(rng.random() < 0.5)


def test_same_samples_as_decoding_the_files(data: Path) -> None:
    files = SegmentationDataset(data, data / "train.txt", train=True, crop_size=CROP, seed=3, prepared=None)
    stored = SegmentationDataset(data, data / "train.txt", train=True, crop_size=CROP, seed=3, prepared="auto")
    assert files.store is None and stored.store is not None
    seen = set()
    for epoch in range(60):
        files.set_epoch(epoch)
        stored.set_epoch(epoch)
        for index in range(len(files)):
            x, y, _ = files[index]
            xs, ys, _ = stored[index]
            torch.testing.assert_close(xs, x, atol=1e-6, rtol=0)
            assert torch.equal(ys, y)
            k, top, left, flip = _draws(files, index, (64, 128))
            seen |= {("scale", k), ("top", top), ("left", left), ("flip", flip)}
    # The draws covered every scale (the smallest pads the crop), crops at every border, and flips.
    assert {("scale", k) for k in range(15)} <= seen
    assert {("top", "first"), ("top", "last"), ("left", "first"), ("left", "last"), ("flip", True),
            ("flip", False)} <= seen


@pytest.mark.parametrize("prepared", [None, "auto"])
def test_windows_resized_later_are_the_same_crops(data: Path, prepared: str | None) -> None:
    """The loader's uint8 windows, batched and resized as the training device does it, give the
    crops the loader would have made: the same bits, over every scale, border and flip."""
    whole = SegmentationDataset(data, data / "train.txt", train=True, crop_size=CROP, seed=5, prepared=prepared)
    windows = SegmentationDataset(data, data / "train.txt", train=True, crop_size=CROP, seed=5, prepared=prepared,
                                  resize_on_device=True)
    seen = set()
    for epoch in range(60):
        whole.set_epoch(epoch)
        windows.set_epoch(epoch)
        expected = collate([whole[i] for i in range(len(whole))])
        batch = collate([windows[i] for i in range(len(windows))])
        assert isinstance(batch[0], WindowBatch) and len(batch[0]) == len(whole)
        # The windows are what the crops read, no more: the crop's size over the scale, and the taps around it.
        for window in batch[0].windows:
            assert window.pixels.dtype == torch.uint8
            f = window.crop.scaled[0] / window.crop.source[0]
            assert window.pixels.shape[0] <= CROP[0] / f + 3 and window.pixels.shape[1] <= CROP[1] / f + 3
        assert torch.equal(batch[0].images(windows.augment, torch.device("cpu")), expected[0])
        assert torch.equal(batch[1], expected[1]) and torch.equal(batch[2], expected[2])
        for index in range(len(whole)):
            k, top, left, flip = _draws(whole, index, (64, 128))
            seen |= {("scale", k), ("top", top), ("left", left), ("flip", flip)}
    assert {("scale", k) for k in range(15)} <= seen
    assert {("top", "first"), ("top", "last"), ("left", "first"), ("left", "last"), ("flip", True),
            ("flip", False)} <= seen


def test_store_holds_the_decoded_arrays(data: Path) -> None:
    files = SegmentationDataset(data, data / "train.txt", prepared=None)
    stored = SegmentationDataset(data, data / "train.txt", prepared="auto")
    for index in range(len(files)):
        image, label = files.load(index)
        stored_image, stored_label = stored.load(index)
        assert stored_image.dtype == np.uint8 and np.array_equal(stored_image, image)
        assert np.array_equal(stored_label, label)  # train ids, not the PNGs' label ids
    assert "prepared store" in stored.source and "decoding" in files.source


def test_worker_processes_share_one_store(data: Path) -> None:
    dataset = SegmentationDataset(data, data / "train.txt", train=True, crop_size=CROP, prepared="auto")

    def batches(workers: int) -> list[torch.Tensor]:
        return [t for images, labels, _ in DataLoader(dataset, batch_size=2, num_workers=workers)
                for t in (images, labels)]

    assert all(torch.equal(a, b) for a, b in zip(batches(0), batches(2)))


def test_prepare_is_idempotent_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    write_synth(root, train=5, val=0, size=(32, 64), seed=1)
    real = prepare_module._prepare_sample
    calls = []

    def interrupted(dataset, index, store, data_dir):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(index)
        return real(dataset, index, store, data_dir)

    monkeypatch.setattr(prepare_module, "_prepare_sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(root, root / "train.txt", workers=1)
    monkeypatch.setattr(prepare_module, "_prepare_sample", real)
    manifest = json.loads((default_store(root) / MANIFEST).read_text())
    assert len(manifest["images"]) == 2  # the finished samples were recorded
    assert not list(default_store(root).rglob("*.tmp"))

    resumed = prepare(root, root / "train.txt")
    assert (resumed.prepared, resumed.up_to_date, resumed.samples) == (3, 2, 5)
    again = prepare(root, root / "train.txt")
    assert (again.prepared, again.up_to_date) == (0, 5)


def _change(path: Path) -> None:
    """Rewrite a PNG with other pixels and a later modification time."""
    array = np.asarray(Image.open(path)).copy()
    array[0, 0] = 255 - array[0, 0]
    Image.fromarray(array).save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_changed_source_file_is_an_error_naming_it_until_prepared_again(data: Path) -> None:
    image = SegmentationDataset(data, data / "train.txt").samples[2].image
    _change(image)
    with pytest.raises(DgcnetError, match=rf"train.txt:3: {image}: changed since it was prepared"):
        SegmentationDataset(data, data / "train.txt", train=True, prepared="auto")
    problems = check_store(default_store(data), data, data / "train.txt").problems
    assert [(p.line, p.path) for p in problems] == [(3, image)]
    assert prepare(data, data / "train.txt").prepared == 1
    files = SegmentationDataset(data, data / "train.txt", prepared=None)
    stored = SegmentationDataset(data, data / "train.txt", prepared="auto")
    assert np.array_equal(stored.load(2)[0], files.load(2)[0])


def test_sample_missing_from_the_store_is_an_error(data: Path) -> None:
    lines = (data / "train.txt").read_text().splitlines()
    shutil.copy(data / lines[0].split()[0], data / "extra.png")
    (data / "longer.txt").write_text("\n".join(lines + [f"extra.png\t{lines[0].split()[1]}"]) + "\n")
    with pytest.raises(DgcnetError, match=r"longer.txt:5: .*extra.png: not in the prepared store"):
        SegmentationDataset(data, data / "longer.txt", train=True, prepared="auto")


def test_damaged_arrays_are_errors_naming_the_array(data: Path) -> None:
    store = default_store(data)
    manifest = json.loads((store / MANIFEST).read_text())
    first = SegmentationDataset(data, data / "train.txt").samples[0]
    image_key = first.image.relative_to(data).as_posix()
    label_key = first.label.relative_to(data).as_posix()
    truncated = store / manifest["images"][image_key]["file"]
    truncated.write_bytes(truncated.read_bytes()[:1000])
    altered = store / manifest["labels"][label_key]["file"]
    altered_bytes = bytearray(altered.read_bytes())
    altered_bytes[-1] ^= 1
    altered.write_bytes(bytes(altered_bytes))

    dataset = SegmentationDataset(data, data / "train.txt", train=True, crop_size=CROP, prepared="auto")
    with pytest.raises(DgcnetError, match=rf"train.txt:1: {truncated}: prepared array of {first.image} is unreadable"):
        dataset[0]
    problems = check_store(store, data, data / "train.txt").problems
    assert {(p.line, p.path) for p in problems} == {(1, truncated), (1, altered)}
    assert "checksum" in next(p.message for p in problems if p.path == altered)


def test_labels_prepared_for_other_classes_are_an_error(data: Path, tmp_path: Path) -> None:
    classes = tmp_path / "classes.yaml"
    classes.write_text("names: [" + ", ".join(f"c{i}" for i in range(34)) + "]\n")
    with pytest.raises(DgcnetError, match=rf"{default_store(data) / MANIFEST}: labels were prepared for other classes"):
        SegmentationDataset(data, data / "train.txt", classes=load_class_file(classes), prepared="auto")
    with pytest.raises(DgcnetError, match="other classes"):
        prepare(data, data / "train.txt", classes=load_class_file(classes))


def test_finding_the_store(data: Path, tmp_path: Path) -> None:
    assert find_store(data) == default_store(data)
    assert find_store(data, None) is None
    assert find_store(tmp_path / "elsewhere") is None  # auto and no store: decode the files
    with pytest.raises(DgcnetError, match="no prepared store here"):
        find_store(data, tmp_path / "elsewhere")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DgcnetError, match="holds other files"):
        prepare(data, data / "train.txt", foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_cli_prepare_and_check_data(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = tmp_path / "store"
    assert main(["prepare", "--data-dir", str(data), "--data-list", str(data / "train.txt"),
                 "--output-dir", str(store)]) == 0
    assert f"{store}: 4 samples" in capsys.readouterr().out
    args = ["check-data", "--data-dir", str(data), "--data-list", str(data / "train.txt"), "--prepared", str(store)]
    assert main(args) == 0
    assert f"prepared store {store}: no problems" in capsys.readouterr().out
    _change(SegmentationDataset(data, data / "train.txt").samples[1].label)
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "train.txt:2: " in out and "changed since it was prepared" in out
