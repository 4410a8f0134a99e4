"""dgcnet convert: every format both ways, name mapping to the MindSpore port, reports, errors."""
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dgcnet.cli import main
from dgcnet.errors import DgcnetError
from dgcnet.formats import mindspore
from dgcnet.formats.convert import (TARGETS, Weights, convert, fit_to_model, from_mindspore_names, infer_arch,
                                    read_weights, to_mindspore_names)
from dgcnet.models import build_model
from tests.formats.conftest import random_state_dict

REPO = Path(__file__).resolve().parents[2]


def _meta_state(arch: str, num_classes: int = 19) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build_model(arch, num_classes).state_dict()


def test_r101_maps_to_the_ports_617_parameters_in_its_order(ms_reference):
    reference = json.loads((ms_reference / "ms_dgcnet_r101_params.json").read_text())
    state = _meta_state("dgcnet_r101")
    conv1d = set(reference["reshape"])
    mapped, dropped = to_mindspore_names(state, conv1d)
    assert dropped == 121
    assert [[name, list(t.shape), "Float32" if t.dtype == torch.float32 else str(t.dtype)]
            for name, t in mapped.items()] == reference["bare"]
    # And name by name as the port's table says (num_batches_tracked -> null).
    table = {k: v for k, v in reference["pth_to_ms"].items() if v is not None}
    assert sorted(table.values()) == sorted(mapped)
    # With train.py's prefix the network records carry the names of its checkpoint.
    prefixed, _ = to_mindspore_names(state, conv1d, prefix="net.")
    train_tags = {tag for tag, _, _ in reference["train_ckpt"]}
    assert set(prefixed) <= train_tags and len(prefixed) == 617


def test_the_ports_r101_names_fit_our_r101(ms_reference):
    reference = json.loads((ms_reference / "ms_dgcnet_r101_params.json").read_text())
    # Meta tensors stand in for the 1372 records of a train.py checkpoint.
    tensors = {tag: torch.empty(shape, device="meta") for tag, shape, _ in reference["train_ckpt"]}
    weights = from_mindspore_names(tensors)
    state, report = fit_to_model(weights, "train.ckpt", strict=True)
    assert report.arch == "dgcnet_r101" and report.num_classes == 19
    assert report.skipped == {"optimizer state": 750, "scalars": 5}
    assert report.added == {"num_batches_tracked (0)": 121}
    assert {k: list(v.shape) for k, v in state.items()} == reference["pth_shapes"]


def test_reading_the_real_train_checkpoint_subset(ms_reference):
    expected = np.load(ms_reference / "ms_subset_expected.npz")
    weights = read_weights(ms_reference / "ms_subset_crc.ckpt")
    assert weights.source_format == "mindspore"
    assert weights.skipped == {"optimizer state": 2, "scalars": 5}
    assert np.array_equal(weights.tensors["conv1.1.running_var"].numpy(), expected["net.conv1.1.moving_variance"])
    state, report = fit_to_model(weights, "subset", arch="dgcnet_r101")
    # Conv1d weights come back 3-D; the two dtype probes are not network names.
    assert state["head.dualgcn.conv_adj.weight"].shape == (128, 128, 1)
    assert np.array_equal(state["head.dualgcn.conv_adj.weight"].numpy(),
                          expected["net.head.dualgcn.conv_adj.weight"][..., 0])
    assert sorted(report.unexpected) == ["extra.half", "extra.long"]
    assert len(state) == 12 + report.added["num_batches_tracked (0)"]


@pytest.mark.parametrize("arch,num_classes", [("dgcnet_r101", 19), ("dgcnet_r50", 7), ("dgcnet_r34", 19),
                                              ("dgcnet_r18", 3)])
def test_arch_and_classes_are_inferred(arch, num_classes):
    state = _meta_state(arch, num_classes)
    assert infer_arch(state) == arch
    _, report = fit_to_model(Weights(state, "pth"), "x.pth", strict=True)
    assert (report.arch, report.num_classes) == (arch, num_classes)


@pytest.mark.parametrize("to", TARGETS)
def test_round_trip_through_every_format_is_bit_exact(tmp_path, r18_pth, r18_state, to):
    middle = tmp_path / f"middle.{to}"
    convert(r18_pth, middle, to, prefix="net." if to == "mindspore" else "", crc=to == "mindspore")
    back = tmp_path / "back.pth"
    convert(middle, back, "pth")
    restored = torch.load(back, weights_only=True)
    assert list(restored) == list(r18_state)
    for name, value in r18_state.items():
        if name.endswith("num_batches_tracked") and to == "mindspore":
            assert int(restored[name]) == 0  # MindSpore has no such counter
        else:
            assert restored[name].dtype == value.dtype and torch.equal(restored[name], value), name


def test_mindspore_output_has_the_ports_names(tmp_path, r18_pth, r18_state):
    out = tmp_path / "r18.ckpt"
    report = convert(r18_pth, out, "mindspore", prefix="net.")
    tags = mindspore.read_checkpoint(out)
    assert report.skipped == {"num_batches_tracked": 38} and report.converted == len(tags) == 202
    assert list(tags)[:5] == ["net.conv1.0.weight", "net.conv1.1.moving_mean", "net.conv1.1.moving_variance",
                              "net.conv1.1.gamma", "net.conv1.1.beta"]
    assert tags["net.head.dualgcn.conv_wg.weight"].shape == (128, 128, 1, 1)
    assert torch.equal(tags["net.layer4.1.bn2.moving_variance"], r18_state["layer4.1.bn2.running_var"])


def test_training_checkpoint_keeps_metadata_and_skips_optimizer(tmp_path, r18_state):
    model = build_model("dgcnet_r18", 19)
    model.load_state_dict(r18_state)
    head = list(model.head.parameters())  # a small optimizer keeps the file small
    optimizer = torch.optim.SGD(head, lr=0.01, momentum=0.9)
    for parameter in head:
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    names = [f"c{i}" for i in range(19)]
    ckpt = {"format": "dgcnet-train-v1", "model": model.state_dict(), "arch": "dgcnet_r18", "num_classes": 19,
            "class_names": names, "rgb": False, "config": {"lr": 0.01}, "iteration": 10,
            "optimizer": optimizer.state_dict(), "scaler": None, "rng": {"torch": torch.get_rng_state()}}
    src = tmp_path / "train.pt"
    torch.save(ckpt, src)
    report = convert(src, tmp_path / "released.safetensors", "dgcnet")
    assert report.skipped["optimizer state"] == len(head)  # one momentum buffer per parameter
    assert report.source_format == "dgcnet-train" and report.converted == len(model.state_dict())
    weights = read_weights(tmp_path / "released.safetensors")
    assert weights.info.class_names == tuple(names) and weights.info.rgb is False and weights.arch == "dgcnet_r18"
    # A checkpoint written before "info" existed: the crop comes from its config, the rest published.
    assert weights.info.crop_size == (832, 832) and weights.info.stride == 555


def test_shape_mismatch_fails_and_writes_nothing(tmp_path, r18_state):
    state = dict(r18_state)
    state["head.conva.0.weight"] = torch.zeros(256, 512, 1, 1)
    src = tmp_path / "bad.pth"
    torch.save(state, src)
    with pytest.raises(DgcnetError, match=r"head.conva.0.weight: file \(256, 512, 1, 1\) vs dgcnet_r18"):
        convert(src, tmp_path / "out.ckpt", "mindspore")
    assert not (tmp_path / "out.ckpt").exists()


def test_strict_and_partial_weights(tmp_path, r18_state):
    state = {k: v for k, v in r18_state.items() if not k.startswith("dsn.")}
    state["extra.weight"] = torch.zeros(1)
    src = tmp_path / "partial.pth"
    torch.save(state, src)
    with pytest.raises(DgcnetError, match="--strict: missing 9: dsn"):
        convert(src, tmp_path / "a.pth", "pth", strict=True)
    with pytest.raises(DgcnetError, match="needs a complete model"):
        convert(src, tmp_path / "a.safetensors", "dgcnet")
    report = convert(src, tmp_path / "a.safetensors", "safetensors")
    assert report.unexpected == ["extra.weight"] and len(report.missing) == 9


def test_cli_prints_the_report(tmp_path, r18_pth, capsys):
    assert main(["convert", str(r18_pth), str(tmp_path / "w.ckpt"), "--to", "mindspore", "--prefix", "net."]) == 0
    out = capsys.readouterr().out
    assert "converted      202 tensors" in out and "skipped        38 num_batches_tracked" in out
    assert main(["convert", str(tmp_path / "w.ckpt"), str(tmp_path / "w.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "source format  mindspore" in out and "added          38 num_batches_tracked (0)" in out
    with pytest.raises(SystemExit):  # argparse rejects an unknown target
        main(["convert", str(tmp_path / "w.ckpt"), str(tmp_path / "x"), "--to", "onnx"])


def test_cli_error_is_one_line(tmp_path, capsys):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dgcnet convert: error: ") and "empty" in err


def _backbone(arch: str = "dgcnet_r18") -> dict[str, torch.Tensor]:
    state = {k: v for k, v in random_state_dict(arch, seed=3).items() if not k.startswith(("head.", "dsn."))}
    state["fc.weight"] = torch.randn(1000, 512)
    state["fc.bias"] = torch.randn(1000)
    return state


@pytest.mark.slow
def test_run_pth2ckpt_script_and_its_reverse(tmp_path):
    backbone = _backbone()
    pth = tmp_path / "resnet_deep.pth"
    torch.save(backbone, pth)
    result = subprocess.run(["bash", str(REPO / "scripts" / "run_pth2ckpt.sh"), str(pth), str(tmp_path / "out")],
                            capture_output=True, text=True, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    counters = sum(k.endswith("num_batches_tracked") for k in backbone)
    assert f"skipped        2 ImageNet classifier (fc.*), {counters} num_batches_tracked" in result.stdout
    tags = mindspore.read_checkpoint(tmp_path / "out" / "dgcnet_deep.ckpt")
    assert all(t.startswith("net.") for t in tags) and not any(".fc." in t or "head" in t for t in tags)
    assert len(tags) == sum(not k.endswith("num_batches_tracked") and not k.startswith("fc.") for k in backbone)
    # The reverse: back to a PyTorch backbone (without fc, counters reset).
    back = tmp_path / "back.pth"
    convert(tmp_path / "out" / "dgcnet_deep.ckpt", back, "pth")
    restored = torch.load(back, weights_only=True)
    expected = {k: v for k, v in backbone.items() if not k.startswith("fc.")}
    assert list(restored) == list(expected)
    assert all(torch.equal(restored[k], v) for k, v in expected.items() if not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("to", ["dgcnet", "safetensors", "mindspore"])
def test_written_files_are_reproducible_and_follow_the_umask(tmp_path, r18_pth, to):
    """The same input converted twice gives the same bytes, with the umask's permissions."""
    old = os.umask(0o027)
    try:
        first, second = tmp_path / f"a.{to}", tmp_path / f"b.{to}"
        convert(r18_pth, first, to)
        convert(r18_pth, second, to)
    finally:
        os.umask(old)
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    assert stat.S_IMODE(first.stat().st_mode) == 0o640


def test_safetensors_files_load_with_the_safetensors_library(tmp_path, r18_pth, r18_state):
    from safetensors import safe_open

    convert(r18_pth, tmp_path / "r18.safetensors", "dgcnet")
    with safe_open(str(tmp_path / "r18.safetensors"), "pt") as f:
        assert f.metadata()["arch"] == "dgcnet_r18"
        assert sorted(f.keys()) == sorted(r18_state)
        for name in r18_state:
            assert torch.equal(f.get_tensor(name), r18_state[name]), name
