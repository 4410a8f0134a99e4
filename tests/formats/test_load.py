"""load_model from every format, torch.hub from a local clone, and refusing pickles that run code."""
import json
from dataclasses import replace
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import dgcnet
from dgcnet.cli import main
from dgcnet.errors import DgcnetError
from dgcnet.data.transforms import normalize
from dgcnet.formats.convert import convert, release_metadata, write_weights
from dgcnet.models import default_info

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def released(tmp_path_factory, r18_state) -> Path:
    path = tmp_path_factory.mktemp("released") / "r18.safetensors"
    names = tuple(f"thing{i}" for i in range(19))
    info = replace(default_info("dgcnet_r18"), class_names=names, rgb=False, crop_size=(65, 97), tile=97, stride=65)
    write_weights(r18_state, path, "dgcnet", info=info)
    return path


def _assert_same_weights(model, state, counters_kept=True):
    loaded = model.state_dict()
    assert list(loaded) == list(state)
    for name, value in state.items():
        if name.endswith("num_batches_tracked") and not counters_kept:
            continue
        assert torch.equal(loaded[name], value), name


def test_released_file_alone_gives_the_model(released, r18_state):
    model = dgcnet.load_model(released)
    assert model.arch == "dgcnet_r18" and not model.training
    assert model.info.class_names == tuple(f"thing{i}" for i in range(19)) and model.info.rgb is False
    assert (model.info.crop_size, model.info.tile, model.info.stride) == ((65, 97), 97, 65)
    _assert_same_weights(model, r18_state)


@pytest.mark.parametrize("to", ["pth", "mindspore"])
def test_other_formats_load(tmp_path, r18_pth, r18_state, to):
    path = tmp_path / f"w.{to}"
    convert(r18_pth, path, to, prefix="net." if to == "mindspore" else "")
    # The authors' and the MindSpore files record no facts: the published ones, said once.
    with pytest.warns(UserWarning) as caught:
        model = dgcnet.load_model(str(path))
    assert [str(w.message) for w in caught] == [
        f"{path}: records no classes, normalisation or training crop: using the published Cityscapes ones "
        f"(RGB normalisation, crop 832, tile 832 at stride 555)"]
    assert model.arch == "dgcnet_r18" and not model.training and model.info == default_info("dgcnet_r18")
    assert (model.info.tile, model.info.stride, model.info.label_ids[0]) == (832, 555, 7)
    _assert_same_weights(model, r18_state, counters_kept=to == "pth")


def test_arch_name_gives_random_weights_with_a_warning():
    with pytest.warns(UserWarning, match="random weights"):
        model = dgcnet.load_model("dgcnet_r18", num_classes=5)
    assert model.num_classes == 5 and not model.training


def test_wrong_num_classes_and_missing_file(released, tmp_path):
    with pytest.raises(DgcnetError, match="has 19 classes, not 5"):
        dgcnet.load_model(released, num_classes=5)
    with pytest.raises(DgcnetError, match="no such file"):
        dgcnet.load_model(tmp_path / "nothing.safetensors")


def test_backbone_only_loads_with_random_heads(tmp_path, r18_state):
    backbone = {k: v for k, v in r18_state.items() if not k.startswith(("head.", "dsn."))}
    path = tmp_path / "backbone.pth"
    torch.save(backbone, path)
    with pytest.warns(UserWarning, match=r"head\.\* \(\d+\), dsn\.\* \(9\) not in the file"):
        model = dgcnet.load_model(path, num_classes=4)
    assert model.num_classes == 4
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], r18_state["layer4.1.conv2.weight"])


def test_torch_hub_local_clone(released, r18_state):
    model = torch.hub.load(str(REPO), "dgcnet_r18", source="local", weights=str(released))
    assert not model.training and model.info.class_names[0] == "thing0"
    _assert_same_weights(model, r18_state)
    hubconf = torch.hub._import_module("hubconf", str(REPO / "hubconf.py"))
    assert all(callable(getattr(hubconf, arch)) for arch in dgcnet.list_models())
    with pytest.raises(DgcnetError, match="holds dgcnet_r18 weights, not dgcnet_r34"):
        torch.hub.load(str(REPO), "dgcnet_r34", source="local", weights=str(released))


class _Payload:
    """Unpickling this creates the marker file: the code that a safe loader must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle"])
def test_pickle_that_runs_code_is_refused(tmp_path, capsys, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"conv1.0.weight": torch.zeros(1), "x": _Payload(marker)}
    if container == "torch-zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DgcnetError, match="refused: the pickle holds more than tensors"):
        dgcnet.load_model(path)
    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused" in err
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("rgb", [True, False])
def test_metadata_describes_the_normalisation(tmp_path, rgb):
    metadata = release_metadata(replace(default_info("dgcnet_r18"), rgb=rgb))
    image = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    pixels = image[:, :, ::-1] if metadata["channels"] == "BGR" else image
    mean, std = np.array(json.loads(metadata["mean"])), np.array(json.loads(metadata["std"]))
    expected = ((pixels - mean) / std).transpose(2, 0, 1)
    assert np.allclose(normalize(image, rgb).numpy(), expected, rtol=0, atol=1e-4)


def test_hub_lists_an_entry_point_for_every_architecture():
    """torch.hub's entry points come from the factory's table: a new architecture is one table row."""
    from dgcnet.models import list_models

    hubconf = torch.hub._import_module("hubconf", str(REPO / "hubconf.py"))
    entries = [name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")]
    assert sorted(entries) == sorted(list_models())
    model = torch.hub.load(str(REPO), "dgcnet_r18", source="local", num_classes=3)
    assert model.arch == "dgcnet_r18" and model.num_classes == 3
