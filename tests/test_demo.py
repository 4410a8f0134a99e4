"""`dgcnet demo` end to end with a tiny step count and tiny images (the full demo is run by hand)."""
import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgcnet.cli import main
from dgcnet.data.labels import CITYSCAPES
from dgcnet.demo import DemoSettings, crop_size

H, W = 64, 96  # synthetic image size of the tiny demo
pytestmark = pytest.mark.slow  # the demo runs once for the module: about 15 s


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """Run the command once; the tests below check what it promised."""
    out = tmp_path_factory.mktemp("demo") / "out"
    argv = ["demo", "--out", str(out), "--steps", "2", "--size", f"{H}x{W}", "--train-images", "2",
            "--val-images", "2", "--batch-size", "2", "--device", "cpu"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(argv)
    return out, status, printed.getvalue()


def test_demo_succeeds_and_prints_the_table_and_locations(tiny_demo):
    out, status, printed = tiny_demo
    assert status == 0
    for name in CITYSCAPES.names:
        assert re.search(rf"^{name}\s+\d+\.\d\d$", printed, re.M), name
    assert "meanIU" in printed
    for label in ("summary", "evaluation", "training curve", "final checkpoint"):
        line = next(l for l in printed.splitlines() if l.startswith(label + ":"))
        assert Path(line.split(":", 1)[1].split()[0]).exists(), line


def test_result_txt_holds_19_ious_and_their_mean(tiny_demo):
    out = tiny_demo[0]
    result = json.loads((out / "eval" / "result" / "result.txt").read_text())
    iou = result["IU_array"]
    assert len(iou) == 19 and all(0.0 <= v <= 1.0 for v in iou)
    assert result["meanIU"] == pytest.approx(sum(iou) / 19)


def test_predictions_are_class_colours_at_the_image_size(tiny_demo):
    out = tiny_demo[0]
    palette = {tuple(c) for c in CITYSCAPES.colors}
    colors = sorted((out / "predictions" / "color").rglob("*.png"))
    overlays = sorted((out / "predictions" / "overlay").rglob("*.png"))
    assert len(colors) == len(overlays) == 2  # both validation images
    for color, overlay in zip(colors, overlays):
        image = Image.open(color)
        assert image.mode == "RGB" and image.size == (W, H)
        assert {tuple(p) for p in np.asarray(image).reshape(-1, 3)} <= palette
        blend = Image.open(overlay)
        assert blend.mode == "RGB" and blend.size == (W, H)
        assert not np.array_equal(np.asarray(blend), np.asarray(image))  # the photo shows through
    comparison = Image.open(out / "predictions" / "comparison.png")
    assert comparison.size == (3 * W + 2 * 4, 2 * H + 4)  # input | truth | prediction, one row an image


def test_training_curve_and_checkpoint(tiny_demo):
    out = tiny_demo[0]
    curve = Image.open(out / "training_curve.png")
    curve.load()
    assert curve.width >= 400 and curve.height >= 200
    assert len(np.unique(np.asarray(curve.convert("RGB")).reshape(-1, 3), axis=0)) > 10  # axes, text, lines
    state = torch.load(out / "train" / "checkpoint_0000002.pt", weights_only=True)
    assert state["iteration"] == 2 and state["arch"] == "dgcnet_r18"
    records = [json.loads(l) for l in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("loss") is not None for r in records)


def test_summary_reports_miou_and_links_existing_files(tiny_demo):
    out = tiny_demo[0]
    text = (out / "summary.md").read_text()
    miou = json.loads((out / "eval" / "result" / "result.txt").read_text())["meanIU"]
    assert f"mIoU {100 * miou:.2f}" in text
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert len(links) >= 5
    for link in links:
        assert (out / link).exists(), link


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path), "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dgcnet demo: error:") and str(tmp_path) in err and len(err.splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_default_crop_is_a_square_of_the_image_height():
    assert crop_size(DemoSettings(image_size=(128, 256))) == (128, 128)
    assert crop_size(DemoSettings(image_size=(96, 64))) == (96, 64)
    assert crop_size(DemoSettings(crop_size=(32, 48))) == (32, 48)


def test_training_prints_its_eta_and_keeps_one_copy_of_the_best_checkpoint(tiny_demo):
    out, _, printed = tiny_demo
    assert re.search(r"^iter = 2 of 2 completed, .*, s/iter=[0-9.]+, .*eta=0:00:00", printed, re.M)
    assert (out / "train" / "train.log").read_text().count("iter = ") == 2
    final = out / "train" / "checkpoint_0000002.pt"
    best = out / "train" / "best.pt"
    if torch.load(best, weights_only=True)["iteration"] == 2:  # the final checkpoint is the best
        assert best.stat().st_ino == final.stat().st_ino
    else:
        assert best.stat().st_ino != final.stat().st_ino


@pytest.fixture(scope="module")
def trained_demo(tmp_path_factory):
    """A demo that trains enough to predict structure (the tiny one above predicts almost nothing)."""
    from dgcnet.demo import run_demo

    out = tmp_path_factory.mktemp("trained_demo") / "out"
    settings = DemoSettings(steps=24, image_size=(64, 128), train_images=8, val_images=3, batch_size=4,
                            validations=0, predictions=3, device="cpu", workers=0)
    return run_demo(out, settings, say=lambda line: None)


@pytest.mark.slow
def test_eval_and_predict_without_flags_reproduce_the_demo(trained_demo, tmp_path, capsys):
    demo = trained_demo
    data = demo.data_dir
    capsys.readouterr()
    assert main(["eval", "--restore-from", str(demo.checkpoint), "--data-dir", str(data), "--data-list",
                 str(data / "val.txt"), "--output-dir", str(tmp_path / "eval"), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    # The model's own crop (64x64) is the tile; said once where it comes from.
    assert "sliding window: tile 64, stride 43 (the model's: training crop 64x64)" in printed
    miou = json.loads((tmp_path / "eval" / "result" / "result.txt").read_text())["meanIU"]
    assert miou == pytest.approx(demo.miou, abs=0.01)
    # Another protocol gives another score: the default really is the model's own.
    assert main(["eval", "--restore-from", str(demo.checkpoint), "--data-dir", str(data), "--data-list",
                 str(data / "val.txt"), "--output-dir", str(tmp_path / "whole"), "--workers", "0",
                 "--mode", "whole"]) == 0
    whole = json.loads((tmp_path / "whole" / "result" / "result.txt").read_text())["meanIU"]
    assert abs(whole - miou) > 1e-4
    images = sorted(str(p) for p in (data / "leftImg8bit" / "val").rglob("*.png"))[:3]
    assert main(["predict", *images, "--restore-from", str(demo.checkpoint), "--output-dir",
                 str(tmp_path / "pred"), "--workers", "0"]) == 0
    for ours in (demo.predictions_dir / "color").rglob("*.png"):
        theirs = tmp_path / "pred" / "color" / ours.relative_to(demo.predictions_dir / "color")
        np.testing.assert_array_equal(np.asarray(Image.open(theirs)), np.asarray(Image.open(ours)))


@pytest.mark.slow
def test_images_smaller_than_the_tile_run_whole_said_once(trained_demo, tmp_path, capsys):
    images = sorted(str(p) for p in (trained_demo.data_dir / "leftImg8bit" / "val").rglob("*.png"))
    small = []
    for i, path in enumerate(images[:2]):
        small.append(tmp_path / f"small{i}.png")
        Image.open(path).crop((0, 0, 48, 40)).save(small[-1])
    capsys.readouterr()
    assert main(["predict", *map(str, small), "--restore-from", str(trained_demo.checkpoint), "--output-dir",
                 str(tmp_path / "pred"), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("run whole") == 1 and "no larger than the 64x64 tile" in printed


def test_demo_on_camvid_fits_its_time_budget_and_names_the_classes(camvid_dir, tmp_path):
    out = tmp_path / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["demo", "--dataset", "camvid", "--data-dir", str(camvid_dir), "--out", str(out),
                       "--minutes", "0.2", "--crop", "32", "--batch-size", "2", "--device", "cpu"])
    assert status == 0
    text = printed.getvalue()
    steps = int(re.search(r"(\d+) iterations fit 0.2 minutes", text).group(1))
    assert steps >= 10 and (out / "train" / f"checkpoint_{steps:07d}.pt").is_file()
    assert re.search(r"^Bicyclist\s+\d+\.\d\d$", text, re.M) and "on 2 validation images" in text
    result = json.loads((out / "eval" / "result" / "result.txt").read_text())
    assert len(result["IU_array"]) == 11
    summary = (out / "summary.md").read_text()
    assert "CamVid" in summary and "dgcnet download camvid" in summary and "synthetic" not in summary
    assert not (out / "data").exists()  # the dataset is read in place


def test_demo_on_an_empty_folder_says_how_to_download(tmp_path, capsys):
    empty = tmp_path / "camvid"
    empty.mkdir()
    assert main(["demo", "--dataset", "camvid", "--data-dir", str(empty), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"dgcnet download camvid --output-dir {empty}" in err
    assert main(["demo", "--data-dir", str(empty), "--out", str(tmp_path / "out2")]) == 1
    assert "give --dataset too" in capsys.readouterr().err
