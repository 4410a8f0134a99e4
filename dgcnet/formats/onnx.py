"""ONNX export of a DGCNet for inference, with an onnxruntime check against PyTorch.

The graph takes ``image``: float32 NCHW, already normalised as the model expects
(``dgcnet.data.transforms.normalize``), and returns ``logits``: float32
(N, num_classes, ceil(H/8), ceil(W/8)) stride-8 class scores (upsample, then argmax).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from torch import nn

from dgcnet.errors import DgcnetError, import_optional
from dgcnet.io import atomic_write

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def export_onnx(model: nn.Module, path: str | Path, size: tuple[int, int], dynamic: bool = False) -> None:
    """Export ``model`` (eval mode) for inputs of ``size`` (HxW); ``dynamic`` frees batch, height, width."""
    import_optional("onnx", "onnx")
    model = model.eval()
    example = torch.zeros(1, 3, *size)
    dynamic_axes = ({INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                     OUTPUT_NAME: {0: "batch", 2: "height_8", 3: "width_8"}} if dynamic else None)
    with warnings.catch_warnings(), atomic_write(path) as f:
        # The TorchScript-based exporter needs no extra packages and handles this model fully.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), f, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=OPSET, dynamic_axes=dynamic_axes, dynamo=False)


def check_onnx(model: nn.Module, path: str | Path, size: tuple[int, int], batch: int = 1, seed: int = 0) -> float:
    """Run the exported graph with onnxruntime on a random input of ``size`` and return the
    largest absolute logit difference to PyTorch relative to the largest PyTorch logit."""
    onnxruntime = import_optional("onnxruntime", "onnx")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, *size, generator=generator)
    with torch.no_grad():
        expected = model.eval()(x)
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    except Exception as error:  # onnxruntime raises its own exception types for any bad graph or input
        raise DgcnetError(f"{path}: onnxruntime could not run the graph: {str(error).splitlines()[0]}") from None
    actual = torch.from_numpy(actual)
    if actual.shape != expected.shape:
        raise DgcnetError(f"{path}: onnxruntime gives logits {tuple(actual.shape)}, PyTorch {tuple(expected.shape)}")
    if not torch.isfinite(expected).all():
        raise DgcnetError("the PyTorch logits are not finite, nothing to compare the ONNX graph with")
    error = float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
    return error if math.isfinite(error) else math.inf
