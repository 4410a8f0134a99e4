"""ONNX export with the onnxruntime check, static and dynamic input sizes."""
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dgcnet

from dgcnet.cli import main
from dgcnet.formats.convert import write_weights
from dgcnet.formats.load import load_model
from dgcnet.formats.onnx import check_onnx
from dgcnet.models import build_model
from tests.engine.test_evaluate import calibrated_r18, save_train_checkpoint

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Default initialisation with BN statistics and affine parameters moved off 0/1, so that
    folding or dropping a BN in the graph would change the logits."""
    torch.manual_seed(0)
    model = build_model("dgcnet_r18")
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("onnx") / "r18.safetensors"
    info = replace(model.info, class_names=tuple(str(i) for i in range(19)))
    write_weights(model.state_dict(), path, "dgcnet", info=info)
    return path


@pytest.mark.slow
def test_static_export_passes_the_check(tmp_path, weights, capsys):
    out = tmp_path / "r18.onnx"
    assert main(["export", "--restore-from", str(weights), "--onnx", str(out), "--size", "65x65", "--check"]) == 0
    assert "onnxruntime check passed" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    (logits,) = session.get_outputs()
    assert (image.name, image.shape, image.type) == ("image", [1, 3, 65, 65], "tensor(float)")
    assert (logits.name, logits.shape) == ("logits", [1, 19, 9, 9])
    # The check sees a graph that does not match the model: other weights are far off.
    torch.manual_seed(1)
    assert check_onnx(build_model("dgcnet_r18"), out, (65, 65)) > 1e-2


@pytest.mark.slow
def test_dynamic_export_runs_other_sizes(tmp_path, weights):
    out = tmp_path / "r18_dynamic.onnx"
    assert main(["export", "--restore-from", str(weights), "--onnx", str(out), "--size", "65x65", "--dynamic"]) == 0
    model = load_model(weights)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 49, 81, generator=torch.Generator().manual_seed(0))
    (actual,) = session.run(["logits"], {"image": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert actual.shape == expected.shape == (2, 19, 7, 11)
    assert np.abs(actual - expected).max() <= 1e-4 * np.abs(expected).max()


# ---------------------------------------------------------------- end to end

REPO = Path(__file__).resolve().parents[2]
# Runs a script with PyTorch and dgcnet made unimportable: a deployment has neither.
WITHOUT_TORCH = ("import runpy, sys; sys.modules.update(torch=None, dgcnet=None); sys.argv = sys.argv[1:]; "
                 "runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """A checkpoint whose predictions vary with the input, with facts of its own (BGR, crop 64x96)."""
    model = calibrated_r18()
    info = replace(model.info, rgb=False, crop_size=(64, 96), tile=96, stride=64)
    model = build_model("dgcnet_r18", info=info)
    model.load_state_dict(calibrated_r18().state_dict())
    path = tmp_path_factory.mktemp("e2e") / "r18.pt"
    save_train_checkpoint(model.eval(), path)
    return path


@pytest.mark.slow
def test_end_to_end_onnx_checks_carries_facts_and_deploys_alone(tmp_path, trained_like, capsys):
    out = tmp_path / "r18_e2e.onnx"
    assert main(["export", "--restore-from", str(trained_like), "--onnx", str(out), "--end-to-end", "--check"]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime check passed: labels agree with dgcnet.predict on" in printed
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (image,), (labels,) = session.get_inputs(), session.get_outputs()
    assert (image.name, image.type, len(image.shape), image.shape[3]) == ("image", "tensor(uint8)", 4, 3)
    assert all(isinstance(d, str) for d in image.shape[:3])  # batch, height, width dynamic
    assert (labels.name, labels.type, len(labels.shape)) == ("labels", "tensor(uint8)", 3)
    meta = session.get_modelmeta().custom_metadata_map
    model = load_model(trained_like)
    assert json.loads(meta["class_names"]) == list(model.info.class_names)
    assert json.loads(meta["palette"]) == [list(c) for c in model.info.palette]
    assert (meta["channels"], json.loads(meta["mean"])) == ("BGR", list(model.info.mean))

    # Two images of other sizes in one batch each, labels at the input's resolution as dgcnet.predict's.
    rng = np.random.default_rng(0)
    for h, w in ((70, 90), (33, 129)):
        photo = np.kron(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
        photo = photo.astype(np.uint8)
        (got,) = session.run(["labels"], {"image": np.stack([photo, photo[::-1]])})
        assert got.shape == (2, h, w)
        expected = dgcnet.predict(model, [photo, photo[::-1]], mode="whole")
        assert min((got[i] == expected[i]).mean() for i in range(2)) >= 0.999

    # docs/deploy.md's script, with onnxruntime, numpy and Pillow only.
    script = re.search(r"`segment\.py`.*?```python\n(.*?)```", (REPO / "docs" / "deploy.md").read_text(), re.S)
    (tmp_path / "segment.py").write_text(script.group(1))
    Image.fromarray(photo).save(tmp_path / "photo.png")
    run = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(tmp_path / "segment.py"), str(out),
                          str(tmp_path / "photo.png"), str(tmp_path / "classes.png")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    colors = np.asarray(Image.open(tmp_path / "classes.png"))
    expected = dgcnet.predict(model, photo, "color", mode="whole")
    assert (colors == expected).all(axis=2).mean() >= 0.999
    assert any(line.startswith(model.info.class_names[int(np.bincount(
        dgcnet.predict(model, photo, mode="whole").ravel()).argmax())]) for line in run.stdout.splitlines())


def test_end_to_end_check_fails_on_a_graph_of_other_weights(tmp_path, trained_like):
    from dgcnet.formats.onnx import export_onnx_end_to_end, label_agreement, onnx_runner

    torch.manual_seed(3)
    other = build_model("dgcnet_r18")
    out = tmp_path / "other.onnx"
    export_onnx_end_to_end(other.eval(), out, (32, 48))
    assert label_agreement(load_model(trained_like), onnx_runner(out), (32, 48), out) < 0.9


def test_export_refuses_to_write_over_a_file(tmp_path, trained_like, capsys):
    out = tmp_path / "mine.onnx"
    out.write_text("keep")
    assert main(["export", "--restore-from", str(trained_like), "--onnx", str(out), "--end-to-end"]) == 1
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep"


@pytest.mark.slow
def test_pt2_export_loads_back_and_passes_the_check(tmp_path, trained_like, capsys):
    out = tmp_path / "r18.pt2"
    assert main(["export", "--restore-from", str(trained_like), "--pt2", str(out), "--check"]) == 0
    assert "torch.export.load check passed" in capsys.readouterr().out
    extra = {"dgcnet.json": ""}
    program = torch.export.load(str(out), extra_files=extra)
    assert json.loads(json.loads(extra["dgcnet.json"])["crop_size"]) == [64, 96]
    photo = np.random.default_rng(1).integers(0, 256, (2, 72, 100, 3), dtype=np.uint8)
    labels = program.module()(torch.from_numpy(photo)).numpy()
    assert labels.shape == (2, 72, 100) and labels.dtype == np.uint8
