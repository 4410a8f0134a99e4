"""CamVid by name: the published layout and lists, its classes and void label, training defaults,
and a CamVid-trained model that every command runs by its own recorded facts. The files are made
up here in CamVid's format (tests/conftest.py write_camvid_like)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgcnet.cli import main
from dgcnet.config import load_config
from dgcnet.data import SegmentationDataset, read_list
from dgcnet.data.datasets import CAMVID, DATASETS, get_dataset
from dgcnet.data.transforms import TrainAugment
from dgcnet.errors import DgcnetError
from dgcnet.formats.load import load_model
from tests.conftest import write_camvid_like

CAMVID_NAMES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
                "Bicyclist")


def test_classes_are_segnets_eleven_with_void_ignored():
    assert CAMVID.names == CAMVID_NAMES and CAMVID.dataset == "camvid"
    stored = np.arange(12, dtype=np.uint8)
    assert CAMVID.to_train_ids(stored).tolist() == list(range(11)) + [255]
    assert 11 in CAMVID.valid_ids and 12 not in CAMVID.valid_ids
    assert len(set(CAMVID.colors)) == 11


def test_published_lists_read_with_their_prefix_as_the_data_dir(camvid_dir):
    assert (camvid_dir / "train.txt").read_text().startswith("/SegNet/CamVid/train/")
    samples = read_list(camvid_dir / "train.txt", camvid_dir, require_labels=True)
    assert len(samples) == 4
    assert samples[0].image == camvid_dir / "train" / "0001TP_000000.png"
    assert samples[0].label == camvid_dir / "trainannot" / "0001TP_000000.png"


def test_lists_from_the_folder_layout(camvid_dir, tmp_path):
    for argv in (["lists", "--data-dir", str(camvid_dir), "--output-dir", str(tmp_path / "auto")],
                 ["lists", "--dataset", "camvid", "--data-dir", str(camvid_dir), "--output-dir", str(tmp_path / "named")]):
        assert main(argv) == 0
    for folder in ("auto", "named"):
        lines = (tmp_path / folder / "train.txt").read_text().splitlines()
        assert lines[0] == "train/0001TP_000000.png\ttrainannot/0001TP_000000.png" and len(lines) == 4
        assert len((tmp_path / folder / "trainval.txt").read_text().splitlines()) == 6


def test_check_data_accepts_void_names_the_classes_and_refuses_other_values(camvid_dir, tmp_path, capsys):
    assert main(["check-data", "--dataset", "camvid", "--data-dir", str(camvid_dir),
                 "--data-list", str(camvid_dir / "val.txt")]) == 0
    out = capsys.readouterr().out
    assert "no problems" in out and "camvid's 11 classes (Sky, Building" in out
    bad = write_camvid_like(tmp_path / "bad", {"val": 1})
    label = np.array(Image.open(bad / "valannot" / "0001TP_000000.png"))
    label[0, 0] = 12
    Image.fromarray(label).save(bad / "valannot" / "0001TP_000000.png")
    assert main(["check-data", "--dataset", "camvid", "--data-dir", str(bad), "--data-list", str(bad / "val.txt")]) == 1
    assert "label ids outside the known set: 12" in capsys.readouterr().out


def test_config_takes_the_datasets_defaults():
    config = load_config(None, ["data.dataset=camvid"])
    assert config.model.num_classes == 11 and config.data.input_size == (360, 360)
    assert (config.data.scale_min, config.data.scale_max) == (0.5, 2.0)
    given = load_config(None, ["data.dataset=camvid", "data.input_size=240", "data.scale_max=1.5"])
    assert given.data.input_size == (240, 240) and (given.data.scale_min, given.data.scale_max) == (0.5, 1.5)
    with pytest.raises(DgcnetError, match="unknown dataset 'camvd'; choose one of cityscapes, camvid"):
        load_config(None, ["data.dataset=camvd"])
    with pytest.raises(DgcnetError, match="scale_min"):
        load_config(None, ["data.scale_min=2.5"])


@pytest.mark.parametrize("scale_range", [(0.5, 2.0), (0.7, 2.1)])
def test_random_scale_draws_every_tenth_of_the_range(scale_range):
    augment = TrainAugment((8, 8), scale_range=scale_range)
    factors = {round(augment.draw(100, 100, np.random.default_rng(seed)).scaled[0] / 100, 2) for seed in range(400)}
    low, high = scale_range
    assert factors == {round(low + k / 10, 2) for k in range(int(round((high - low) * 10)) + 1)}


def test_each_dataset_names_its_own_crop_scale_and_source():
    for name, spec in DATASETS.items():
        assert spec.name == name and get_dataset(name) is spec
        assert spec.classes.dataset == name and spec.where_to_get


@pytest.fixture(scope="module")
def camvid_model(tmp_path_factory, camvid_dir) -> Path:
    """dgcnet_r18 trained for two iterations with --dataset camvid and nothing else about classes."""
    run = tmp_path_factory.mktemp("camvid_run")
    argv = ["train", "--dataset", "camvid", "--arch", "dgcnet_r18", "--data_dir", str(camvid_dir),
            "--data_list", str(camvid_dir / "train.txt"), "--input_size", "32", "--batch_size", "2",
            "--num_steps", "2", "--save_dir", str(run), "--workers", "0", "--device", "cpu",
            "loss.ohem_min_kept=100", "run.tensorboard=false"]
    with torch.random.fork_rng():
        assert main(argv) == 0
    return run / "checkpoint_0000002.pt"


def test_trained_model_records_camvid_and_its_void(camvid_model):
    info = load_model(camvid_model).info
    assert info.dataset == "camvid" and info.class_names == CAMVID_NAMES
    assert (11, 255) in info.label_mapping and info.crop_size == (32, 32)
    assert info.classes.to_train_ids(np.array([11, 3], np.uint8)).tolist() == [255, 3]


def test_eval_needs_no_dataset_flag_for_a_camvid_model(camvid_model, camvid_dir, tmp_path, capsys):
    assert main(["eval", "--restore-from", str(camvid_model), "--data-dir", str(camvid_dir),
                 "--data-list", str(camvid_dir / "val.txt"), "--output-dir", str(tmp_path / "eval"),
                 "--device", "cpu", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "Bicyclist" in out and "meanIU" in out
    result = json.loads((tmp_path / "eval" / "result" / "result.txt").read_text())
    assert len(result["IU_array"]) == 11


def test_predict_colours_camvid_classes(camvid_model, camvid_dir, tmp_path):
    assert main(["predict", str(camvid_dir / "val"), "--restore-from", str(camvid_model), "--output-dir",
                 str(tmp_path / "pred"), "--save-pred", "color", "--device", "cpu", "--workers", "0"]) == 0
    colors = sorted((tmp_path / "pred").rglob("*.png"))
    assert len(colors) == 2
    palette = {tuple(c) for c in CAMVID.colors}
    pixels = {tuple(p) for p in np.array(Image.open(colors[0])).reshape(-1, 3)}
    assert pixels <= palette


def test_converted_and_exported_files_keep_the_facts(camvid_model, tmp_path, capsys):
    pytest.importorskip("onnx")
    out = tmp_path / "camvid.safetensors"
    assert main(["convert", str(camvid_model), str(out)]) == 0
    assert "classes        camvid's 11 classes (Sky, Building" in capsys.readouterr().out
    assert load_model(out).info.dataset == "camvid"
    assert (11, 255) in load_model(out).info.label_mapping
    onnx_path = tmp_path / "camvid.onnx"
    assert main(["export", "--restore-from", str(out), "--onnx", str(onnx_path), "--size", "32x32",
                 "--end-to-end"]) == 0
    assert "camvid's 11 classes (Sky" in capsys.readouterr().out
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert metadata["dataset"] == '"camvid"' and json.loads(metadata["class_names"]) == list(CAMVID_NAMES)


def test_class_file_mapping_is_recorded_so_eval_needs_no_class_file(camvid_dir, tmp_path, capsys):
    classes = tmp_path / "classes.yaml"
    mapping = ", ".join(f"{i}: {i}" for i in range(11))
    classes.write_text(f"names: [{', '.join(n.lower() for n in CAMVID_NAMES)}]\nid_mapping: {{{mapping}, 11: 255}}\n")
    run = tmp_path / "run"
    assert main(["train", "--classes", str(classes), "--arch", "dgcnet_r18", "--data_dir", str(camvid_dir),
                 "--data_list", str(camvid_dir / "train.txt"), "--input_size", "32", "--batch_size", "2",
                 "--num_steps", "1", "--save_dir", str(run), "--workers", "0", "--device", "cpu",
                 "loss.ohem_min_kept=100", "run.tensorboard=false"]) == 0
    info = load_model(run / "checkpoint_0000001.pt").info
    assert info.dataset == "" and (11, 255) in info.label_mapping
    # Label 11 is in every made-up label: without the recorded mapping eval refuses it.
    assert main(["eval", "--restore-from", str(run / "checkpoint_0000001.pt"), "--data-dir", str(camvid_dir),
                 "--data-list", str(camvid_dir / "val.txt"), "--output-dir", str(tmp_path / "eval"),
                 "--device", "cpu", "--workers", "0"]) == 0
    assert "meanIU" in capsys.readouterr().out


def test_eval_compare_shows_image_truth_and_prediction(camvid_model, camvid_dir, tmp_path):
    assert main(["eval", "--restore-from", str(camvid_model), "--data-dir", str(camvid_dir),
                 "--data-list", str(camvid_dir / "val.txt"), "--output-dir", str(tmp_path / "eval"),
                 "--save-pred", "compare,trainids", "--device", "cpu", "--workers", "0"]) == 0
    name = "0001TP_000000.png"
    grid = np.array(Image.open(tmp_path / "eval" / "compare" / name))
    image = np.array(Image.open(camvid_dir / "val" / name))
    truth = CAMVID.to_train_ids(np.array(Image.open(camvid_dir / "valannot" / name)))
    prediction = np.array(Image.open(tmp_path / "eval" / "trainIds" / name))
    h, w = truth.shape
    assert grid.shape == (h, 3 * w + 8, 3)
    assert (grid[:, :w] == image).all()
    assert (grid[:, w + 4:2 * w + 4] == CAMVID.colorize(truth)).all()
    assert (grid[:, 2 * w + 8:] == CAMVID.colorize(prediction)).all()
    assert (grid[:, w:w + 4] == 255).all() and (grid[:, 2 * w + 4:2 * w + 8] == 255).all()  # the gaps
    void = truth == 255
    assert void.any() and (grid[:, w + 4:2 * w + 4][void] == 0).all()  # void is black


def test_model_facts_of_older_files_and_files_that_disagree_with_themselves():
    from dgcnet.models.info import ModelInfo, classes_info

    camvid = classes_info("dgcnet_r18", CAMVID, crop_size=(360, 360)).to_dict()
    older = {k: v for k, v in camvid.items() if k not in ("dataset", "label_mapping")}
    info, missing = ModelInfo.from_values(older, "old.pt")
    assert missing == [] and info.dataset == "camvid" and (11, 255) in info.label_mapping  # known by its names
    cityscapes, missing = ModelInfo.from_values({"arch": "dgcnet_r18", "num_classes": 19,
                                                 "class_names": list(get_dataset("cityscapes").classes.names)}, "x")
    assert cityscapes.dataset == "cityscapes" and cityscapes.classes.to_train_ids(np.array([7, 0], np.uint8)).tolist() \
        == [0, 255]
    assert "dataset" not in missing and "label_mapping" not in missing
    with pytest.raises(DgcnetError, match="bad model description: label_mapping does not map label_ids"):
        ModelInfo.from_values({**camvid, "label_mapping": [[0, 1], [1, 0]] + camvid["label_mapping"][2:]}, "x")
    with pytest.raises(DgcnetError, match="bad model description: label_mapping: 300 -> 0"):
        ModelInfo.from_values({**camvid, "label_mapping": [[300, 0]]}, "x")
