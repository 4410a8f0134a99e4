"""ONNX export with the onnxruntime check, static and dynamic input sizes."""
import numpy as np
import pytest
import torch

from dgcnet.cli import main
from dgcnet.formats.convert import write_weights
from dgcnet.formats.load import load_model
from dgcnet.formats.onnx import check_onnx
from dgcnet.models import build_model

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
    write_weights(model.state_dict(), path, "dgcnet", arch="dgcnet_r18", num_classes=19,
                  class_names=tuple(str(i) for i in range(19)), rgb=True)
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
