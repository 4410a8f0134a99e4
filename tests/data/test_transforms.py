"""The recipe's augmentation: scales 0.7 + k/10, bottom/right padding (image 0, label 255),
uniform crop, flip p=0.5, both normalisations, samples reproducible from (seed, epoch, index)."""
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dgcnet.data import SegmentationDataset
from dgcnet.data.transforms import TrainAugment, normalize, read_image, read_label

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
BGR_MEAN = np.array([104.00698793, 116.66876762, 122.67891434])


def recipe(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, crop: tuple[int, int],
           scale: bool, mirror: bool, rgb: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The recipe written out plainly: normalise, resize the whole image, pad, crop, flip."""
    x, y = normalize(image, rgb), torch.from_numpy(label.astype(np.int64))
    if scale:
        f = 0.7 + int(rng.integers(0, 15)) / 10.0
        size = (int(x.shape[1] * f + 0.5), int(x.shape[2] * f + 0.5))
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        y = F.interpolate(y[None, None].float(), size=size, mode="nearest")[0, 0].long()
    ch, cw = crop
    pad_h, pad_w = max(ch - x.shape[1], 0), max(cw - x.shape[2], 0)
    x, y = F.pad(x, (0, pad_w, 0, pad_h), value=0.0), F.pad(y, (0, pad_w, 0, pad_h), value=255)
    top, left = int(rng.integers(0, x.shape[1] - ch + 1)), int(rng.integers(0, x.shape[2] - cw + 1))
    x, y = x[:, top:top + ch, left:left + cw], y[top:top + ch, left:left + cw]
    if mirror and rng.random() < 0.5:
        x, y = x.flip(2), y.flip(1)
    return x, y


def test_normalisations() -> None:
    image = np.array([[[10, 120, 250], [0, 255, 77]]], dtype=np.uint8)
    rgb = normalize(image, rgb=True).numpy()
    expected = (image / 255.0 - MEAN) / STD
    np.testing.assert_allclose(rgb, expected.transpose(2, 0, 1), atol=1e-5)
    bgr = normalize(image, rgb=False).numpy()
    expected = image[..., ::-1] - BGR_MEAN
    np.testing.assert_allclose(bgr, expected.transpose(2, 0, 1), atol=1e-4)


@pytest.mark.parametrize("rgb", [True, False])
def test_matches_the_recipe_written_plainly(rgb: bool) -> None:
    g = np.random.default_rng(0)
    for trial in range(40):
        h, w = int(g.integers(4, 50)), int(g.integers(4, 50))
        crop = (int(g.integers(2, 60)), int(g.integers(2, 60)))
        image = g.integers(0, 256, (h, w, 3), dtype=np.uint8)
        label = g.integers(0, 256, (h, w), dtype=np.uint8)
        scale, mirror = bool(trial % 3), bool(trial % 4)
        x, y = TrainAugment(crop, scale, mirror, rgb)(image, label, np.random.default_rng(trial))
        rx, ry = recipe(image, label, np.random.default_rng(trial), crop, scale, mirror, rgb)
        assert x.shape == (3, *crop) and y.shape == crop and y.dtype == torch.uint8
        torch.testing.assert_close(x, rx, atol=1e-4 if rgb else 2e-3, rtol=0)
        assert torch.equal(y.long(), ry)


def test_scale_set_and_padding() -> None:
    # A crop larger than any scaled image: the valid region shows the scaled size, the rest is padding.
    image = np.full((50, 50, 3), 200, dtype=np.uint8)
    label = np.zeros((50, 50), dtype=np.uint8)
    augment = TrainAugment((110, 110), scale=True, mirror=False)
    sizes = Counter()
    for i in range(300):
        x, y = augment(image, label, np.random.default_rng(i))
        rows, cols = int((y[:, 0] != 255).sum()), int((y[0] != 255).sum())
        assert (y[:rows, :cols] == 0).all() and (y[rows:] == 255).all() and (y[:, cols:] == 255).all()
        assert (x[:, :rows, :cols] != 0).all() and (x[:, rows:] == 0).all() and (x[:, :, cols:] == 0).all()
        sizes[(rows, cols)] += 1
    assert sorted(sizes) == [(s, s) for s in range(35, 106, 5)]  # f = 0.7, 0.8, ..., 2.1
    assert min(sizes.values()) > 300 / 15 / 2  # roughly uniform over the 15 scales


def test_crop_is_uniform_within_bounds_and_flip_is_half() -> None:
    rows = np.repeat(np.arange(40, dtype=np.uint8)[:, None], 30, axis=1)
    cols = np.repeat(np.arange(30, dtype=np.uint8)[None, :], 40, axis=0)
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=2)
    augment = TrainAugment((16, 8), scale=False, mirror=True)
    tops, lefts, flips = Counter(), Counter(), 0
    for i in range(600):
        x, y = augment(image, rows, np.random.default_rng(i))
        top = int(y[0, 0])
        assert torch.equal(y, torch.from_numpy(rows[top:top + 16, :8]))
        raw_cols = (x[1] * STD[1] * 255 + MEAN[1] * 255).round().long()
        flipped = bool(raw_cols[0, 0] > raw_cols[0, -1])
        left = int(raw_cols[0, -1] if flipped else raw_cols[0, 0])
        expected = torch.arange(left, left + 8).flip(0) if flipped else torch.arange(left, left + 8)
        assert torch.equal(raw_cols[0], expected)
        tops[top] += 1
        lefts[left] += 1
        flips += flipped
    assert sorted(tops) == list(range(0, 40 - 16 + 1)) and sorted(lefts) == list(range(0, 30 - 8 + 1))
    assert 240 < flips < 360


def test_samples_reproducible_whatever_the_workers(synth_dir: Path) -> None:
    dataset = SegmentationDataset(synth_dir, synth_dir / "train.txt", train=True, crop_size=(32, 48), seed=5)

    def epoch(workers: int, number: int) -> list[torch.Tensor]:
        dataset.set_epoch(number)
        loader = DataLoader(dataset, batch_size=2, num_workers=workers, shuffle=False)
        return [t for images, labels, _ in loader for t in (images, labels)]

    first = epoch(0, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch(2, 1)))
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch(0, 2)))
    other_seed = SegmentationDataset(synth_dir, synth_dir / "train.txt", train=True, crop_size=(32, 48), seed=6)
    other_seed.set_epoch(1)
    assert not torch.equal(other_seed[0][0], dataset[0][0]) or not torch.equal(other_seed[1][0], dataset[1][0])


def test_readers(tmp_path: Path) -> None:
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((4, 6), 9, dtype=np.uint8)).save(grey)
    image = read_image(grey)
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8 and (image == 9).all()
    assert read_label(grey).shape == (4, 6)
    image[0, 0] = 1  # arrays are writable
