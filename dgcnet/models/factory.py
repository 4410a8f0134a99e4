"""Model factory: the table of architectures, and build_model that builds one by name."""
from __future__ import annotations

from dataclasses import dataclass

from dgcnet.errors import DgcnetError
from dgcnet.models.dgcnet import DGCNet
from dgcnet.models.info import ModelInfo, default_info
from dgcnet.models.resnet import BasicBlock, Bottleneck


@dataclass(frozen=True)
class Arch:
    """How one architecture is built: the backbone's block type and blocks per layer, the head's width."""
    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]
    head_channels: int
    description: str


# The one table of architectures: the factory, the weight converters (which recognise an
# architecture from its layer3) and the torch.hub entry points all read it.
ARCHS: dict[str, Arch] = {
    "dgcnet_r101": Arch(Bottleneck, (3, 4, 23, 3), 512,
                        "the published model: ResNet-101 deep stem, 72,506,598 parameters with 19 classes"),
    "dgcnet_r50": Arch(Bottleneck, (3, 4, 6, 3), 512, "ResNet-50 deep stem"),
    "dgcnet_r34": Arch(BasicBlock, (3, 4, 6, 3), 256, "ResNet-34 deep stem, 256-channel head: for quick experiments"),
    "dgcnet_r18": Arch(BasicBlock, (2, 2, 2, 2), 256, "ResNet-18 deep stem, 256-channel head: the demo's and the tests'"),
}


def list_models() -> list[str]:
    return list(ARCHS)


def build_model(arch: str = "dgcnet_r101", num_classes: int = 19, *, info: ModelInfo | None = None) -> DGCNet:
    """A randomly initialised model. ``info`` describes it (arch and classes must agree); by
    default the published recipe's facts (:func:`default_info`) for ``num_classes`` classes."""
    if arch not in ARCHS:
        raise DgcnetError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if num_classes < 1:
        raise DgcnetError(f"num_classes must be positive, got {num_classes}")
    if info is None:
        info = default_info(arch, num_classes)
    elif (info.arch, info.num_classes) != (arch, num_classes):
        raise DgcnetError(f"the model description is of {info.arch} with {info.num_classes} classes, "
                          f"not {arch} with {num_classes}")
    spec = ARCHS[arch]
    return DGCNet(spec.block, spec.layers, info, head_channels=spec.head_channels)
