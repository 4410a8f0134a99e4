import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dgcnet.models.fast import optimize_for_inference
from dgcnet.models import winograd
from dgcnet.models.winograd import (WinogradConv2d, use_winograd, winograd_conv3x3, winograd_pays,
                                     winograd_weight)
from dgcnet.models import build_model


def conv_inputs(seed: int, n: int, cin: int, cout: int, h: int, w: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=g, dtype=dtype)
    weight = torch.randn(cout, cin, 3, 3, generator=g, dtype=dtype)
    bias = torch.randn(cout, generator=g, dtype=dtype)
    return x, weight, bias


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), cin=st.integers(1, 9), cout=st.integers(1, 9), h=st.integers(1, 40),
       w=st.integers(1, 40), dilation=st.sampled_from([1, 2, 3, 4, 8, 16]), with_bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_equals_direct_convolution_in_float64(n, cin, cout, h, w, dilation, with_bias, seed):
    # Float64 leaves only the algorithm: any indexing or transform mistake shows as a large error.
    x, weight, bias = conv_inputs(seed, n, cin, cout, h, w)
    bias = bias if with_bias else None
    expected = F.conv2d(x, weight, bias, padding=dilation, dilation=dilation)
    got = winograd_conv3x3(x, winograd_weight(weight), bias, dilation)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_error_is_that_of_rounding(channels_last, one_thread):
    x, weight, bias = conv_inputs(0, 2, 64, 48, 37, 53, torch.float32)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=2, dilation=2)
    got = winograd_conv3x3(x, winograd_weight(weight), bias, 2)
    assert got.dtype == torch.float32 and got.is_contiguous(memory_format=torch.channels_last)
    assert ((got.double() - exact).norm() / exact.norm()).item() < 1e-5


def test_module_replaces_a_conv_and_keeps_its_output():
    conv = nn.Conv2d(8, 6, 3, padding=4, dilation=4).double()
    x = torch.randn(1, 8, 20, 30, dtype=torch.float64)
    module = WinogradConv2d(conv)
    with torch.no_grad():
        torch.testing.assert_close(module(x), conv(x), rtol=1e-10, atol=1e-10)
    # With autograd on, the original convolution runs, so gradients flow.
    module(x).sum().backward()
    assert conv.weight.grad is not None


def test_maps_too_small_for_the_tiles_run_the_direct_convolution(monkeypatch):
    # Tiles of 4 * dilation: at most twice the map's positions in them, or the direct convolution.
    assert winograd_pays(33, 65, 4) and not winograd_pays(17, 33, 4)  # 48x80 tiles; 32x48
    assert winograd_pays(9, 17, 1) and not winograd_pays(9, 17, 2)    # 12x20; 16x24
    conv = nn.Conv2d(4, 4, 3, padding=4, dilation=4).double()
    module = WinogradConv2d(conv)
    ran = []
    algorithm = winograd.winograd_conv3x3
    monkeypatch.setattr(winograd, "winograd_conv3x3", lambda x, *args: ran.append(x.shape[2:]) or algorithm(x, *args))
    with torch.no_grad():
        for size in [(17, 33), (33, 65)]:
            x = torch.randn(1, 4, *size, dtype=torch.float64)
            torch.testing.assert_close(module(x), conv(x), rtol=1e-10, atol=1e-10)
    assert ran == [(33, 65)]


def test_autocast_runs_the_original_convolution():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    module = WinogradConv2d(conv)
    x = torch.randn(1, 8, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = module(x)
        expected = conv(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("conv", [
    nn.Conv2d(128, 128, 3, stride=2, padding=1),           # strided
    nn.Conv2d(128, 128, 3, padding=1, groups=128),         # depthwise
    nn.Conv2d(128, 128, 1),                                # 1x1
    nn.Conv2d(128, 128, 3, padding=0),                     # padding != dilation
    nn.Conv2d(128, 128, 3, padding=1, padding_mode="reflect"),
])
def test_ineligible_convolutions_are_refused(conv):
    with pytest.raises(ValueError):
        WinogradConv2d(conv)
    assert use_winograd(nn.Sequential(conv)) == 0


def test_only_wide_3x3_convolutions_of_r18_are_replaced():
    model = build_model("dgcnet_r18", num_classes=5).eval()
    wide = [m for m in model.modules() if type(m) is nn.Conv2d and m.kernel_size == (3, 3) and m.stride == (1, 1)
            and m.groups == 1 and min(m.in_channels, m.out_channels) >= 128]
    assert use_winograd(model) == len(wide) > 0
    assert {id(m.conv) for m in model.modules() if isinstance(m, WinogradConv2d)} == {id(m) for m in wide}


@pytest.mark.slow
def test_fast_path_uses_winograd_on_the_cpu_only_when_asked_or_by_default():
    model = build_model("dgcnet_r18", num_classes=5).eval()
    assert any(isinstance(m, WinogradConv2d) for m in optimize_for_inference(model).modules())
    assert not any(isinstance(m, WinogradConv2d) for m in optimize_for_inference(model, winograd=False).modules())
    assert not any(isinstance(m, WinogradConv2d) for m in model.modules())  # the original is untouched
