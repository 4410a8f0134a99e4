"""Winograd F(4x4, 3x3) convolution for the CPU fast inference path.

A 3x3 convolution computes each 4x4 block of outputs from a 6x6 block of inputs with 36 products
per channel pair instead of 144 (Lavin and Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016). The 36 products are 36 matrix multiplications (tiles x Cin) @ (Cin x Cout),
which run at the CPU's full matrix rate, so the wide 3x3 convolutions of DGCNet (layer3, layer4
and the head, about 60% of the FLOPs) take about half the time of oneDNN's direct fp32
convolution. Rounding differs from direct convolution by about 1e-6 relative per layer.

Dilation is handled by the tiling: with dilation d, a tile's 6 input rows are d apart, and the
d x d phases of the image are separate tiles, so no copy into sub-images is needed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Input, filter and output transforms for the interpolation points 0, 1, -1, 2, -2 (and infinity).
_BT = torch.tensor([[4, 0, -5, 0, 1, 0],
                    [0, -4, -4, 1, 1, 0],
                    [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0],
                    [0, 2, -1, -2, 1, 0],
                    [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
_G = torch.tensor([[1 / 4, 0, 0],
                   [-1 / 6, -1 / 6, -1 / 6],
                   [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6],
                   [1 / 24, -1 / 12, 1 / 6],
                   [0, 0, 1]], dtype=torch.float64)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0],
                    [0, 1, -1, 2, -2, 0],
                    [0, 1, 1, 4, 4, 0],
                    [0, 1, -1, 8, -8, 1]], dtype=torch.float64)


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """Transform a (Cout, Cin, 3, 3) filter into the (36, Cin, Cout) Winograd domain.

    Index ``6 * col + row`` of the first dimension holds G g G^T at (row, col); computed in
    float64 and returned in the weight's dtype.
    """
    u = torch.einsum("ki,ocij,lj->lkco", _G, weight.double(), _G)
    return u.reshape(36, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def winograd_conv3x3(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None,
                     dilation: int = 1) -> torch.Tensor:
    """A stride-1 3x3 convolution with padding = dilation, the filter given by ``winograd_weight``.

    x: (N, Cin, H, W), any memory format; returns (N, Cout, H, W) in channels-last memory.
    """
    n, cin, h, w = x.shape
    cout = weight_t.shape[2]
    d = dilation
    bt, at = _BT.to(x), _AT.to(x)
    tiles_h, tiles_w = -(-h // (4 * d)), -(-w // (4 * d))
    # Zero padding: d on the top and left (the convolution's own), the rest to whole tiles.
    padded_h, padded_w = 4 * d * tiles_h + 2 * d, 4 * d * tiles_w + 2 * d
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, d, padded_w - w - d, d, padded_h - h - d))
    s_n, s_h, s_w, _ = xp.stride()

    # Input transform B^T x B, rows then columns. A tile starts at row 4*d*t + p (p: the phase,
    # 0..d-1) and reads rows d apart, so (tile, phase, row-in-tile) is a strided view of xp.
    rows = xp.as_strided((6, n, tiles_h, d, padded_w, cin), (d * s_h, s_n, 4 * d * s_h, s_h, s_w, 1))
    r = torch.mm(bt, rows.reshape(6, -1)).view(6, n, tiles_h, d, padded_w, cin)
    s = r.stride()
    cols = r.as_strided((6, 6, n, tiles_h, d, tiles_w, d, cin),
                        (d * s[4], s[0], s[1], s[2], s[3], 4 * d * s[4], s[4], 1))
    v = torch.mm(bt, cols.reshape(6, -1)).view(36, -1, cin)  # (col, row) x tiles x Cin

    m = torch.bmm(v, weight_t)  # 36 matrix products: (tiles x Cin) @ (Cin x Cout)

    # Output transform A^T m A: over the column index, then the row index.
    z = torch.mm(at, m.view(6, -1)).view(4, 6, -1)
    y = torch.matmul(at, z).view(4, 4, n, tiles_h, d, tiles_w, d, cout)  # (col, row, n, t, p, u, q, c)

    out = x.new_empty(n, 4 * d * tiles_h, 4 * d * tiles_w, cout)
    out_tiles = out.view(n, tiles_h, 4, d, tiles_w, 4, d, cout)
    y = y.permute(2, 3, 1, 4, 5, 0, 6, 7)
    if bias is None:
        out_tiles.copy_(y)
    else:
        torch.add(y, bias, out=out_tiles)
    out = out[:, :h, :w].permute(0, 3, 1, 2)
    return out.contiguous(memory_format=torch.channels_last)


def tiled_positions(height: int, width: int, dilation: int) -> int:
    """How many positions the whole Winograd tiles (4 * dilation on a side) over a map cover."""
    tile = 4 * dilation
    return tile * -(-height // tile) * tile * -(-width // tile)


def winograd_pays(height: int, width: int, dilation: int) -> bool:
    """Whether the Winograd algorithm beats the direct convolution on a ``height`` x ``width`` map.

    It computes whole tiles of 4 * dilation rows and columns, at about half the direct cost per
    position; where the tiles hold more than twice the map's positions (small maps, large
    dilations) the direct convolution is faster (``benchmarks/winograd_conv.py``, 2-core CPU:
    0.62-0.79x the direct speed at 2.5-2.9x the positions in tiles, 0.95-2.11x at up to 1.8x).
    """
    return tiled_positions(height, width, dilation) <= 2 * height * width


class WinogradConv2d(nn.Module):
    """Inference-only replacement of a stride-1 3x3 ``nn.Conv2d`` (padding = dilation, no groups).

    Runs the Winograd algorithm in float32/float64 without autograd, on maps where it pays
    (``winograd_pays``); under autocast (bf16 or fp16) it runs the original convolution, whose
    low-precision kernels are faster and rounded as usual, and so it does when gradients are
    asked for and on maps too small for its tiles.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not winograd_applies(conv):
            raise ValueError(f"not a stride-1 3x3 convolution with padding = dilation: {conv}")
        self.conv = conv
        self.dilation = conv.dilation[0]
        self.register_buffer("weight_t", winograd_weight(conv.weight.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_autocast_enabled(x.device.type) or x.dtype != self.weight_t.dtype
                or (torch.is_grad_enabled() and (x.requires_grad or self.conv.weight.requires_grad))
                or not winograd_pays(x.shape[2], x.shape[3], self.dilation)):
            return self.conv(x)
        return winograd_conv3x3(x, self.weight_t, self.conv.bias, self.dilation)


def winograd_applies(conv: nn.Module, min_channels: int = 0) -> bool:
    """Whether ``conv`` is a 3x3 stride-1 convolution that ``WinogradConv2d`` can replace."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.groups == 1 and conv.dilation[0] == conv.dilation[1]
            and conv.padding == conv.dilation and conv.padding_mode == "zeros"
            and min(conv.in_channels, conv.out_channels) >= min_channels)


def use_winograd(model: nn.Module, min_channels: int = 128) -> int:
    """Replace (in place) every eligible 3x3 convolution with at least ``min_channels`` input and
    output channels by a ``WinogradConv2d``; returns how many. Narrower convolutions stay direct:
    their transforms cost more than the products they save."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if winograd_applies(child, min_channels):
                setattr(parent, name, WinogradConv2d(child))
                replaced += 1
    return replaced
