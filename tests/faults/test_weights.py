"""Weights files with NaN or infinity, in every format: every loader refuses them with one line
naming the file and the first bad tensor, and nothing is written."""
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from dgcnet.cli import main
from dgcnet.engine.checkpoint import load_checkpoint
from dgcnet.errors import DgcnetError
from dgcnet.formats import mindspore
from dgcnet.formats.convert import convert, read_weights, release_metadata
from dgcnet.formats.load import load_model
from dgcnet.models import default_info


def _tensors(bad: float) -> dict[str, torch.Tensor]:
    weight = torch.ones(4, 3, 3, 3)
    weight[2, 1, 0, 0] = bad
    return {"conv1.0.weight": torch.ones(2, 3, 3, 3), "conv1.1.weight": weight}


def _pth(path, tensors):
    torch.save(tensors, path)


def _safetensors(path, tensors):
    save_file(tensors, str(path))


def _release(path, tensors):
    save_file(tensors, str(path), metadata=release_metadata(replace(default_info("dgcnet_r18"), class_names=tuple(map(str, range(19))))))


def _train_checkpoint(path, tensors):
    torch.save({"format": "dgcnet-train-v1", "model": tensors, "arch": "dgcnet_r18", "num_classes": 19}, path)


def _mindspore(path, tensors):
    mindspore.write_checkpoint(path, {"net." + k: v for k, v in tensors.items()})


WRITERS = {"pth": _pth, "safetensors": _safetensors, "dgcnet": _release, "dgcnet-train": _train_checkpoint,
           "mindspore": _mindspore}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("fmt", WRITERS)
def test_non_finite_weights_are_refused_by_every_loader(tmp_path, fmt, bad):
    path = tmp_path / "weights.bin"
    WRITERS[fmt](path, _tensors(bad))
    expected = f"{path}: refused: tensor conv1.1.weight holds 1 non-finite value"
    for load in (read_weights, load_model, lambda p: convert(p, tmp_path / "out.safetensors")):
        with pytest.raises(DgcnetError, match=expected):
            load(path)
    assert not (tmp_path / "out.safetensors").exists()
    assert list(tmp_path.iterdir()) == [path]  # no partial output either


def test_non_finite_weights_refused_by_the_cli_and_train(tmp_path, capsys, trained_run):
    from dgcnet.config import load_config
    from dgcnet.engine.train import train
    from tests.faults.conftest import tiny_overrides

    result, data_list = trained_run
    state = torch.load(result.checkpoint, weights_only=True)
    state["model"]["head.bottleneck.3.weight"][0, 0] = float("nan")
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    for argv in (["convert", str(broken), str(tmp_path / "out.safetensors")],
                 ["predict", "--restore-from", str(broken), str(data_list.parent / "img/0.png"),
                  "--output-dir", str(tmp_path / "pred"), "--device", "cpu"],
                 ["eval", "--restore-from", str(broken), "--data-dir", str(data_list.parent),
                  "--data-list", str(data_list), "--output-dir", str(tmp_path / "eval"), "--device", "cpu"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{broken}: refused: tensor head.bottleneck.3.weight holds" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pt"]
    with pytest.raises(DgcnetError, match="refused: tensor head.bottleneck.3.weight"):
        load_checkpoint(broken)
    with pytest.raises(DgcnetError, match="refused: tensor head.bottleneck.3.weight"):
        train(load_config(None, tiny_overrides(data_list, tmp_path / "run", **{"model.restore_from": broken})))


def test_convert_refuses_class_names_that_do_not_match_the_classes(tmp_path, release_weights):
    from safetensors import safe_open

    with safe_open(str(release_weights), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    odd = tmp_path / "odd.safetensors"
    metadata = {**release_metadata(default_info("dgcnet_r18")), "class_names": '["a", "b"]'}
    save_file(tensors, str(odd), metadata=metadata)
    with pytest.raises(DgcnetError, match=f"{odd}: 2 class names for 19 classes"):
        convert(odd, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("dims", [[0, 2**62, 2**62], [2**62, 0], [0, 2**40, 2**40, 2**40]])
def test_mindspore_shapes_with_a_zero_dim_and_huge_others(tmp_path, capsys, dims):
    from tests.formats.test_mindspore import _record

    tensor = b"".join(b"\x08" + mindspore._varint(d) for d in dims) + b"\x12\x07Float32\x1a\x00"
    path = tmp_path / "forged.ckpt"
    path.write_bytes(_record(b"net.conv1.0.weight", tensor))
    with pytest.raises(DgcnetError, match=r"forged.ckpt: net.conv1.0.weight: Float32 shape .* is impossibly large"):
        read_weights(path)
    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 1
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "out.safetensors").exists()
