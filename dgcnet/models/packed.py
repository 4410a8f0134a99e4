"""oneDNN convolutions with packed bf16 filters and fused activations, for the CPU fast inference
path under bf16 autocast.

PyTorch's eager convolution under CPU autocast converts the fp32 filter to bf16 and into oneDNN's
blocked layout at every call, and the ReLU and residual sum after it are further passes over the
output. ``PackedConv2d`` converts its filter once (at the first bf16 call) and runs
``torch.ops.mkldnn._convolution_pointwise`` with the ReLU, or the residual sum and the ReLU,
fused into the convolution: for dgcnet_r18 at 512x1024 about 20% of the bf16 time was filter
casts and separate ReLU/add passes (``benchmarks/deploy_runtimes.py``).

In fp32 the convolutions run as before (Winograd for the wide 3x3 ones, oneDNN for the rest, the
ReLU and sum apart): packed fp32 filters measured slower there.

The head gets bf16 paths of its own (``PackedDualGCNHead``, ``PackedDualGCN``,
``PackedSpatialGCN``): its widest convolutions run in pieces of input channels, and it reads
concatenated and transposed maps where they are instead of copying them (together about 13% of
dgcnet_r101's bf16 time). Layer4 runs on its 4x4 phase grids, where its dilated convolutions are
plain ones (``Phases``, ``PackedPhaseLayer``), and the stem's max pooling compares bit patterns
(``PackedStemPool``): together about 6% of dgcnet_r18's bf16 time at 512x1024
(``benchmarks/phase_layer.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import torch
import torch.nn.functional as F
from torch import nn

from dgcnet.models.dualgcn import DualGCN, DualGCNHead, SpatialGCN
from dgcnet.models.resnet import BasicBlock, Bottleneck, ResNetBackbone
from dgcnet.models.winograd import WinogradConv2d


def packing_available() -> bool:
    """Whether this PyTorch build has the oneDNN operators ``PackedConv2d`` runs on."""
    mkldnn = torch.ops.mkldnn
    return (torch.backends.mkldnn.is_available() and hasattr(mkldnn, "_convolution_pointwise")
            and hasattr(mkldnn, "_reorder_convolution_weight"))


class PackedFilters(dict):
    """input channels (None: all) -> (packed bf16 filter, bias): rebuilt after a copy, never
    copied (oneDNN's opaque tensors are not deep-copyable)."""


    def __deepcopy__(self, memo: dict) -> PackedFilters:
        return PackedFilters()


def runs_packed(x: torch.Tensor) -> bool:
    """Whether a packed convolution runs its bf16 oneDNN path on ``x``: on the CPU, without
    autograd, under bf16 autocast or with a bf16 input."""
    if x.device.type != "cpu" or torch.is_grad_enabled() and x.requires_grad:
        return False
    return x.dtype == torch.bfloat16 or (torch.is_autocast_enabled("cpu")
                                         and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def _bf16_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class Phases:
    """A (B, C, height, width) map stored as its ``factor**2`` subsampled grids
    ``x[:, :, i::factor, j::factor]``, stacked phase-major along the batch as one channels-last
    (factor**2 * B, C, ceil(height / factor), ceil(width / factor)) tensor, the shorter grids
    padded at the end.

    A stride-1 convolution with dilation and padding ``factor * k`` on the map is the
    convolution with dilation and padding ``k`` on every grid at once, provided the padding
    positions hold zeros: ``clear_padding`` zeroes them (nothing else reads them). oneDNN's bf16
    kernels ran a 512-channel convolution of dgcnet_r18's layer4 at 512x1024 with dilation 4 and
    8 12% and 18% slower than on the grids with dilation 1 and 2; the whole layer4 took 11% less
    time on the grids, split and merge included (``benchmarks/phase_layer.py``).
    """

    factor: int
    height: int
    width: int

    def _grid_size(self) -> tuple[int, int]:
        return -(-self.height // self.factor), -(-self.width // self.factor)

    def _grids(self, t: torch.Tensor) -> torch.Tensor:
        """(f*f*B, C, h, w) channels-last -> (f, f, B, h, w, C), a view."""
        f = self.factor
        return t.permute(0, 2, 3, 1).unflatten(0, (f, f, -1))

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """The map ``x`` -> its grids."""
        f, (h, w) = self.factor, self._grid_size()
        b, c = x.shape[:2]
        out = torch.empty((f * f * b, c, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        grids = self._grids(out)
        for i in range(f):
            for j in range(f):
                grid = x[:, :, i::f, j::f]
                grids[i, j, :, :grid.shape[2], :grid.shape[3]] = grid.permute(0, 2, 3, 1)
        self.clear_padding(out)
        return out

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """Grids -> the channels-last map."""
        f = self.factor
        out = torch.empty((y.shape[0] // (f * f), y.shape[1], self.height, self.width), dtype=y.dtype,
                          device=y.device, memory_format=torch.channels_last)
        grids = self._grids(y)
        for i in range(f):
            for j in range(f):
                grid = out[:, :, i::f, j::f]
                grid.copy_(grids[i, j, :, :grid.shape[2], :grid.shape[3]].permute(0, 3, 1, 2))
        return out

    def clear_padding(self, y: torch.Tensor) -> None:
        """Zero, in place, the positions of ``y`` that lie outside the map."""
        f, (h, w) = self.factor, self._grid_size()
        grids = self._grids(y)
        # Grid i has a padding row when i + f * (h - 1) is past the map's last row; likewise columns.
        grids[self.height - f * (h - 1):, :, :, h - 1].zero_()
        grids[:, self.width - f * (w - 1):, :, :, w - 1].zero_()


class PackedConv2d(nn.Module):
    """Inference-only replacement of an ``nn.Conv2d`` (or a ``WinogradConv2d``), with an optional
    fused ReLU; ``forward(x, residual)`` adds ``residual`` before the ReLU, also fused.

    Under CPU bf16 autocast (or with bf16 inputs) it runs in bf16 with a packed bf16 filter and a
    bf16 bias, as autocast would, and returns bf16; otherwise it runs the original convolution
    and then the sum and the ReLU.
    """

    def __init__(self, conv: nn.Conv2d | WinogradConv2d, relu: bool = False) -> None:
        super().__init__()
        self.conv = conv  # kept: the fp32 Winograd path, and the weights a state dict holds
        base = conv.conv if isinstance(conv, WinogradConv2d) else conv
        if base.padding_mode != "zeros" or isinstance(base.padding, str):
            raise ValueError(f"cannot pack {base}: only numeric zero padding")
        self.base = base
        self.relu = relu
        self.packed = PackedFilters()

    def _filters(self, input_size: list[int], padding: list[int], dilation: list[int],
                 channels: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The packed bf16 filter (of input ``channels`` [start, stop) only, when given) and the
        bias (with the filter that starts at channel 0 only)."""
        if channels not in self.packed:
            c = self.base
            weight = c.weight.detach() if channels is None else c.weight.detach()[:, channels[0]:channels[1]]
            weight = weight.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
            weight = torch.ops.mkldnn._reorder_convolution_weight(
                weight, padding, list(c.stride), dilation, c.groups, input_size)
            with_bias = c.bias is not None and (channels is None or channels[0] == 0)
            self.packed[channels] = (weight, c.bias.detach().to(torch.bfloat16) if with_bias else None)
        return self.packed[channels]

    def _apply(self, fn, recurse: bool = True):  # .to(), .float(), ...: the packed copies are stale
        self.packed.clear()
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None,
                overwrite_residual: bool = False, relu: bool | None = None,
                phases: Phases | None = None) -> torch.Tensor:
        """``overwrite_residual``: the caller no longer needs ``residual``, and the result may be
        written into it (in bf16: one fewer tensor through memory, about 9% of dgcnet_r101's time).
        ``relu``: instead of the module's own setting. ``phases``: in bf16, ``x`` (and
        ``residual``) are in that ``Phases`` layout, and so is the result."""
        relu = self.relu if relu is None else relu
        if not runs_packed(x):
            return self._unfused(x, residual, relu)
        x = _bf16_channels_last(x)
        if residual is not None:
            residual = _bf16_channels_last(residual)
        return self._packed(x, None, residual, overwrite_residual, relu, phases)

    def _packed(self, x: torch.Tensor, channels: tuple[int, int] | None, residual: torch.Tensor | None,
                overwrite_residual: bool, relu: bool, phases: Phases | None = None) -> torch.Tensor:
        c = self.base
        padding, dilation = list(c.padding), list(c.dilation)
        if phases is not None and c.kernel_size != (1, 1):
            phases.clear_padding(x)
            padding, dilation = [p // phases.factor for p in padding], [d // phases.factor for d in dilation]
        weight, bias = self._filters(list(x.shape), padding, dilation, channels)
        args = (padding, list(c.stride), dilation, c.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *args, "relu" if relu else "none",
                                                           [], "")
        unary = "relu" if relu else None
        if overwrite_residual:
            return torch.ops.mkldnn._convolution_pointwise_.binary(residual, x, weight, bias, *args, "add", 1.0,
                                                                  unary, [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, weight, bias, *args, "add", 1.0,
                                                             unary, [], "")

    def _unfused(self, x: torch.Tensor, residual: torch.Tensor | None, relu: bool) -> torch.Tensor:
        out = self.conv(x)
        if residual is not None:
            # In place into the convolution's own fresh output, unless the sum needs another dtype.
            out = out.add_(residual) if out.dtype == torch.promote_types(out.dtype, residual.dtype) else out + residual
        return out.relu_() if relu else out


# Input channels per packed convolution of a convolution wider than WIDE_INPUT (in bf16). For
# dgcnet_r101's head (3x3, 2048 and 2560 input channels, 65x129) 256-channel pieces summed into
# one output took 25% off the single convolution, slicing included; 128 and 512 were slower.
WIDE_INPUT, CHUNK = 1024, 256


def input_pieces(conv: nn.Conv2d, part: torch.Tensor) -> list[torch.Tensor]:
    """``part`` of the input of ``conv`` as bf16 channels-last pieces: ``CHUNK`` channels each
    when ``conv`` has more than ``WIDE_INPUT`` input channels, else whole."""
    step = CHUNK if conv.in_channels > WIDE_INPUT else part.shape[1]
    return [_bf16_channels_last(part[:, i:i + step]) for i in range(0, part.shape[1], step)]


class PackedConcatConv2d(PackedConv2d):
    """``forward(*parts)`` is the convolution of ``torch.cat(parts, 1)``, with the optional ReLU.

    In bf16 nothing is concatenated: each of the ``input_pieces`` of each part runs as a packed
    convolution with its own slice of the filter, summed into the output of the one before
    (fused), the ReLU in the last. Otherwise it concatenates and runs the original convolution.
    """

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        if sum(part.shape[1] for part in parts) != self.base.in_channels:
            raise ValueError(f"{self.base} got parts of {[part.shape[1] for part in parts]} channels")
        if not runs_packed(parts[0]):
            return self._unfused(parts[0] if len(parts) == 1 else torch.cat(parts, 1), None, self.relu)
        pieces = [piece for part in parts for piece in input_pieces(self.base, part)]
        out, start = None, 0
        for n, piece in enumerate(pieces):
            width = piece.shape[1]
            channels = None if len(pieces) == 1 else (start, start + width)
            out = self._packed(piece, channels, out, True, self.relu and n == len(pieces) - 1)
            start += width
        return out


class PackedBottleneck(nn.Module):
    """A folded ``Bottleneck`` with packed convolutions: ReLUs and the residual sum fused."""

    def __init__(self, block: Bottleneck, owns_input: bool = False) -> None:
        super().__init__()
        self.conv1 = PackedConv2d(block.conv1, relu=True)
        self.conv2 = PackedConv2d(block.conv2, relu=True)
        self.conv3 = PackedConv2d(block.conv3, relu=True)
        self.downsample = block.downsample
        # The input is the previous block's output, which nothing else reads: the sum may go into it.
        self.owns_input = owns_input

    def forward(self, x: torch.Tensor, phases: Phases | None = None) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.conv2(self.conv1(x), phases=phases), identity,
                          overwrite_residual=self.downsample is not None or self.owns_input)


class PackedBasicBlock(nn.Module):
    """A folded ``BasicBlock`` with packed convolutions: ReLUs and the residual sum fused."""

    def __init__(self, block: BasicBlock, owns_input: bool = False) -> None:
        super().__init__()
        self.conv1 = PackedConv2d(block.conv1, relu=True)
        self.conv2 = PackedConv2d(block.conv2, relu=True)
        self.downsample = block.downsample
        self.owns_input = owns_input  # as PackedBottleneck's

    def forward(self, x: torch.Tensor, phases: Phases | None = None) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.conv1(x, phases=phases), identity,
                          overwrite_residual=self.downsample is not None or self.owns_input, phases=phases)


class PackedStemPool(nn.Module):
    """The stem's 3x3, stride-2, padding-1 max pooling, over the output of a ReLU.

    In bf16 it takes the maximum over rows, then over columns, of the int16 bit patterns: for
    non-negative bf16 numbers the integer order is the numeric order, and the int16 maximum is a
    plain vector instruction, where ``max_pool2d`` also writes int64 indices (7.0 -> 4.3 ms in
    dgcnet_r18 at 512x1024). Otherwise it runs the pooling itself.
    """

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        if not is_stem_pooling(pool):
            raise ValueError(f"{pool} is not a 3x3, stride-2, padding-1 max pooling")
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_packed(x):
            return self.pool(x)
        bits = _bf16_channels_last(x).view(torch.int16)
        rows = _max_pool_3_2(bits, 2, self.pool.ceil_mode)
        return _max_pool_3_2(rows, 3, self.pool.ceil_mode).view(torch.bfloat16)


def is_stem_pooling(pool: nn.Module) -> bool:
    """Whether ``pool`` is the max pooling ``PackedStemPool`` computes."""
    def pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
        return (v, v) if isinstance(v, int) else tuple(v)
    return (isinstance(pool, nn.MaxPool2d) and pair(pool.kernel_size) == (3, 3) and pair(pool.stride) == (2, 2)
            and pair(pool.padding) == (1, 1) and pair(pool.dilation) == (1, 1) and not pool.return_indices)


def _max_pool_3_2(x: torch.Tensor, dim: int, ceil_mode: bool) -> torch.Tensor:
    """Max pooling of a non-negative channels-last map along ``dim``, window 3, stride 2,
    padding 1: ``out[i] = max(x[2i - 1], x[2i], x[2i + 1])`` over the indices that exist."""
    n = x.shape[dim]
    size = (n - 1 + int(ceil_mode)) // 2 + 1  # PyTorch's output size
    if ceil_mode and 2 * (size - 1) >= n + 1:  # no window starts in the right padding
        size -= 1

    def part(t: torch.Tensor, start: int, stop: int, step: int = 1) -> torch.Tensor:
        return t[(slice(None),) * dim + (slice(start, stop, step),)]

    even, odd = part(x, 0, n, 2), part(x, 1, n, 2)  # x[2i], x[2i + 1]
    shape = list(x.shape)
    shape[dim] = size
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    both = min(odd.shape[dim], size)
    torch.maximum(part(even, 0, both), part(odd, 0, both), out=part(out, 0, both))
    if size > both:  # the last window holds x[2i] only (n odd), or x[2i - 1] only (n even, ceil mode)
        last = part(even, both, both + 1) if even.shape[dim] > both else part(odd, both - 1, both)
        part(out, both, both + 1).copy_(last)
    left = min(size, odd.shape[dim] + 1)  # windows i >= 1 that hold x[2i - 1]
    torch.maximum(part(out, 1, left), part(odd, 0, left - 1), out=part(out, 1, left))
    return out


# Phase factor of the layers that run in the Phases layout: layer4's dilations (4, and 8 and 16
# with multi-grid) are multiples of it; layer3's dilation 2 gained nothing (256-channel grids).
PHASE_FACTOR = 4
# Grids shorter than this on a side cost more than the dilation they save: padding is a larger
# share of them, and oneDNN runs small maps below its full rate (dgcnet_r18's layer4 at 17x33,
# 128x256 images: 1.6x slower on 5x9 grids; level at 33x65, 9x17 grids).
MIN_GRID_SIDE = 8


class PackedPhaseLayer(nn.Sequential):
    """A layer (``nn.Sequential``) of packed residual blocks whose spatial convolutions all have
    stride 1 and dilations that are multiples of ``PHASE_FACTOR``: in bf16, on a map whose grids
    have at least ``MIN_GRID_SIDE`` rows and columns, it runs them in the ``Phases`` layout (split
    on entry, merged on exit), otherwise as the layer itself. Same blocks, same state dict keys."""

    def __init__(self, blocks: nn.Sequential) -> None:
        if not can_run_in_phases(blocks):
            raise ValueError("a phase layer needs stride-1 spatial convolutions with dilations that are "
                             f"multiples of {PHASE_FACTOR}")
        super().__init__(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_packed(x) or -(-min(x.shape[2:]) // PHASE_FACTOR) < MIN_GRID_SIDE:  # the grids' shorter side
            return super().forward(x)
        phases = Phases(PHASE_FACTOR, x.shape[2], x.shape[3])
        y = phases.split(_bf16_channels_last(x))
        for block in self:
            y = block(y, phases)
        return phases.merge(y)


def can_run_in_phases(blocks: nn.Sequential) -> bool:
    """Whether every block is packed, every convolution in them has stride 1 and is a 1x1 one
    without padding or a 3x3 one whose dilations (= padding) are multiples of ``PHASE_FACTOR``,
    and there is at least one 3x3 one."""
    if not all(isinstance(block, (PackedBasicBlock, PackedBottleneck)) for block in blocks):
        return False
    convs = [m.base for m in blocks.modules() if isinstance(m, PackedConv2d)]
    pointwise = [c for c in convs if c.kernel_size == (1, 1)]
    spatial = [c for c in convs if c.kernel_size == (3, 3)]
    return (bool(spatial) and len(pointwise) + len(spatial) == len(convs)
            and all(c.stride == (1, 1) for c in convs) and all(c.padding == (0, 0) for c in pointwise)
            and all(c.padding == c.dilation and gcd(*c.dilation, PHASE_FACTOR) == PHASE_FACTOR for c in spatial))


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) channels-last -> (B, H*W, C), a view."""
    b, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).reshape(b, h * w, c)


def _pointwise(conv: nn.Conv1d, rows: torch.Tensor) -> torch.Tensor:
    """A folded 1x1 ``nn.Conv1d`` over the channels of (B, L, C) rows: a linear map of each row."""
    return F.linear(rows, conv.weight.squeeze(-1), conv.bias)


class PackedSpatialGCN(nn.Module):
    """A folded ``SpatialGCN`` that in bf16 runs on channels-last rows: the graph products as
    ``bmm`` on views of its node convolutions' outputs, ``conv_wg`` as a linear map of the rows,
    and the residual sum and ReLU fused into ``out``. On the DualGCN's small down-sampled map it
    is a chain of small operations, where each one fewer counts. Otherwise it runs the
    ``SpatialGCN`` itself."""

    def __init__(self, gcn: SpatialGCN) -> None:
        super().__init__()
        if not isinstance(gcn.bn_wg, nn.Identity) or not isinstance(gcn.out[1], nn.Identity):
            raise ValueError("fold the SpatialGCN's BatchNorms first")
        gcn.out[0] = PackedConv2d(gcn.out[0])  # called below with the residual and the ReLU
        self.gcn = gcn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_packed(x):
            return self.gcn(x)
        g = self.gcn
        x = _bf16_channels_last(x)
        b, _, h, w = x.shape
        k, v, q = _rows(g.node_k(x)), _rows(g.node_v(x)), _rows(g.node_q(x))  # (B, N, C')
        attention = torch.softmax(torch.bmm(q.transpose(1, 2), v), dim=2)   # (B, C', C')
        avw = _pointwise(g.conv_wg, torch.bmm(k, attention))                 # (B, N, C')
        return g.out[0](avw.view(b, h, w, -1).permute(0, 3, 1, 2), x, relu=True)


class PackedDualGCN(nn.Module):
    """A folded ``DualGCN`` that in bf16 keeps its pixels as channels-last rows throughout.

    The graph products run as ``bmm`` on (pixels, channels) views of the channels-last maps, so
    no map is copied into another layout, and the 1x1 ``nn.Conv1d`` between them as linear maps
    of rows; ``x * local + x`` is one product with ``1 + local`` (added before the upsampling,
    whose weights sum to one); the feature branch's residual sum and ReLU are fused into
    ``conv3``; and ``final`` reads both branches without concatenating them. Otherwise it runs
    the ``DualGCN`` itself. Same arithmetic, other rounding.
    """

    def __init__(self, dualgcn: DualGCN) -> None:
        super().__init__()
        if not isinstance(dualgcn.bn_adj, nn.Identity) or not isinstance(dualgcn.bn_wg, nn.Identity):
            raise ValueError("fold the DualGCN's BatchNorms first")
        # Packed here, for the calls below; the DualGCN's own forward calls them as convolutions.
        dualgcn.conv3 = PackedConv2d(dualgcn.conv3)
        dualgcn.final[0] = PackedConcatConv2d(dualgcn.final[0])
        dualgcn.gcn_local_attention = PackedSpatialGCN(dualgcn.gcn_local_attention)
        self.gcn = dualgcn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_packed(x):
            return self.gcn(x)
        g = self.gcn
        x = _bf16_channels_last(x)
        b, c, h, w = x.shape
        local = g.gcn_local_attention(g.local(x)) + 1
        spatial = x * F.interpolate(local, size=(h, w), mode="bilinear", align_corners=True).to(x.dtype)

        x_sqz, nodes = _rows(g.phi(x)), _rows(g.theta(x))  # packed: bf16, channels-last
        z_idt = torch.bmm(x_sqz.transpose(1, 2), nodes)     # (B, C/2, C/4)
        z = _pointwise(g.conv_adj, z_idt) + z_idt          # conv_adj runs over the C/4 axis
        z_t = _pointwise(g.conv_wg, z.transpose(1, 2))     # conv_wg over the C/2 axis: (B, C/4, C/2)
        y = torch.bmm(nodes, z_t)                          # (B, H*W, C/2)
        y = y.view(b, h, w, c // 2).permute(0, 3, 1, 2)     # channels-last (B, C/2, H, W)
        g_out = g.conv3(y, x, relu=True)
        return g.final[0](spatial, g_out)


class PackedDualGCNHead(nn.Module):
    """A folded ``DualGCNHead`` whose 3x3 convolutions over the backbone's features (and the DualGCN
    output) are ``PackedConcatConv2d``: in bf16 the wide ones run in pieces, and the bottleneck
    reads both inputs where they are instead of a concatenated copy.

    In bf16 the classifier (a 1x1 convolution to the classes) runs in fp32 and the logits are
    fp32: bf16 rounds a logit near 10 to steps of 0.06, which flips the argmax of near ties. With
    dgcnet_r18 trained by ``dgcnet demo`` on an 832x832 tile, agreement with the fp32 argmax went
    from 99.34% to 99.62%, for about 0.6 ms (r18, 512x1024) to 1.5 ms (r101, an 832 tile).
    """

    def __init__(self, head: DualGCNHead) -> None:
        super().__init__()
        self.conva = PackedConcatConv2d(head.conva[0], relu=True)
        self.dualgcn = PackedDualGCN(head.dualgcn)
        self.convb = head.convb
        self.bottleneck = PackedConcatConv2d(head.bottleneck[0], relu=True)
        self.classifier = head.bottleneck[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In bf16 the pieces of x are cut once, for both convolutions that read it.
        parts = input_pieces(self.conva.base, x) if runs_packed(x) else [x]
        out = self.convb(self.dualgcn(self.conva(*parts)))
        features = self.bottleneck(*parts, out)
        if not runs_packed(features):
            return self.classifier(features)
        with torch.autocast("cpu", enabled=False):
            return self.classifier(features.float())


_CONVS = (nn.Conv2d, WinogradConv2d)


def use_packed_convs(model: nn.Module) -> int:
    """Replace (in place, in a model whose BatchNorms are folded) the residual blocks by packed
    ones, and every other 2D convolution by a ``PackedConv2d``, fusing the ReLU that follows it
    in an ``nn.Sequential`` (the folded BatchNorm between them is an ``nn.Identity``). Returns
    the number of convolutions packed."""
    if isinstance(model, ResNetBackbone):
        # The stem's ReLU (after its last convolution and the folded bn1) moves into that convolution.
        last = model.conv1[-1]
        model.conv1[-1] = PackedConv2d(last, relu=True)
        model.relu = nn.Identity()
        if is_stem_pooling(model.maxpool):  # it pools that ReLU's output
            model.maxpool = PackedStemPool(model.maxpool)
    for parent in list(model.modules()):
        for i, (name, child) in enumerate(list(parent.named_children())):
            # A block after another in the same Sequential is the only reader of that block's output.
            owns_input = isinstance(parent, nn.Sequential) and i > 0 and isinstance(
                parent[i - 1], (Bottleneck, BasicBlock, PackedBottleneck, PackedBasicBlock))
            if isinstance(child, DualGCNHead):
                setattr(parent, name, PackedDualGCNHead(child))
            elif isinstance(child, Bottleneck):
                setattr(parent, name, PackedBottleneck(child, owns_input))
            elif isinstance(child, BasicBlock):
                setattr(parent, name, PackedBasicBlock(child, owns_input))
    if isinstance(model, ResNetBackbone) and can_run_in_phases(model.layer4):
        model.layer4 = PackedPhaseLayer(model.layer4)
    for parent in list(model.modules()):
        if isinstance(parent, (PackedConv2d, WinogradConv2d)):
            continue
        children = list(parent.named_children())
        for i, (name, child) in enumerate(children):
            if not isinstance(child, _CONVS):
                continue
            # conv -> [folded BN] -> ReLU inside a Sequential: the ReLU moves into the convolution.
            following = [m for _, m in children[i + 1:i + 3]] if isinstance(parent, nn.Sequential) else []
            while following and isinstance(following[0], nn.Identity):
                following.pop(0)
            relu = bool(following) and type(following[0]) is nn.ReLU
            if relu:
                index = next(j for j in range(i + 1, len(children)) if children[j][1] is following[0])
                setattr(parent, children[index][0], nn.Identity())
            setattr(parent, name, PackedConv2d(child, relu=relu))
    return sum(isinstance(module, PackedConv2d) for module in model.modules())
