"""The Hugging Face layout: `dgcnet convert W DIR --to hf`, load_model(DIR), and hf://OWNER/NAME
from a pre-filled huggingface_hub cache, offline."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

import dgcnet
from dgcnet.cli import main
from dgcnet.data.labels import CITYSCAPES
from dgcnet.engine.checkpoint import FORMAT


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory, r18_state):
    path = tmp_path_factory.mktemp("run") / "checkpoint_0000100.pt"
    torch.save({"format": FORMAT, "model": r18_state, "arch": "dgcnet_r18", "num_classes": 19,
                "class_names": list(CITYSCAPES.names), "rgb": True, "iteration": 100, "best_miou": 0.4321,
                "config": {"model": {"restore_from": None}, "data": {"input_size": [512, 1024]},
                           "train": {"batch_size": 2, "lr": 0.01, "poly_power": 0.9, "momentum": 0.9,
                                     "weight_decay": 0.0005}}}, path)
    return path


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, training_checkpoint):
    out = tmp_path_factory.mktemp("hf") / "dgcnet-r18"
    assert main(["convert", str(training_checkpoint), str(out), "--to", "hf"]) == 0
    return out


def test_folder_holds_weights_config_and_model_card(hf_folder):
    assert sorted(p.name for p in hf_folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((hf_folder / "config.json").read_text())
    with safe_open(str(hf_folder / "model.safetensors"), "pt") as f:
        metadata = f.metadata()
    assert config["arch"] == metadata["arch"] == "dgcnet_r18" and config["num_classes"] == 19
    assert config["class_names"] == list(CITYSCAPES.names) == json.loads(metadata["class_names"])
    assert config["palette"] == [list(c) for c in CITYSCAPES.colors]
    assert config["mean"] == json.loads(metadata["mean"]) and config["rgb"] is True and config["channels"] == "RGB"
    assert config["crop_size"] == [512, 1024]  # from the training checkpoint's config
    card = (hf_folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: dgcnet\n") and "# DGCNet dgcnet_r18" in card
    assert "0.4321" in card and "100 iterations" in card and "crop 512x1024" in card
    assert "Dual Graph Convolutional Network for Semantic Segmentation" in card and "sidewalk" in card


def test_load_model_from_the_folder(hf_folder, r18_state):
    model = dgcnet.load_model(hf_folder)
    assert model.arch == "dgcnet_r18" and model.info.class_names == CITYSCAPES.names
    assert all(torch.equal(model.state_dict()[k], v) for k, v in r18_state.items())


def test_existing_folder_is_refused_and_left_alone(tmp_path, training_checkpoint, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    assert main(["convert", str(training_checkpoint), str(tmp_path / "out"), "--to", "hf"]) == 1
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial folder left
    with pytest.raises(dgcnet.errors.DgcnetError, match="a folder without model.safetensors"):
        dgcnet.load_model(tmp_path / "out")


def test_hub_repository_from_a_prefilled_cache_offline(tmp_path, hf_folder, r18_state):
    pytest.importorskip("huggingface_hub")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--dgcnet-r18"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    for name in ("model.safetensors", "config.json"):
        (repo / "snapshots" / commit / name).write_bytes((hf_folder / name).read_bytes())
    torch.save(r18_state, tmp_path / "expected.pt")
    script = f"""
import torch, dgcnet
from dgcnet.errors import DgcnetError
model = dgcnet.load_model("hf://someone/dgcnet-r18")
expected = torch.load({str(tmp_path / 'expected.pt')!r}, weights_only=True)
print("same", all(torch.equal(model.state_dict()[k], v) for k, v in expected.items()), model.arch)
try:
    dgcnet.load_model("hf://someone/other")
except DgcnetError as error:
    print("error", str(error))
"""
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "same True dgcnet_r18"
    assert lines[1].startswith("error hf://someone/other: cannot get model.safetensors: ") and len(lines) == 2
