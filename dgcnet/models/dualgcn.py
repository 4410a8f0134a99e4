"""The DualGCN head: a coordinate-space graph (SpatialGCN) and a feature-space graph."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, relu: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SpatialGCN(nn.Module):
    """Graph reasoning over the positions of a (down-sampled) feature map."""

    # (convolution, the BatchNorm right after it) outside an nn.Sequential: what BN folding folds.
    conv_bn_pairs = (("conv_wg", "bn_wg"),)

    def __init__(self, planes: int) -> None:
        super().__init__()
        inter = planes // 2
        self.node_k = nn.Conv2d(planes, inter, 1)
        self.node_v = nn.Conv2d(planes, inter, 1)
        self.node_q = nn.Conv2d(planes, inter, 1)
        self.conv_wg = nn.Conv1d(inter, inter, 1, bias=False)
        self.bn_wg = nn.BatchNorm1d(inter)
        self.softmax = nn.Softmax(dim=2)
        self.out = nn.Sequential(nn.Conv2d(inter, planes, 1), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        k = self.node_k(x).flatten(2).transpose(1, 2)  # (B, N, C')
        v = self.node_v(x).flatten(2).transpose(1, 2)  # (B, N, C')
        q = self.node_q(x).flatten(2)                  # (B, C', N)
        attention = self.softmax(torch.bmm(q, v))      # (B, C', C')
        av = torch.bmm(k, attention).transpose(1, 2)   # (B, C', N)
        avw = self.bn_wg(self.conv_wg(av)).view(b, -1, h, w)
        return F.relu(self.out(avw) + x)


class DualGCN(nn.Module):
    """Coordinate-space branch (on a stride-8 down-sampled copy) fused with a feature-space branch."""

    # (convolution, the BatchNorm right after it) outside an nn.Sequential: what BN folding folds.
    conv_bn_pairs = (("phi", "bn_phi"), ("theta", "bn_theta"), ("conv_adj", "bn_adj"), ("conv_wg", "bn_wg"),
                     ("conv3", "bn3"))

    def __init__(self, planes: int) -> None:
        super().__init__()
        # Feature space: project pixels onto planes//4 graph nodes of planes//2 features.
        self.phi = nn.Conv2d(planes, planes // 2, 1, bias=False)
        self.bn_phi = nn.BatchNorm2d(planes // 2)
        self.theta = nn.Conv2d(planes, planes // 4, 1, bias=False)
        self.bn_theta = nn.BatchNorm2d(planes // 4)
        self.conv_adj = nn.Conv1d(planes // 4, planes // 4, 1, bias=False)
        self.bn_adj = nn.BatchNorm1d(planes // 4)
        self.conv_wg = nn.Conv1d(planes // 2, planes // 2, 1, bias=False)
        self.bn_wg = nn.BatchNorm1d(planes // 2)
        self.conv3 = nn.Conv2d(planes // 2, planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        # Coordinate space: three strided depthwise convs, no activation in between.
        local: list[nn.Module] = []
        for _ in range(3):
            local += [nn.Conv2d(planes, planes, 3, stride=2, padding=1, groups=planes, bias=False),
                      nn.BatchNorm2d(planes)]
        self.local = nn.Sequential(*local)
        self.gcn_local_attention = SpatialGCN(planes)
        self.final = conv_bn(planes * 2, planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        local = self.gcn_local_attention(self.local(x))
        local = F.interpolate(local, size=(h, w), mode="bilinear", align_corners=True)
        spatial = x * local + x

        x_sqz = self.bn_phi(self.phi(x)).flatten(2)        # (B, C/2, N)
        nodes = self.bn_theta(self.theta(x)).flatten(2)    # (B, C/4, N)
        z_idt = torch.matmul(x_sqz, nodes.transpose(1, 2))  # (B, C/2, C/4)
        z = self.bn_adj(self.conv_adj(z_idt.transpose(1, 2))).transpose(1, 2)
        z = self.bn_wg(self.conv_wg(z + z_idt))
        y = torch.matmul(z, nodes).view(b, c // 2, h, w)
        g_out = F.relu(x + self.bn3(self.conv3(y)))

        return self.final(torch.cat([spatial, g_out], dim=1))


class DualGCNHead(nn.Module):
    def __init__(self, in_channels: int, inter_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conva = conv_bn(in_channels, inter_channels, 3, relu=True)
        self.dualgcn = DualGCN(inter_channels)
        self.convb = conv_bn(inter_channels, inter_channels, 3, relu=True)
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels + inter_channels, inter_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(inter_channels, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convb(self.dualgcn(self.conva(x)))
        return self.bottleneck(torch.cat([x, out], dim=1))
