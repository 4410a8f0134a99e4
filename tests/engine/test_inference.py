import math

import numpy as np
import pytest
import torch
from torch import nn

import dgcnet
from dgcnet.engine.inference import default_stride, infer_logits, tile_grid, tile_starts


def test_protocol_tile_grid_for_cityscapes():
    assert default_stride(832) == 555
    assert tile_grid(1024, 2048, 832, 555) == [(y, x) for y in (0, 192) for x in (0, 555, 1110, 1216)]


@pytest.mark.parametrize("size, tile, stride, starts", [
    (832, 832, 555, [0]),
    (833, 832, 555, [0, 1]),
    (500, 832, 555, [0]),         # smaller than the tile: one padded tile
    (10, 832, 100, [0]),          # much smaller than the tile
    (161, 65, 44, [0, 44, 88, 96]),
    (97, 65, 44, [0, 32]),
])
def test_tile_starts(size, tile, stride, starts):
    assert tile_starts(size, tile, stride) == starts


class Stride8Probe(nn.Module):
    """A stand-in network with a known output: stride-8 'logits' that depend on the position
    and content of the input (channel c reads input channel c % 3 every 8 pixels, times c + 1)."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.classes = classes
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sampled = x[:, :, ::8, ::8]
        return torch.stack([sampled[:, c % 3] * (c + 1) + 0.01 * c for c in range(self.classes)], 1)


def probe_numpy(x: np.ndarray, classes: int = 5) -> np.ndarray:
    sampled = x[:, ::8, ::8]
    return np.stack([sampled[c % 3] * (c + 1) + 0.01 * c for c in range(classes)])


def upsample_align_corners(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (C, h, w) with align_corners=True, written out by hand."""
    def weights(n_in: int, n_out: int) -> np.ndarray:
        m = np.zeros((n_out, n_in))
        for i in range(n_out):
            src = 0.0 if n_out == 1 else i * (n_in - 1) / (n_out - 1)
            i0 = min(int(math.floor(src)), n_in - 1)
            i1 = min(i0 + 1, n_in - 1)
            m[i, i0] += 1 - (src - i0)
            m[i, i1] += src - i0
        return m
    rows, cols = weights(a.shape[1], height), weights(a.shape[2], width)
    return np.einsum("yh,chw,xw->cyx", rows, a, cols)


def hand_sliding(image: np.ndarray, tile: int, ys: list[int], xs: list[int]) -> np.ndarray:
    """The protocol written out: pad each tile to tile x tile with 0, probe, upsample to the tile,
    crop to the image, sum, divide by the overlap count."""
    _, height, width = image.shape
    total = np.zeros((5, height, width))
    count = np.zeros((height, width))
    for y in ys:
        for x in xs:
            crop = image[:, y:y + tile, x:x + tile]
            padded = np.zeros((3, tile, tile))
            padded[:, :crop.shape[1], :crop.shape[2]] = crop
            logits = upsample_align_corners(probe_numpy(padded), tile, tile)
            total[:, y:y + crop.shape[1], x:x + crop.shape[2]] += logits[:, :crop.shape[1], :crop.shape[2]]
            count[y:y + crop.shape[1], x:x + crop.shape[2]] += 1
    assert count.min() >= 1
    return total / count


@pytest.mark.parametrize("height, width, ys, xs", [
    (97, 161, [0, 32], [0, 44, 88, 96]),  # overlapping tiles, last ones shifted back inside
    (40, 50, None, None),                 # smaller than the tile in both directions: whole, no padding
    (65, 65, [0], [0]),                   # exactly one tile
    (40, 161, [0], [0, 44, 88, 96]),      # smaller in one dimension only: padded with 0, cropped back
])
@pytest.mark.parametrize("batch_tiles", [1, 3, 64])
def test_sliding_window_equals_hand_computation(height, width, ys, xs, batch_tiles):
    image = torch.randn(3, height, width, generator=torch.Generator().manual_seed(height + width))
    got = infer_logits(Stride8Probe(), image, tile=65, stride=44, batch_tiles=batch_tiles)
    x = image.double().numpy()
    expected = (upsample_align_corners(probe_numpy(x), height, width) if ys is None
                else hand_sliding(x, 65, ys, xs))
    assert got.dtype == torch.float32 and got.shape == (5, height, width)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_whole_image_and_flip_equal_hand_computation():
    image = torch.randn(3, 41, 60, generator=torch.Generator().manual_seed(1))
    x = image.double().numpy()
    plain = upsample_align_corners(probe_numpy(x), 41, 60)
    got = infer_logits(Stride8Probe(), image, mode="whole")
    np.testing.assert_allclose(got.numpy(), plain, rtol=1e-5, atol=1e-5)

    mirrored = upsample_align_corners(probe_numpy(x[:, :, ::-1]), 41, 60)[:, :, ::-1]
    got = infer_logits(Stride8Probe(), image, mode="whole", flip=True)
    np.testing.assert_allclose(got.numpy(), (plain + mirrored) / 2, rtol=1e-5, atol=1e-5)
    assert not np.allclose(plain, mirrored)  # the probe is not mirror-symmetric, so flip is tested


def test_multi_scale_sums_logits_resized_to_the_image():
    image = torch.randn(3, 33, 49, generator=torch.Generator().manual_seed(2))
    x = image.double().numpy()
    expected = np.zeros((5, 33, 49))
    for scale in (0.5, 1.0):
        h, w = round(33 * scale), round(49 * scale)
        scaled = upsample_align_corners(x, h, w)
        logits = upsample_align_corners(probe_numpy(scaled), h, w)
        expected += upsample_align_corners(logits, 33, 49)
    got = infer_logits(Stride8Probe(), image, mode="whole", scales=(0.5, 1.0))
    np.testing.assert_allclose(got.numpy(), expected / 2, rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    image = torch.zeros(3, 16, 16)
    with pytest.raises(ValueError, match="mode"):
        infer_logits(Stride8Probe(), image, mode="tiles", tile=8)
    with pytest.raises(ValueError, match="scales"):
        infer_logits(Stride8Probe(), image, scales=(0.0,), tile=8)
    with pytest.raises(ValueError, match="amp"):
        infer_logits(Stride8Probe(), image, amp="fp8", tile=8)


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    return dgcnet.build_model("dgcnet_r18").eval()


def test_r18_sliding_window_at_odd_sizes(r18):
    image = torch.randn(3, 71, 97, generator=torch.Generator().manual_seed(3))
    logits = infer_logits(r18, image, tile=65, batch_tiles=2)
    assert logits.shape == (19, 71, 97) and torch.isfinite(logits).all()
    # One tile covering the whole image is the same as whole-image inference.
    single = infer_logits(r18, image[:, :65, :65], tile=65)
    torch.testing.assert_close(single, infer_logits(r18, image[:, :65, :65], mode="whole"))


def test_bf16_autocast_gives_float32_logits_close_to_fp32(r18):
    image = torch.randn(3, 65, 65, generator=torch.Generator().manual_seed(4))
    fp32 = infer_logits(r18, image, mode="whole")
    bf16 = infer_logits(r18, image, mode="whole", amp="bf16")
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() < 0.1 * fp32.abs().max()
