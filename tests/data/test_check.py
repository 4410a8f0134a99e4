"""`dgcnet check-data` on real broken files, the cheap checks before a run, and errors mid-run."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgcnet.cli import main
from dgcnet.data import SegmentationDataset, read_list
from dgcnet.data.dataset import check_files_exist
from dgcnet.data.check import check_list
from dgcnet.errors import DgcnetError
from tests.data.conftest import save_png

CITYSCAPES_TEXT = ("cityscapes's 19 classes (road, sidewalk, building, wall, fence, pole, traffic light, traffic sign, "
                   "vegetation, terrain, sky, person, rider, car, truck, bus, train, motorcycle, bicycle)")


@pytest.fixture
def broken(tmp_path: Path) -> tuple[Path, Path, dict[str, int]]:
    """A data dir with one good sample and one broken line per kind of problem."""
    image = np.random.default_rng(0).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    label = np.full((8, 16), 7, dtype=np.uint8)
    save_png(tmp_path / "good.png", image)
    save_png(tmp_path / "good_label.png", label)
    full = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(full[: len(full) // 2])
    (tmp_path / "garbage.png").write_bytes(b"not an image at all")
    save_png(tmp_path / "rgb_label.png", np.zeros((8, 16, 3), dtype=np.uint8))
    Image.fromarray(np.full((8, 16), 7, dtype=np.uint16)).save(tmp_path / "label16.png")
    assert Image.open(tmp_path / "label16.png").mode.startswith("I")
    save_png(tmp_path / "small_label.png", np.full((4, 16), 7, dtype=np.uint8))
    bad_ids = label.copy()
    bad_ids[0, :3] = [40, 41, 200]
    save_png(tmp_path / "bad_ids.png", bad_ids)
    lines = {
        "good": "good.png\tgood_label.png",
        "missing image": "nowhere.png\tgood_label.png",
        "missing label": "good.png\tnowhere_label.png",
        "truncated": "truncated.png\tgood_label.png",
        "garbage": "garbage.png\tgood_label.png",
        "rgb label": "good.png\trgb_label.png",
        "16-bit label": "good.png\tlabel16.png",
        "size mismatch": "good.png\tsmall_label.png",
        "bad ids": "good.png\tbad_ids.png",
        "3 columns": "good.png\tgood_label.png\textra.png",
        "duplicate": "good.png good_label.png",
        "one column": "good.png",
    }
    list_path = tmp_path / "list.txt"
    list_path.write_text("\n".join(lines.values()) + "\n")
    return tmp_path, list_path, {kind: number for number, kind in enumerate(lines, start=1)}


EXPECTED = {
    "missing image": ("nowhere.png", "no such file"),
    "missing label": ("nowhere_label.png", "no such file"),
    "truncated": ("truncated.png", "cannot read image (image file is truncated"),
    "garbage": ("garbage.png", "cannot read image"),
    "rgb label": ("rgb_label.png", "single-channel 8-bit image, got mode RGB"),
    "16-bit label": ("label16.png", "single-channel 8-bit image, got mode I"),
    "size mismatch": ("small_label.png", "label size 16x4 differs from image size 16x8"),
    "bad ids": ("bad_ids.png", "label ids outside the known set: 40, 41, 200"),
    "3 columns": ("good.png", "got 3 columns"),
    "duplicate": ("good.png", "duplicate of line 1"),
    "one column": ("good.png", "no label column"),
}


def test_every_problem_reported_with_list_line_and_path(broken, capsys) -> None:
    data_dir, list_path, line_of = broken
    status = main(["check-data", "--data-dir", str(data_dir), "--data-list", str(list_path), "--workers", "2"])
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    problems, summary = out[:-1], out[-1]
    assert len(problems) == len(EXPECTED)
    for kind, (name, message) in EXPECTED.items():
        prefix = f"{list_path}:{line_of[kind]}: {data_dir / name}: "
        assert any(p.startswith(prefix) and message in p for p in problems), (kind, problems)
    assert summary == f"{list_path}: 12 samples, 11 problem(s) on 11 line(s); labels read as {CITYSCAPES_TEXT}"


def test_clean_list_passes(synth_dir: Path, capsys) -> None:
    status = main(["check-data", "--data-dir", str(synth_dir), "--data-list", str(synth_dir / "trainval.txt")])
    assert status == 0
    assert capsys.readouterr().out == f"{synth_dir / 'trainval.txt'}: 9 samples, no problems; labels read as {CITYSCAPES_TEXT}\n"
    assert check_list(synth_dir, synth_dir / "test.txt", workers=1).ok


def test_empty_and_unreadable_lists(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n")
    result = check_list(tmp_path, tmp_path / "empty.txt")
    assert [str(p) for p in result.problems] == [f"{tmp_path / 'empty.txt'}: the data list is empty"]
    result = check_list(tmp_path, tmp_path / "absent.txt")
    assert not result.ok and "cannot read data list" in str(result.problems[0])
    with pytest.raises(DgcnetError, match="the data list is empty"):
        read_list(tmp_path / "empty.txt", tmp_path)


def test_cheap_checks_name_list_line_and_path(broken) -> None:
    data_dir, list_path, line_of = broken
    lines = list_path.read_text().splitlines()
    (data_dir / "missing.txt").write_text("\n".join(lines[:3]) + "\n")
    samples = read_list(data_dir / "missing.txt", data_dir)
    with pytest.raises(DgcnetError) as error:
        check_files_exist(samples)
    assert str(error.value) == f"{data_dir / 'missing.txt'}:2: {data_dir / 'nowhere.png'}: no such file"
    with pytest.raises(DgcnetError) as error:
        SegmentationDataset(data_dir, list_path)
    assert str(error.value).startswith(f"{list_path}:{line_of['3 columns']}: {data_dir / 'good.png'}: ")
    (data_dir / "unlabelled.txt").write_text("good.png\n")
    with pytest.raises(DgcnetError, match=r"unlabelled\.txt:1: .*good\.png: no label column"):
        SegmentationDataset(data_dir, data_dir / "unlabelled.txt", train=True)


@pytest.mark.parametrize("kind", ["truncated", "garbage", "rgb label", "16-bit label", "size mismatch"])
def test_unreadable_file_mid_run_names_it(broken, kind: str) -> None:
    data_dir, list_path, line_of = broken
    lines = list_path.read_text().splitlines()
    (data_dir / "run.txt").write_text(lines[0] + "\n" + lines[line_of[kind] - 1] + "\n")
    dataset = SegmentationDataset(data_dir, data_dir / "run.txt", train=True, crop_size=(8, 8))
    dataset[0]
    with pytest.raises(DgcnetError) as error:
        dataset[1]
    name = EXPECTED[kind][0]
    assert str(error.value).startswith(f"{data_dir / 'run.txt'}:2: {data_dir / name}: ")
