"""Deep-stem ResNet backbones with output stride 8 (dilated layer3 and layer4)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1
    # (convolution, the BatchNorm right after it) outside an nn.Sequential: what BN folding folds.
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4
    # (convolution, the BatchNorm right after it) outside an nn.Sequential: what BN folding folds.
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """ResNet with the three-conv "deep stem" and dilation 2 / 4 (multi-grid 1,2,4) in layer3 / layer4.

    Returns the layer3 and layer4 feature maps, both at stride 8.
    """

    # (convolution, the BatchNorm right after it) outside an nn.Sequential: what BN folding folds.
    conv_bn_pairs = (("conv1.6", "bn1"),)  # the stem's last convolution feeds bn1

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int],
                 multi_grid: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            conv3x3(3, 64, stride=2), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            conv3x3(64, 64), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            conv3x3(64, 128),
        )
        self.bn1 = nn.BatchNorm2d(128)
        self.relu = nn.ReLU(inplace=True)
        # ceil_mode fixes the output sizes of the reference model (e.g. 832 -> 105, 769 -> 97).
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.inplanes = 128
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], dilations=[2] * layers[2])
        self.layer4 = self._make_layer(block, 512, layers[3],
                                       dilations=[4 * multi_grid[i % len(multi_grid)] for i in range(layers[3])])
        self.layer3_channels = 256 * block.expansion
        self.out_channels = 512 * block.expansion

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int = 1, dilations: Sequence[int] | None = None) -> nn.Sequential:
        dilations = dilations or [1] * blocks
        # The first block of every layer has a projection shortcut, also where stride is 1.
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion),
        )
        layers = [block(self.inplanes, planes, stride, dilations[0], downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, d) for d in dilations[1:]]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        c3 = self.layer3(x)
        c4 = self.layer4(c3)
        return c3, c4
