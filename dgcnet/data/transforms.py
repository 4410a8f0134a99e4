"""Image reading, normalisation and the training augmentation of the recipe."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def read_image(path: str | Path) -> np.ndarray:
    """Any image file -> HxWx3 uint8 RGB (greyscale, RGBA and 16-bit inputs converted)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(img, dtype=np.float64)
                array = np.clip(array / max(array.max(), 1) * 255.0, 0, 255).astype(np.uint8)
                return np.repeat(array[:, :, None], 3, axis=2)
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise DgcnetError(f"{path}: no such file") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DgcnetError(f"{path}: cannot read image ({error})") from None


def read_label(path: str | Path) -> np.ndarray:
    """A single-channel 8-bit label PNG -> HxW uint8 array of stored ids."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "P"):
                raise DgcnetError(f"{path}: label must be a single-channel 8-bit image, got mode {img.mode}")
            return np.asarray(img)
    except FileNotFoundError:
        raise DgcnetError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise DgcnetError(f"{path}: cannot read label ({error})") from None


def normalize(image: np.ndarray, rgb: bool = True) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32, as the recipe normalises (rgb=True) or Caffe-style (rgb=False)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    if rgb:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255.0
        return (x - mean) / std
    return x.flip(0) - torch.tensor(BGR_MEAN).view(3, 1, 1)


@dataclass(frozen=True)
class TrainAugment:
    """Random scale 0.7 + k/10 (k in 0..14), pad bottom/right, random crop, horizontal flip."""

    crop_size: tuple[int, int] = (832, 832)
    scale: bool = True
    mirror: bool = True
    rgb: bool = True

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        x = normalize(image, self.rgb)
        y = torch.from_numpy(np.ascontiguousarray(label)).long()
        if self.scale:
            f = 0.7 + int(rng.integers(0, 15)) / 10.0
            h, w = int(x.shape[1] * f + 0.5), int(x.shape[2] * f + 0.5)
            # Bilinear without antialiasing for the image (as cv2's INTER_LINEAR), nearest for the label.
            x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            y = F.interpolate(y[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
        ch, cw = self.crop_size
        pad_h, pad_w = max(ch - x.shape[1], 0), max(cw - x.shape[2], 0)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
            y = F.pad(y, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
        top = int(rng.integers(0, x.shape[1] - ch + 1))
        left = int(rng.integers(0, x.shape[2] - cw + 1))
        x = x[:, top:top + ch, left:left + cw]
        y = y[top:top + ch, left:left + cw]
        if self.mirror and rng.random() < 0.5:
            x, y = x.flip(2), y.flip(1)
        return x.contiguous(), y.contiguous()
