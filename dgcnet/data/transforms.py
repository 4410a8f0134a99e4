"""Image reading, normalisation and the training augmentation of the recipe."""
from __future__ import annotations

import io
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dgcnet.data.labels import IGNORE_INDEX
from dgcnet.errors import DgcnetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# rgb=False: the Caffe-style normalisation, BGR minus these means on the 0..255 scale.
BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)


# Images above this many pixels are refused before decoding: a small compressed file can
# declare a huge image (a "decompression bomb") that would exhaust memory. 8192x8192 is 32x a
# Cityscapes image. Override with the DGCNET_MAX_PIXELS environment variable (or --max-pixels).
MAX_PIXELS = 8192 * 8192
MAX_PIXELS_ENV = "DGCNET_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel limit of :func:`read_image` and :func:`read_label`: DGCNET_MAX_PIXELS or MAX_PIXELS."""
    text = os.environ.get(MAX_PIXELS_ENV)
    if not text:
        return MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DgcnetError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive whole number of pixels")
    return value


@contextmanager
def open_image(path: str | Path, what: str = "image", data: bytes | None = None) -> Iterator[Image.Image]:
    """Open and fully decode an image file (or its bytes ``data``, already read: ``path`` then only
    names it); anything that goes wrong (missing, truncated, a corrupt chunk, too many pixels,
    whatever Pillow raises) is one DgcnetError naming the file."""
    limit = max_pixels()
    try:
        with warnings.catch_warnings(), Image.open(path if data is None else io.BytesIO(data)) as img:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            width, height = img.size
            if width * height > limit:
                raise DgcnetError(f"{path}: {what} of {width}x{height} = {width * height:,} pixels is above the "
                                  f"limit of {limit:,} ({MAX_PIXELS_ENV} or --max-pixels raises it)")
            img.load()
            yield img
    except DgcnetError:
        raise
    except FileNotFoundError:
        raise DgcnetError(f"{path}: no such file") from None
    except Image.DecompressionBombError as error:  # Pillow's own limit, above ours when raised
        raise DgcnetError(f"{path}: {what} refused: {error}") from None
    except Exception as error:  # Pillow raises SyntaxError, ValueError, struct.error, ... for bad files
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DgcnetError(f"{path}: cannot read {what} ({message})") from None


def read_image(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """Any image file -> HxWx3 uint8 RGB (greyscale, RGBA and 16-bit inputs converted).
    ``data``: the file's bytes, already read (``path`` then only names it in errors)."""
    with open_image(path, "image", data) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(img, dtype=np.float64)
            array = np.clip(array / max(array.max(), 1) * 255.0, 0, 255).astype(np.uint8)
            return np.repeat(array[:, :, None], 3, axis=2)
        return np.array(img if img.mode == "RGB" else img.convert("RGB"))


def read_label(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """A single-channel 8-bit label PNG -> HxW uint8 array of stored ids (``data`` as for read_image)."""
    with open_image(path, "label", data) as img:
        if img.mode not in ("L", "P"):
            raise DgcnetError(f"{path}: label must be a single-channel 8-bit image, got mode {img.mode}")
        return np.array(img)


def normalize(image: np.ndarray, rgb: bool = True) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32, as the recipe normalises (rgb=True) or Caffe-style (rgb=False)."""
    # Converting in numpy gives a fresh array, so read-only inputs (np.asarray of a PIL image) work too.
    return _normalize_chw(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1), rgb)


def _normalize_chw(x: torch.Tensor, rgb: bool) -> torch.Tensor:
    """3xHxW float RGB on the 0..255 scale -> the network's input."""
    if rgb:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255.0
        return torch.addcmul(-mean / std, x, 1.0 / std)  # (x - mean) / std in one pass
    return x.flip(0) - torch.tensor(BGR_MEAN).view(3, 1, 1)


def _normalization(rgb: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of RGB values on the 0..255 scale: the network's input in RGB
    channel order is value * scale + shift (rgb=False: then reversed to BGR). float32, as the
    crops, whatever the default dtype."""
    if rgb:
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32) * 255.0
        return 1.0 / std, -torch.tensor(IMAGENET_MEAN, dtype=torch.float32) * 255.0 / std
    return torch.ones(3, dtype=torch.float32), -torch.tensor(BGR_MEAN, dtype=torch.float32).flip(0)


def _linear_taps(size: int, out_size: int, start: int, stop: int, device: torch.device | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of output positions start..stop-1 when resizing size -> out_size
    bilinearly with align_corners=False and no antialiasing (F.interpolate's, and cv2's, sampling)."""
    scale = size / out_size
    src = ((torch.arange(start, stop, dtype=torch.float64, device=device) + 0.5) * scale - 0.5).clamp_(min=0)
    low = src.floor().long().clamp_(max=size - 1)
    high = (low + 1).clamp_(max=size - 1)
    return low, high, (src - low).float()


def _nearest_taps(size: int, out_size: int, start: int, stop: int) -> torch.Tensor:
    """Source indices of output positions start..stop-1 of a nearest resize, computed by
    F.interpolate itself so they match it exactly."""
    index = torch.arange(size, dtype=torch.float32).view(1, 1, size)
    return F.interpolate(index, size=out_size, mode="nearest")[0, 0, start:stop].long()


@dataclass(frozen=True)
class Crop:
    """One training crop's random draws: the image (``source``: height, width) resized to
    ``scaled``, a crop of ``size`` at (top, left) of the resized image, mirrored or not."""

    source: tuple[int, int]
    scaled: tuple[int, int]
    top: int
    left: int
    flip: bool
    size: tuple[int, int]

    @property
    def bottom_right(self) -> tuple[int, int]:
        """Where the crop's pixels end inside the resized image; the rest of the crop is padding."""
        return min(self.top + self.size[0], self.scaled[0]), min(self.left + self.size[1], self.scaled[1])

    @property
    def columns(self) -> tuple[int, int]:
        """The crop's columns that hold pixels: a flip takes the columns in reverse order, so they
        then end at the crop's right."""
        cols = self.bottom_right[1] - self.left
        return (self.size[1] - cols, self.size[1]) if self.flip else (0, cols)

    @cached_property
    def window(self) -> tuple[slice, slice]:
        """The source rows and columns the image crop reads: all a crop needs of the image."""
        (height, width), (h, w) = self.source, self.scaled
        bottom, right = self.bottom_right
        if (h, w) == (height, width):
            return slice(self.top, bottom), slice(self.left, right)
        y0, y1, _ = _linear_taps(height, h, self.top, bottom)
        x0, x1, _ = _linear_taps(width, w, self.left, right)
        return slice(int(y0[0]), int(y1[-1]) + 1), slice(int(x0[0]), int(x1[-1]) + 1)


@dataclass(frozen=True)
class TrainAugment:
    """Random scale, pad bottom/right, random crop, horizontal flip. The scale factor is
    ``low + k/10`` for k drawn uniformly in 0..round(10 * (high - low)), ``(low, high) =
    scale_range``: the recipe's 0.7 + k/10, k in 0..14, by default.

    Scaling is bilinear for the image (no antialiasing, as cv2's INTER_LINEAR) and nearest for
    the label; padding is 0 for the normalised image and ignore for the label. Only the pixels
    inside the crop are resized and normalised, with the same sampling and the same random draws
    as resizing the whole image first; the result equals resize -> normalise -> pad -> crop.
    Returns the float32 3xHxW image and the uint8 HxW label (train ids, 255 ignored): an eighth of
    an int64 label's bytes through the loader's shared memory and to the device, where training
    widens it for the loss.

    The work splits in two, so the image part can run on the training device: ``cut`` draws the
    crop, crops the label and cuts the source window the image crop reads (uint8, a fraction of
    the float crop's bytes); ``resize_window`` turns that window into the float crop, on whatever
    device the window is. ``__call__`` does both on the image itself (no window copy): the same crop.
    """

    crop_size: tuple[int, int] = (832, 832)
    scale: bool = True
    mirror: bool = True
    rgb: bool = True
    scale_range: tuple[float, float] = (0.7, 2.1)

    def draw(self, height: int, width: int, rng: np.random.Generator) -> Crop:
        """The crop's random draws for an image of height x width, in the recipe's order."""
        low, high = self.scale_range
        steps = int(round((high - low) * 10)) + 1
        f = low + int(rng.integers(0, steps)) / 10.0 if self.scale else 1.0
        h, w = (int(height * f + 0.5), int(width * f + 0.5)) if self.scale else (height, width)
        ch, cw = self.crop_size
        top = int(rng.integers(0, max(h, ch) - ch + 1))
        left = int(rng.integers(0, max(w, cw) - cw + 1))
        flip = self.mirror and rng.random() < 0.5
        return Crop((height, width), (h, w), top, left, flip, self.crop_size)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        crop = self.draw(*label.shape, rng)
        return self.resize_window(torch.from_numpy(image[crop.window]), crop), self.crop_label(label, crop)

    def cut(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
            ) -> tuple[torch.Tensor, Crop, torch.Tensor]:
        """Draw a crop: the source window its image crop reads (uint8 HxWx3, a copy), the crop,
        and the finished label crop."""
        crop = self.draw(*label.shape, rng)
        return torch.from_numpy(np.ascontiguousarray(image[crop.window])), crop, self.crop_label(label, crop)

    def crop_label(self, label: np.ndarray, crop: Crop) -> torch.Tensor:
        """The uint8 label crop: nearest resize, padded with the ignore index, mirrored."""
        (height, width), (h, w) = crop.source, crop.scaled
        bottom, right = crop.bottom_right
        c0, c1 = crop.columns
        y = torch.full(crop.size, IGNORE_INDEX, dtype=torch.uint8)
        lab = torch.from_numpy(label)
        if (h, w) == (height, width):
            patch = lab[crop.top:bottom, crop.left:right]
        else:
            ny, nx = _nearest_taps(height, h, crop.top, bottom), _nearest_taps(width, w, crop.left, right)
            patch = lab.index_select(0, ny).index_select(1, nx)
        y[:bottom - crop.top, c0:c1] = patch.flip(1) if crop.flip else patch
        return y

    def resize_window(self, window: torch.Tensor, crop: Crop) -> torch.Tensor:
        """The normalised float32 3xHxW image crop from ``window`` (uint8 HxWx3, the source rows and
        columns ``crop.window`` names; each row's pixels contiguous), on the window's device."""
        (height, width), (h, w), (ch, cw) = crop.source, crop.scaled, crop.size
        top, left, flip, device = crop.top, crop.left, crop.flip, window.device
        bottom, right = crop.bottom_right
        rows, cols = bottom - top, right - left
        c0, c1 = crop.columns
        x = torch.empty(3, ch, cw, dtype=torch.float32, device=device)
        x[:, rows:] = 0
        x[:, :rows, :c0] = 0
        x[:, :rows, c1:] = 0
        out = x[:, :rows, c0:c1]
        scale, shift = (t.to(device, non_blocking=True) for t in _normalization(self.rgb))
        if (h, w) == (height, width):
            out.copy_((window.flip(1) if flip else window).permute(2, 0, 1))
            torch.addcmul(shift.view(3, 1, 1), out, scale.view(3, 1, 1), out=out)
        else:
            # Taps made on the window's device (no copies), relative to the window's first row and
            # column, which come from the crop alone (no reading back from the device).
            rows_read, cols_read = crop.window
            y0, y1, wy = _linear_taps(height, h, top, bottom, device)
            x0, x1, wx = _linear_taps(width, w, left, right, device)
            y0, y1 = y0 - rows_read.start, y1 - rows_read.start
            x0, x1 = x0 - cols_read.start, x1 - cols_read.start
            # Separable: blend the two source rows of each output row (all the window's columns),
            # then the two columns of each output pixel, straight into the crop.
            region = window.view(window.shape[0], -1)
            blended = region.index_select(0, y0).float()
            blended.lerp_(region.index_select(0, y1).float(), wy.view(-1, 1))
            # Normalising is per pixel and the blend linear: normalise the blended rows (fewer
            # values than the crop for scales above 1), in place.
            span = window.shape[1]
            torch.addcmul(shift.repeat(span), blended, scale.repeat(span), out=blended)
            if flip:
                x0, x1, wx = x0.flip(0), x1.flip(0), wx.flip(0)
            # Gather each output column's three channel values with one flat index, channel by
            # channel, so the blend writes the crop's planes row after row (fast, contiguous).
            channel = torch.arange(3, device=device).view(-1, 1)
            i0 = (x0.view(1, -1) * 3 + channel).view(-1)
            i1 = (x1.view(1, -1) * 3 + channel).view(-1)
            torch.lerp(blended.index_select(1, i0).view(rows, 3, cols).transpose(0, 1),
                       blended.index_select(1, i1).view(rows, 3, cols).transpose(0, 1), wx, out=out)
        if not self.rgb:
            x = x.flip(0)  # computed in RGB; BGR for the network
        return x


@dataclass(frozen=True)
class ImageWindow:
    """A training image crop not yet resized: the uint8 source window and its crop's draws."""

    pixels: torch.Tensor
    crop: Crop


@dataclass(frozen=True)
class WindowBatch:
    """A batch of image crops as ImageWindows, finished by ``images`` on the training device."""

    windows: list[ImageWindow]

    def __len__(self) -> int:
        return len(self.windows)

    def pin_memory(self) -> "WindowBatch":  # DataLoader(pin_memory=True) calls this
        return WindowBatch([ImageWindow(w.pixels.pin_memory(), w.crop) for w in self.windows])

    def images(self, augment: TrainAugment, device: torch.device) -> torch.Tensor:
        """The float32 Bx3xHxW crops, resized and normalised on ``device``."""
        return torch.stack([augment.resize_window(w.pixels.to(device, non_blocking=True), w.crop)
                            for w in self.windows])
