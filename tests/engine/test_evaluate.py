import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dgcnet
from dgcnet.cli import main
from dgcnet.data.dataset import SegmentationDataset
from dgcnet.data.labels import CITYSCAPES
from dgcnet.engine.evaluate import evaluate
from dgcnet.engine.heap import THP_SETTING
from dgcnet.engine.predict import PredictionWriter
from dgcnet.metrics import confusion_matrix, iou_per_class

REPO = Path(__file__).resolve().parents[2]
# The 19 evaluated labelIds (DESIGN.md section 2) and two ignored ones (0 unlabeled, 4 static).
EVAL_LABEL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
IGNORED_LABEL_IDS = [0, 4]
NAMES = ["frankfurt/frankfurt_000000_000294", "frankfurt/frankfurt_000001_000538", "lindau/lindau_000000_000019"]


def make_cityscapes_tree(root: Path, height: int = 40, width: int = 60) -> None:
    """A tiny Cityscapes val split: images, gtFine labelIds (every class present in every image,
    in 10x10 blocks, plus ignored ids) and instanceIds (no instances), and val.txt / test.txt."""
    rng = np.random.default_rng(0)
    ids = EVAL_LABEL_IDS + IGNORED_LABEL_IDS
    val_lines, test_lines = [], []
    for n, name in enumerate(NAMES):
        city, stem = name.split("/")
        rows, cols = -(-height // 10), -(-width // 10)
        assert rows * cols >= len(ids)
        blocks = np.array([ids[(i + 7 * n) % len(ids)] for i in range(rows * cols)])
        label = np.kron(blocks.reshape(rows, cols), np.ones((10, 10), dtype=np.int64))
        label = label[:height, :width].astype(np.uint8)
        train = CITYSCAPES.to_train_ids(label)
        colours = CITYSCAPES.colorize(train).astype(np.int64) + rng.integers(-40, 40, size=(height, width, 3))
        image = np.clip(colours, 0, 255).astype(np.uint8)
        image_rel = f"leftImg8bit/val/{city}/{stem}_leftImg8bit.png"
        label_rel = f"gtFine/val/{city}/{stem}_gtFine_labelIds.png"
        for rel in (image_rel, label_rel):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / image_rel)
        Image.fromarray(label, mode="L").save(root / label_rel)
        Image.fromarray(label.astype(np.uint16)).save(root / label_rel.replace("labelIds", "instanceIds"))
        val_lines.append(f"{image_rel}\t{label_rel}")
        test_lines.append(image_rel)
    (root / "val.txt").write_text("\n".join(val_lines) + "\n")
    (root / "test.txt").write_text("\n".join(test_lines) + "\n")


def calibrated_r18() -> torch.nn.Module:
    """A random dgcnet_r18 whose BatchNorm statistics come from a random batch, so that its
    predictions vary with the input (with the initial statistics one class wins everywhere)."""
    torch.manual_seed(0)
    model = dgcnet.build_model("dgcnet_r18")
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 33, 33))
    return model.eval()


def save_train_checkpoint(model: torch.nn.Module, path: Path) -> None:
    torch.save({"format": "dgcnet-train-v1", "model": model.state_dict(), "arch": model.arch,
                "num_classes": model.num_classes, "info": model.info.to_dict(),
                "config": {}, "iteration": 0, "optimizer": {}, "scaler": None, "rng": {}}, path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    make_cityscapes_tree(root)
    model = calibrated_r18()
    checkpoint = root / "r18.pth"
    save_train_checkpoint(model, checkpoint)
    return root, model, checkpoint


@pytest.fixture(scope="module")
def protocol_run(setup, tmp_path_factory):
    """One `dgcnet eval` by the protocol (tile 33, stride 22 for the tiny images) writing all four formats."""
    root, _, checkpoint = setup
    out = tmp_path_factory.mktemp("eval")
    status = main(["eval", "--data-dir", str(root), "--data-list", str(root / "val.txt"), "--restore-from",
                   str(checkpoint), "--output-dir", str(out), "--tile", "33", "--workers", "0",
                   "--save-pred", "labelids,color,overlay,trainids"])
    assert status == 0
    return out


def thp_setting() -> str:
    try:
        return THP_SETTING.read_text()
    except OSError:
        return ""


def test_eval_writes_the_port_result_and_tables(protocol_run, capsys):
    result = json.loads((protocol_run / "result" / "result.txt").read_text())
    assert set(result) == {"meanIU", "IU_array"} and len(result["IU_array"]) == 19
    assert result["meanIU"] == pytest.approx(np.mean(result["IU_array"]))
    confusion = np.load(protocol_run / "result" / "confusion.npy")
    assert confusion.shape == (19, 19)
    np.testing.assert_allclose(result["IU_array"], iou_per_class(confusion))
    assert (protocol_run / "result" / "per_class.md").read_text().count("\n") == 19 + 3
    assert (protocol_run / "result" / "per_class.csv").read_text().splitlines()[1].startswith("road,")
    with Image.open(protocol_run / "result" / "confusion.png") as heatmap:
        assert heatmap.mode == "RGB"
    summary = json.loads((protocol_run / "result" / "summary.json").read_text())
    assert summary["images_per_s"] > 0 and summary["stride"] == 22 and summary["num_images"] == 3
    huge = any(mode in thp_setting() for mode in ("[always]", "[madvise]"))
    assert summary["fast"] is True  # the path that ran, and the heap settings it made
    assert summary["heap"] == ("keep freed blocks, huge pages" if huge else "keep freed blocks")


def test_saved_predictions_reproduce_the_score(setup, protocol_run):
    """The labelIds PNGs map back to the trainIds PNGs, and scoring those against the labels gives
    the confusion matrix eval wrote."""
    root, _, _ = setup
    confusion = np.zeros((19, 19), dtype=np.int64)
    for name in NAMES:
        rel = name + "_leftImg8bit.png"  # mirrors the list below the images' common folder
        with Image.open(protocol_run / "trainIds" / rel) as im:
            train = np.array(im)
        with Image.open(protocol_run / "labelIds" / rel) as im:
            label_ids = np.asarray(im)
        with Image.open(protocol_run / "color" / rel) as im:
            assert im.mode == "RGB" and im.size == (60, 40)
        assert (protocol_run / "overlay" / rel).is_file()
        assert set(np.unique(label_ids)) <= set(EVAL_LABEL_IDS)
        np.testing.assert_array_equal(CITYSCAPES.to_train_ids(label_ids), train)
        city, stem = name.split("/")
        with Image.open(root / f"gtFine/val/{city}/{stem}_gtFine_labelIds.png") as im:
            truth = CITYSCAPES.to_train_ids(np.asarray(im))
        confusion += confusion_matrix(torch.from_numpy(train), torch.from_numpy(truth), 19).numpy()
    np.testing.assert_array_equal(confusion, np.load(protocol_run / "result" / "confusion.npy"))
    assert (confusion.sum(0) > 0).sum() > 1  # the predictions are not one class everywhere


@pytest.mark.slow
def test_official_cityscapes_script_agrees(setup, protocol_run, tmp_path):
    """cityscapesscripts' evalPixelLevelSemanticLabeling finds our labelIds PNGs by name and gets our
    numbers (every class occurs in the labels, so its NaN-for-absent-class rule does not apply)."""
    pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    root, _, _ = setup
    env = dict(os.environ, CITYSCAPES_DATASET=str(root), CITYSCAPES_RESULTS=str(protocol_run / "labelIds"),
               CITYSCAPES_EXPORT_DIR=str(tmp_path), MPLBACKEND="Agg")
    # cityscapesscripts 2.3.0 still calls np.in1d, which numpy 2.4 removed; np.isin is its successor.
    run = ("import numpy, runpy; numpy.in1d = numpy.isin; "
           "runpy.run_module('cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling', run_name='__main__')")
    subprocess.run([sys.executable, "-c", run], env=env, check=True, capture_output=True)
    official = json.loads((tmp_path / "resultPixelLevelSemanticLabeling.json").read_text())
    ours = json.loads((protocol_run / "result" / "result.txt").read_text())
    assert official["averageScoreClasses"] == pytest.approx(ours["meanIU"], abs=1e-12)
    for name, iou in zip(CITYSCAPES.names, ours["IU_array"]):
        assert official["classScores"][name] == pytest.approx(iou, abs=1e-12)


def test_evaluate_api_matches_per_image_predictions(setup, monkeypatch):
    root, model, _ = setup
    dataset = SegmentationDataset(root, root / "val.txt", train=False)
    model.train()
    chosen = []  # without workers=, the loader takes dgcnet.data.default_workers()
    monkeypatch.setattr("dgcnet.engine.evaluate.default_workers", lambda: chosen.append(1) or 1)
    result = evaluate(model, dataset, mode="whole", progress=False)
    assert chosen == [1]
    assert model.training  # the caller's mode is restored
    expected = np.zeros((19, 19), dtype=np.int64)
    for index in range(len(dataset)):
        image, label = dataset.load(index)
        pred = dgcnet.predict(model, image, mode="whole", fast=False)
        expected += confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label), 19).numpy()
    model.eval()
    np.testing.assert_array_equal(result.confusion, expected)
    assert result.miou == pytest.approx(iou_per_class(expected).mean())
    assert result.num_labelled == 3 and result.images_per_s > 0


class Oracle(torch.nn.Module):
    """Reads the class back from the synthetic image's colour: a perfect predictor."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1) * 255
        std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1) * 255
        palette = torch.tensor(CITYSCAPES.colors, dtype=torch.float32).view(1, 19, 3, 1, 1)
        self.register_buffer("palette", (palette - mean[:, None]) / std[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -((x[:, None] - self.palette) ** 2).sum(2)


def test_a_perfect_model_scores_one_and_ignored_pixels_do_not_count(tmp_path):
    root = tmp_path / "data"
    make_cityscapes_tree(root)
    for rel in (root / "val.txt").read_text().split():
        if rel.startswith("leftImg8bit"):  # remove the noise: colours are exactly the class colours
            with Image.open(root / rel.replace("leftImg8bit/", "gtFine/", 1).replace(
                    "_leftImg8bit", "_gtFine_labelIds")) as im:
                colours = CITYSCAPES.colorize(CITYSCAPES.to_train_ids(np.asarray(im)))
            Image.fromarray(colours).save(root / rel)
    dataset = SegmentationDataset(root, root / "val.txt", train=False)
    result = evaluate(Oracle(), dataset, tile=33, workers=0, progress=False)
    assert result.miou == pytest.approx(1.0)
    assert result.confusion.sum() < 3 * 40 * 60  # ignored pixels (labelIds 0 and 4) left out


def test_eval_underscore_spellings_and_options(setup, tmp_path, capsys):
    root, _, checkpoint = setup
    out = tmp_path / "out"
    status = main(["eval", "--data_dir", str(root), "--data_list", str(root / "val.txt"), "--restore_from",
                   str(checkpoint), "--output_dir", str(out), "--mode", "whole", "--scales", "0.75,1.0",
                   "--flip", "--workers", "0", "--no-fast", "--device", "cpu"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "meanIU" in printed and "images/s" in printed and "traffic light" in printed
    summary = json.loads((out / "result" / "summary.json").read_text())
    assert summary["scales"] == [0.75, 1.0] and summary["flip"] and summary["mode"] == "whole"
    assert summary["fast"] is False and summary["heap"] == "default"


def test_list_without_labels_only_predicts(setup, tmp_path, capsys):
    root, _, checkpoint = setup
    out = tmp_path / "out"
    status = main(["eval", "--data-dir", str(root), "--data-list", str(root / "test.txt"), "--restore-from",
                   str(checkpoint), "--output-dir", str(out), "--mode", "whole", "--workers", "0"])
    assert status == 0
    assert not (out / "result" / "result.txt").exists()
    assert sorted(p.relative_to(out / "labelIds").as_posix() for p in (out / "labelIds").rglob("*.png")) == \
        sorted(n + "_leftImg8bit.png" for n in NAMES)
    assert "predictions only" in capsys.readouterr().out


def test_bad_list_entry_is_one_line_and_writes_nothing(setup, tmp_path, capsys):
    root, _, checkpoint = setup
    bad = tmp_path / "bad.txt"
    bad.write_text((root / "val.txt").read_text() + "leftImg8bit/val/x/missing.png\tgtFine/missing.png\n")
    out = tmp_path / "out"
    status = main(["eval", "--data-dir", str(root), "--data-list", str(bad), "--restore-from", str(checkpoint),
                   "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert status == 1 and f"{bad}:4:" in err and "missing.png" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unreadable_image_in_loader_worker_is_one_line(setup, tmp_path, capsys):
    root, _, checkpoint = setup
    data = tmp_path / "data"
    shutil.copytree(root, data)
    (data / "leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png").write_bytes(b"broken")
    status = main(["eval", "--data-dir", str(data), "--data-list", str(data / "val.txt"), "--restore-from",
                   str(checkpoint), "--output-dir", str(tmp_path / "out"), "--mode", "whole", "--workers", "1"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"dgcnet eval: error: {data / 'val.txt'}:3: ") and "lindau_000000_000019" in err


def test_prediction_writer_names_stay_inside_the_output(tmp_path):
    with PredictionWriter(tmp_path, ("trainids",)) as writer:
        writer.submit(np.zeros((4, 5), dtype=np.uint8), Path("a/b.png"))
    assert (tmp_path / "trainIds" / "a" / "b.png").is_file()


@pytest.mark.slow
def test_standalone_script_falls_back_to_the_cpu(setup, tmp_path):
    root, _, checkpoint = setup
    script = REPO / "scripts" / "run_standalone_gpu_eval.sh"
    env = dict(os.environ, PYTHON=sys.executable, DGCNET_EVAL_ARGS="--mode whole --workers 0", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(["bash", str(script), str(root), str(root / "val.txt"), str(checkpoint)],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "no CUDA GPU found" in done.stderr
    result = json.loads((tmp_path / "eval_dual_seg_r101_832" / "result" / "result.txt").read_text())
    assert len(result["IU_array"]) == 19
