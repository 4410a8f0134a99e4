"""Full-resolution logits of one image: the sliding-window protocol, whole-image inference,
multi-scale and flip.

The protocol (docs/evaluation.md): tiles of ``tile`` x ``tile`` at ``stride`` (default
ceil(2/3 tile)), the last tile of a row/column shifted back inside the image; an image smaller
than the tile in one direction is padded bottom/right with 0 (after normalisation) and the
result cropped back. An image no larger than the tile in both directions runs whole (one pass,
no padding): padding a small image with zeros up to a large tile changes what the network sees.
The tile and stride default to the model's own (``model.info``: the training crop). Each tile's stride-8 logits are upsampled bilinearly (align_corners=True) to the tile; raw
logits are summed and divided by the number of tiles covering each pixel.

Multi-scale: the image is resized (bilinear, align_corners=True) by each scale, inferred as
above, its logits resized back to the full image and summed in float32; the sum is divided by
the number of scales. Flip: a tile's logits are the mean of the plain and the mirrored pass.
Memory per image is one float32 (classes, H, W) accumulator plus one for the current scale.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dgcnet.engine.precision import amp_dtype
from dgcnet.models.info import default_stride

MODES = ("sliding", "whole")


def resolve_tile(model: nn.Module, tile: int | None, stride: int | None) -> tuple[int, int]:
    """(tile, stride) to run: the model's own (``model.info``) unless ``tile`` is given; a given
    tile without a stride gets ceil(2/3 of it)."""
    if tile is None:
        return model.info.tile, model.info.stride if stride is None else stride
    return tile, default_stride(tile) if stride is None else stride


def runs_whole(height: int, width: int, tile: int) -> bool:
    """Whether sliding-window inference runs an image of this size whole: no larger than the tile."""
    return height <= tile and width <= tile


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride``, the last shifted back so the tile ends at
    ``size``; a single tile at 0 when ``size`` <= ``tile``."""
    count = max(1, math.ceil((size - tile) / stride) + 1)
    return [max(min(i * stride, size - tile), 0) for i in range(count)]


def tile_grid(height: int, width: int, tile: int, stride: int) -> list[tuple[int, int]]:
    """(top, left) of every tile, row by row."""
    return [(y, x) for y in tile_starts(height, tile, stride) for x in tile_starts(width, tile, stride)]


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    dtype = amp_dtype(amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _forward(model: nn.Module, x: torch.Tensor, flip: bool, amp: str) -> torch.Tensor:
    """Float32 logits of a batch, upsampled bilinearly (align_corners=True) to the input size."""
    size = x.shape[-2:]
    with autocast(x.device, amp):
        logits = model(x)
    logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=True)
    if flip:
        with autocast(x.device, amp):
            mirrored = model(x.flip(-1))
        mirrored = F.interpolate(mirrored.float(), size=size, mode="bilinear", align_corners=True)
        logits = (logits + mirrored.flip(-1)) / 2
    return logits


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def sliding_logits(model: nn.Module, image: torch.Tensor, *, tile: int = 832, stride: int | None = None,
                   flip: bool = False, batch_tiles: int = 4, amp: str = "off") -> torch.Tensor:
    """(classes, H, W) float32 logits of a (3, H, W) normalised image by the sliding-window protocol."""
    stride = default_stride(tile) if stride is None else stride
    if tile < 1 or stride < 1 or batch_tiles < 1:
        raise ValueError(f"tile, stride and batch_tiles must be positive, got {tile}, {stride}, {batch_tiles}")
    _, height, width = image.shape
    padded = F.pad(image, (0, max(tile - width, 0), 0, max(tile - height, 0)), value=0.0)
    total: torch.Tensor | None = None
    count = torch.zeros((1, height, width), dtype=torch.float32, device=image.device)
    for batch in _batches(tile_grid(height, width, tile, stride), batch_tiles):
        tiles = torch.stack([padded[:, y:y + tile, x:x + tile] for y, x in batch])
        logits = _forward(model, tiles, flip, amp)
        if total is None:
            total = torch.zeros((logits.shape[1], height, width), dtype=torch.float32, device=image.device)
        for (y, x), tile_logits in zip(batch, logits):
            h, w = min(tile, height - y), min(tile, width - x)
            total[:, y:y + h, x:x + w] += tile_logits[:, :h, :w]
            count[:, y:y + h, x:x + w] += 1
    return total.div_(count)


def whole_logits(model: nn.Module, image: torch.Tensor, *, flip: bool = False, amp: str = "off") -> torch.Tensor:
    """(classes, H, W) float32 logits of the whole (3, H, W) image in one pass."""
    return _forward(model, image[None], flip, amp)[0]


def infer_logits(model: nn.Module, image: torch.Tensor, *, mode: str = "sliding", tile: int | None = None,
                 stride: int | None = None, scales: Sequence[float] = (1.0,), flip: bool = False,
                 batch_tiles: int = 4, amp: str = "off") -> torch.Tensor:
    """(classes, H, W) float32 logits of a (3, H, W) normalised image, on the image's device.

    ``tile``/``stride`` default to the model's (``model.info``); a given tile without a stride
    gets ceil(2/3 of it)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "sliding":
        tile, stride = resolve_tile(model, tile, stride)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive numbers, got {tuple(scales)}")
    _, height, width = image.shape
    total: torch.Tensor | None = None
    with torch.inference_mode():
        for scale in scales:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            scaled = image if size == (height, width) else F.interpolate(
                image[None], size=size, mode="bilinear", align_corners=True)[0]
            if mode == "sliding" and not runs_whole(*size, tile):
                logits = sliding_logits(model, scaled, tile=tile, stride=stride, flip=flip,
                                        batch_tiles=batch_tiles, amp=amp)
            else:
                logits = whole_logits(model, scaled, flip=flip, amp=amp)
            if size != (height, width):
                logits = F.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=True)[0]
            total = logits if total is None else total.add_(logits)
        return total.div_(len(scales))
