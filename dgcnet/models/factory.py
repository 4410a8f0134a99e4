"""Model factory: one function per architecture, looked up by name."""
from __future__ import annotations

from typing import Callable

from dgcnet.errors import DgcnetError
from dgcnet.models.dgcnet import DGCNet
from dgcnet.models.resnet import BasicBlock, Bottleneck


def dgcnet_r101(num_classes: int = 19) -> DGCNet:
    """The published model: ResNet-101 deep stem, 72,506,598 parameters with 19 classes."""
    return DGCNet(Bottleneck, (3, 4, 23, 3), num_classes, arch="dgcnet_r101")


def dgcnet_r50(num_classes: int = 19) -> DGCNet:
    return DGCNet(Bottleneck, (3, 4, 6, 3), num_classes, arch="dgcnet_r50")


def dgcnet_r34(num_classes: int = 19) -> DGCNet:
    """Basic-block backbone with a 256-channel DualGCN head: for quick experiments."""
    return DGCNet(BasicBlock, (3, 4, 6, 3), num_classes, head_channels=256, arch="dgcnet_r34")


def dgcnet_r18(num_classes: int = 19) -> DGCNet:
    """The smallest variant, used by the demo and the tests."""
    return DGCNet(BasicBlock, (2, 2, 2, 2), num_classes, head_channels=256, arch="dgcnet_r18")


_ARCHS: dict[str, Callable[[int], DGCNet]] = {
    "dgcnet_r101": dgcnet_r101,
    "dgcnet_r50": dgcnet_r50,
    "dgcnet_r34": dgcnet_r34,
    "dgcnet_r18": dgcnet_r18,
}


def list_models() -> list[str]:
    return list(_ARCHS)


def build_model(arch: str = "dgcnet_r101", num_classes: int = 19) -> DGCNet:
    if arch not in _ARCHS:
        raise DgcnetError(f"unknown arch {arch!r}; choose one of {', '.join(_ARCHS)}")
    if num_classes < 1:
        raise DgcnetError(f"num_classes must be positive, got {num_classes}")
    return _ARCHS[arch](num_classes)
