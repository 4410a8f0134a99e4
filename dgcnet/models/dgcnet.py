"""DGCNet: a dilated deep-stem ResNet, the DualGCN head and an auxiliary head on layer3."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dgcnet.models.dualgcn import DualGCNHead
from dgcnet.models.info import ModelInfo
from dgcnet.models.resnet import BasicBlock, Bottleneck, ResNetBackbone


class DGCNet(ResNetBackbone):
    """The backbone's modules sit at the top level (``conv1``, ``layer1``...), next to ``head``
    and ``dsn``, so the state dict has the reference model's names.

    Eval mode returns stride-8 logits; train mode returns ``(logits, aux_logits)``.
    ``info`` says what the logits mean and how to feed and run the model (:class:`ModelInfo`).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], info: ModelInfo,
                 head_channels: int = 512) -> None:
        super().__init__(block, layers)
        self.info = info
        num_classes = info.num_classes
        self.head = DualGCNHead(self.out_channels, head_channels, num_classes)
        self.dsn = nn.Sequential(
            nn.Conv2d(self.layer3_channels, 512, 3, padding=1),
            nn.BatchNorm2d(512),
            nn.Dropout2d(0.1),
            nn.Conv2d(512, num_classes, 1),
        )

    @property
    def arch(self) -> str:
        return self.info.arch

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        c3, c4 = super().forward(x)
        logits = self.head(c4)
        if not self.training:
            return logits
        return logits, self.dsn(c3)
