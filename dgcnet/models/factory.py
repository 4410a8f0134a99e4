"""Model factory: one function per architecture, looked up by name."""
from __future__ import annotations

from typing import Callable

from dgcnet.errors import DgcnetError
from dgcnet.models.dgcnet import DGCNet
from dgcnet.models.info import ModelInfo, default_info
from dgcnet.models.resnet import BasicBlock, Bottleneck


def dgcnet_r101(info: ModelInfo) -> DGCNet:
    """The published model: ResNet-101 deep stem, 72,506,598 parameters with 19 classes."""
    return DGCNet(Bottleneck, (3, 4, 23, 3), info)


def dgcnet_r50(info: ModelInfo) -> DGCNet:
    return DGCNet(Bottleneck, (3, 4, 6, 3), info)


def dgcnet_r34(info: ModelInfo) -> DGCNet:
    """Basic-block backbone with a 256-channel DualGCN head: for quick experiments."""
    return DGCNet(BasicBlock, (3, 4, 6, 3), info, head_channels=256)


def dgcnet_r18(info: ModelInfo) -> DGCNet:
    """The smallest variant, used by the demo and the tests."""
    return DGCNet(BasicBlock, (2, 2, 2, 2), info, head_channels=256)


_ARCHS: dict[str, Callable[[ModelInfo], DGCNet]] = {
    "dgcnet_r101": dgcnet_r101,
    "dgcnet_r50": dgcnet_r50,
    "dgcnet_r34": dgcnet_r34,
    "dgcnet_r18": dgcnet_r18,
}


def list_models() -> list[str]:
    return list(_ARCHS)


def build_model(arch: str = "dgcnet_r101", num_classes: int = 19, *, info: ModelInfo | None = None) -> DGCNet:
    """A randomly initialised model. ``info`` describes it (arch and classes must agree); by
    default the published recipe's facts (:func:`default_info`) for ``num_classes`` classes."""
    if arch not in _ARCHS:
        raise DgcnetError(f"unknown arch {arch!r}; choose one of {', '.join(_ARCHS)}")
    if num_classes < 1:
        raise DgcnetError(f"num_classes must be positive, got {num_classes}")
    if info is None:
        info = default_info(arch, num_classes)
    elif (info.arch, info.num_classes) != (arch, num_classes):
        raise DgcnetError(f"the model description is of {info.arch} with {info.num_classes} classes, "
                          f"not {arch} with {num_classes}")
    return _ARCHS[arch](info)
