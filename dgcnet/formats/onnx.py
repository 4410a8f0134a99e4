"""ONNX export of a DGCNet for inference, with an onnxruntime check against PyTorch.

The plain graph takes ``image``: float32 NCHW, already normalised as the model expects
(``dgcnet.data.transforms.normalize``), and returns ``logits``: float32
(N, num_classes, ceil(H/8), ceil(W/8)) stride-8 class scores (upsample, then argmax).

The end-to-end graph (:class:`EndToEnd`, ONNX or ``torch.export`` .pt2) takes ``image``: uint8
(N, H, W, 3) RGB and returns ``labels``: uint8 (N, H, W) train ids at the input's resolution;
the model's facts (classes, palette, normalisation) are its metadata. Deploying it needs only a
runtime and an image decoder (docs/deploy.md).
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dgcnet.errors import DgcnetError, import_optional
from dgcnet.io import atomic_write
from dgcnet.models.info import ModelInfo

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


# ---------------------------------------------------------------- end to end: uint8 image in, labels out

LABELS_NAME = "labels"


class EndToEnd(nn.Module):
    """uint8 (N, H, W, 3) RGB images -> uint8 (N, H, W) train ids at the input's resolution:
    the model's normalisation, the whole image in one pass, bilinear upsampling
    (align_corners=True, as ``dgcnet.predict``) and argmax, in one graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        info = model.info
        self.model = model.eval()
        # Channel order the model takes (BGR: reversed), then (pixel - mean) / std on the 0..255 scale.
        self.register_buffer("order", torch.tensor([0, 1, 2] if info.rgb else [2, 1, 0]), persistent=False)
        self.register_buffer("mean", torch.tensor(info.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(info.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).index_select(1, self.order).float()
        logits = self.model((x - self.mean) / self.std)
        logits = F.interpolate(logits, size=image.shape[1:3], mode="bilinear", align_corners=True)
        return logits.argmax(1).to(torch.uint8)


def graph_metadata(info: ModelInfo) -> dict[str, str]:
    """Metadata of an end-to-end graph: the model's facts and what goes in and out."""
    return {"format": "dgcnet-end-to-end", **info.to_metadata(),
            "input": "image: uint8 (N, H, W, 3) RGB", "output": "labels: uint8 (N, H, W) class indices (train ids)"}


def export_onnx_end_to_end(model: nn.Module, path: str | Path, size: tuple[int, int]) -> None:
    """Export :class:`EndToEnd` of ``model`` (traced at ``size``; batch, height and width dynamic)
    with the model's facts as ONNX metadata."""
    onnx = import_optional("onnx", "onnx")
    example = torch.zeros(1, *size, 3, dtype=torch.uint8)
    axes = {0: "batch", 1: "height", 2: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(EndToEnd(model).eval(), (example,), str(path), input_names=[INPUT_NAME],
                          output_names=[LABELS_NAME], opset_version=OPSET,
                          dynamic_axes={INPUT_NAME: axes, LABELS_NAME: axes}, dynamo=False)
    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, graph_metadata(model.info))
    onnx.save(graph, str(path))


def export_pt2(model: nn.Module, path: str | Path, size: tuple[int, int]) -> None:
    """Export :class:`EndToEnd` of ``model`` with ``torch.export`` (batch, height and width dynamic),
    saved with the model's facts as the extra file ``dgcnet.json``."""
    example = torch.zeros(2, *size, 3, dtype=torch.uint8)
    auto = torch.export.Dim.AUTO
    program = torch.export.export(EndToEnd(model).eval(), (example,), dynamic_shapes={"image": {0: auto, 1: auto, 2: auto}})
    torch.export.save(program, str(path), extra_files={"dgcnet.json": json.dumps(graph_metadata(model.info))})


def check_images(size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """Two smooth random RGB images: ``size`` and a larger one of another aspect, odd-sized."""
    h, w = size
    generator = torch.Generator().manual_seed(seed)
    images = []
    for height, width in ((h, w), (h * 3 // 2 + 1, w * 5 // 4 + 3)):
        coarse = torch.rand(1, 3, max(2, height // 16), max(2, width // 16), generator=generator) * 255
        image = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
        images.append(image[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())
    return images


def label_agreement(model: nn.Module, run: Callable[[np.ndarray], np.ndarray], size: tuple[int, int],
                    where: str | Path) -> float:
    """Smallest share of pixels on which ``run`` (uint8 (1, H, W, 3) -> (1, H, W) labels) agrees
    with ``dgcnet.predict`` (whole image), over the two images of :func:`check_images`."""
    from dgcnet.engine.predict import predict

    agreement = 1.0
    for image in check_images(size):
        expected = predict(model, image, mode="whole")
        try:
            actual = np.asarray(run(image[None]))
        except Exception as error:  # a runtime raises its own exception types for any bad graph or input
            raise DgcnetError(f"{where}: could not run the graph on a {image.shape[0]}x{image.shape[1]} image: "
                              f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
        if actual.shape != (1, *expected.shape):
            raise DgcnetError(f"{where}: labels of shape {actual.shape} for a {image.shape[0]}x{image.shape[1]} image")
        agreement = min(agreement, float((actual[0] == expected).mean()))
    return agreement


def onnx_runner(path: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    onnxruntime = import_optional("onnxruntime", "onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: session.run([LABELS_NAME], {INPUT_NAME: images})[0]


def pt2_runner(path: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    module = torch.export.load(str(path)).module()
    return lambda images: module(torch.from_numpy(images)).numpy()
