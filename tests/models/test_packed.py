"""Packed bf16 convolutions with fused ReLU and residual sum (the CPU fast path under bf16 autocast)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dgcnet.models.fast import optimize_for_inference
from dgcnet.models.packed import PackedConv2d, packing_available
from dgcnet.models.winograd import WinogradConv2d
from tests.models.test_fast import relative_error

pytestmark = pytest.mark.skipif(not packing_available(), reason="this PyTorch build has no oneDNN")


def _bf16(net: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return net(*inputs)


@pytest.mark.parametrize("relu,residual,stride,dilation", [(False, False, 1, 1), (True, False, 2, 1),
                                                           (True, True, 1, 2), (False, True, 1, 1)])
def test_fused_convolution_is_the_convolution_then_sum_then_relu(relu, residual, stride, dilation):
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(16, 24, 3, stride=stride, padding=dilation, dilation=dilation).eval()
    x = torch.randn(2, 16, 20, 28, generator=g)
    packed = PackedConv2d(conv, relu=relu)
    with torch.no_grad():
        out_shape = conv(x).shape
        other = torch.randn(out_shape, generator=g) if residual else None
        expected = conv(x) + (other if residual else 0)
        expected = expected.relu() if relu else expected
        # fp32: the plain convolution, the sum and the ReLU, exactly.
        assert torch.equal(packed(x, other), expected)
        # bf16: one rounding of the fused result, against the two of autocast's separate passes.
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fused = packed(x, other)
            separate = conv(x) + (other.bfloat16() if residual else 0)
            separate = F.relu(separate) if relu else separate
    assert fused.dtype == torch.bfloat16 and fused.is_contiguous(memory_format=torch.channels_last)
    assert relative_error(fused.float(), expected) < 1e-2
    assert relative_error(fused.float(), expected) <= relative_error(separate.float(), expected) * 1.5
    assert len(packed.packed) == 1  # the bf16 filter, packed once


def test_every_convolution_of_the_fast_model_is_packed(r18):
    fast = optimize_for_inference(r18)
    convs = [m for m in fast.modules() if isinstance(m, PackedConv2d)]
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in r18.modules())
    wrapped = {id(m.conv) for m in convs} | {id(m.conv.conv) for m in convs if isinstance(m.conv, WinogradConv2d)}
    assert all(id(m) in wrapped for m in fast.modules() if type(m) is nn.Conv2d)
    # Each ReLU that followed a convolution is fused: those left apply to sums or run in the heads.
    assert sum(m.relu for m in convs) > len(convs) // 2


def test_packing_changes_nothing_in_fp32_and_little_in_bf16(r18):
    packed, plain = optimize_for_inference(r18), optimize_for_inference(r18, packed=False)
    for size in ((65, 81), (48, 96), (65, 81)):  # packed for the first size, run at others too
        x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(size[1]))
        assert torch.equal(packed(x), plain(x))
        reference = plain(x)
        low, low_plain = _bf16(packed, x), _bf16(plain, x)
        assert low.dtype == torch.float32  # the classifier runs in fp32
        assert relative_error(low.float(), reference) < 5e-2
        assert relative_error(low.float(), reference) <= relative_error(low_plain.float(), reference) * 1.5


def test_packed_model_copies_and_moves(r18):
    fast = optimize_for_inference(r18)
    x = torch.randn(1, 3, 33, 49, generator=torch.Generator().manual_seed(3))
    low = _bf16(fast, x)
    copied = copy.deepcopy(fast)  # after packing: the copy packs its own filters
    assert all(len(m.packed) == 0 for m in copied.modules() if isinstance(m, PackedConv2d))
    assert torch.equal(_bf16(copied, x), low)
    assert not any(t.is_mkldnn for t in fast.state_dict().values())
    fast.float()  # any move or cast drops the packed filters
    assert all(len(m.packed) == 0 for m in fast.modules() if isinstance(m, PackedConv2d))


def test_sums_go_into_a_block_input_only_when_nothing_else_reads_it(r18):
    from dgcnet.models.packed import PackedBasicBlock

    fast = optimize_for_inference(r18)
    blocks = [m for m in fast.modules() if isinstance(m, PackedBasicBlock)]
    # The first block of each layer reads the layer's input (its sum goes into the fresh
    # downsampled tensor); every later block owns its input, the output of the block before.
    assert [b.owns_input for b in blocks] == [False, True] * 4
    x = torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(4))
    before = x.clone()
    low = _bf16(fast, x)
    assert torch.equal(x, before)  # the caller's image is never written
    block = blocks[1]
    inner = torch.randn(1, 64, 10, 14, generator=torch.Generator().manual_seed(5))
    kept = inner.clone()
    block.owns_input = False
    with torch.no_grad():
        reference = _bf16(block, inner)
        assert torch.equal(inner, kept)  # not owned: left alone
        block.owns_input = True
        assert torch.equal(_bf16(block, inner), reference)  # owned: the same result, written into it
    assert low.dtype == torch.float32


@pytest.mark.parametrize("chunked", [False, True])
def test_convolution_over_parts_is_the_convolution_over_their_concatenation(chunked, monkeypatch):
    from dgcnet.models import packed as packed_module

    if chunked:  # a convolution this narrow runs in pieces only with the thresholds lowered
        monkeypatch.setattr(packed_module, "WIDE_INPUT", 16)
        monkeypatch.setattr(packed_module, "CHUNK", 8)
    g = torch.Generator().manual_seed(6)
    conv = nn.Conv2d(40, 24, 3, padding=1).eval()
    parts = [torch.randn(2, 28, 15, 19, generator=g), torch.randn(2, 12, 15, 19, generator=g)]
    packed = packed_module.PackedConcatConv2d(conv, relu=True)
    with torch.no_grad():
        expected = conv(torch.cat(parts, 1)).relu()
        assert torch.equal(packed(*parts), expected)  # fp32: concatenated, the original convolution
        fused = _bf16(packed, *parts)
        separate = _bf16(nn.Sequential(conv, nn.ReLU()), torch.cat(parts, 1))
    assert fused.dtype == torch.bfloat16
    # One bf16 rounding per piece: 2 parts, or 4 + 2 chunks of at most 8 channels.
    assert len(packed.packed) == (6 if chunked else 2)
    assert relative_error(fused.float(), expected) < 2e-2
    assert relative_error(fused.float(), expected) <= relative_error(separate.float(), expected) * 3
    with pytest.raises(ValueError, match="channels"):
        packed(parts[0])


def test_the_head_reads_its_two_inputs_without_concatenating_them(r18, monkeypatch):
    from dgcnet.models.packed import PackedDualGCNHead

    fast = optimize_for_inference(r18)
    assert isinstance(fast.model.head, PackedDualGCNHead)
    x = torch.randn(1, 3, 41, 57, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        reference = r18.eval()(x)
    features, concatenated = [], []
    fast.model.layer4.register_forward_hook(lambda module, args, out: features.append(out))
    cat = torch.cat
    monkeypatch.setattr(torch, "cat", lambda tensors, *args, **kwargs: concatenated.extend(tensors) or cat(
        tensors, *args, **kwargs))
    low = _bf16(fast, x)
    assert relative_error(low.float(), reference) < 5e-2
    assert len(features) == 1 and not any(t is features[0] for t in concatenated)
    fast(x)  # fp32: the head's input concatenated with the DualGCN output, as in the model
    assert any(t is features[1] for t in concatenated)


def test_bf16_logits_are_the_fp32_classifier_of_the_bf16_features(r18):
    # Rounding the logits to bf16 flips the argmax of near ties; only the classifier runs in fp32.
    fast = optimize_for_inference(r18)
    head = fast.model.head
    features = []
    head.bottleneck.register_forward_hook(lambda module, args, out: features.append(out))
    x = torch.randn(1, 3, 41, 57, generator=torch.Generator().manual_seed(9))
    low = _bf16(fast, x)
    assert features[0].dtype == torch.bfloat16 and low.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(low, head.classifier.base(features[0].float()))


def _with_folded_copy(module: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``module`` in eval mode with random BatchNorm statistics, and a copy with them folded."""
    from dgcnet.models.fast import fold_batchnorm
    from tests.models.test_fast import randomize_batchnorm

    plain = module.eval()
    randomize_batchnorm(plain)
    folded = copy.deepcopy(plain)
    fold_batchnorm(folded)
    return plain, folded


def test_packed_dualgcn_computes_the_dualgcn():
    from dgcnet.models.dualgcn import DualGCN
    from dgcnet.models.packed import PackedDualGCN

    torch.manual_seed(9)
    dualgcn = DualGCN(32)
    with torch.no_grad():  # both branches of the same size, so that each one shows in the output
        dualgcn.theta.weight.mul_(0.05)
    plain, folded = _with_folded_copy(dualgcn)
    packed = PackedDualGCN(folded)
    x = torch.randn(1, 32, 17, 23, generator=torch.Generator().manual_seed(8)).relu()
    with torch.no_grad():
        expected = plain(x)
        assert relative_error(packed(x), expected) < 1e-5  # fp32: the DualGCN's own forward
        low = _bf16(packed, x)
    assert low.dtype == torch.bfloat16 and low.is_contiguous(memory_format=torch.channels_last)
    assert relative_error(low.float(), expected) < 2e-2


@pytest.mark.parametrize("height,width", [(17, 23), (16, 16), (5, 3), (1, 2)])
def test_a_dilated_convolution_is_the_plain_one_on_the_phase_grids(height, width):
    from dgcnet.models.packed import Phases

    g = torch.Generator().manual_seed(height * width)
    x = torch.randn(2, 8, height, width, generator=g)
    weight = torch.randn(6, 8, 3, 3, generator=g)
    phases = Phases(4, height, width)
    grids = phases.split(x)
    h, w = -(-height // 4), -(-width // 4)
    assert grids.shape == (32, 8, h, w) and grids.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(phases.merge(grids), x)
    # Grid (i, j), batch b, is grids[(4 * i + j) * 2 + b]; its position (p, q) is the map's (i + 4p, j + 4q).
    i = torch.arange(4).view(4, 1, 1, 1, 1, 1)
    j = torch.arange(4).view(1, 4, 1, 1, 1, 1)
    p = torch.arange(h).view(1, 1, 1, 1, h, 1)
    q = torch.arange(w).view(1, 1, 1, 1, 1, w)
    outside = ((i + 4 * p >= height) | (j + 4 * q >= width)).expand(4, 4, 2, 8, h, w).reshape(32, 8, h, w)
    assert outside.any() == (height % 4 != 0 or width % 4 != 0)
    assert not grids[outside].any()  # split leaves zeros there
    garbage = grids.masked_fill(outside, 100.0)  # what a convolution leaves there
    phases.clear_padding(garbage)
    assert torch.equal(garbage, grids)
    for k in (1, 2):  # dilation 4 and 8 on the map: 1 and 2 on the grids
        expected = F.conv2d(x, weight, padding=4 * k, dilation=4 * k)
        got = phases.merge(F.conv2d(grids, weight, padding=k, dilation=k))
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_layer4_runs_in_phases_in_bf16(r18):
    from dgcnet.models.packed import PackedPhaseLayer, Phases

    fast, plain = optimize_for_inference(r18), optimize_for_inference(r18)
    assert isinstance(fast.model.layer4, PackedPhaseLayer)
    assert not isinstance(fast.model.layer3, PackedPhaseLayer)  # dilation 2
    with pytest.raises(ValueError, match="phase layer"):
        PackedPhaseLayer(fast.model.layer2)  # stride 2, dilation 1
    plain.model.layer4 = nn.Sequential(*plain.model.layer4)
    assert list(fast.model.layer4.state_dict()) == list(plain.model.layer4.state_dict())  # same keys
    x = torch.randn(1, 3, 241, 257, generator=torch.Generator().manual_seed(3))  # layer4: 31x33, grids padded
    small = x[:, :, :45, :67]  # layer4: 6x9, grids of 2x3: too small to pay
    splits = []
    split = Phases.split
    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(Phases, "split", lambda self, t: splits.append(self) or split(self, t))
        reference = r18.eval()(x)
        assert torch.equal(fast(x), plain(x))  # fp32: the layer itself
        assert not splits
        assert torch.equal(_bf16(fast, small), _bf16(plain, small))
        assert not splits
        low, low_plain = _bf16(fast, x), _bf16(plain, x)
    assert splits == [Phases(4, 31, 33)]
    assert relative_error(low.float(), low_plain.float()) < 1e-2
    assert relative_error(low.float(), reference) <= 1.5 * relative_error(low_plain.float(), reference) + 1e-3


@pytest.mark.parametrize("ceil_mode", [True, False])
def test_stem_pool_is_the_max_pooling(ceil_mode):
    from dgcnet.models.packed import PackedStemPool

    pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=ceil_mode)
    stem_pool = PackedStemPool(pool)
    g = torch.Generator().manual_seed(int(ceil_mode))
    for height in range(1, 10):
        for width in (1, 2, 7, 8):
            x = torch.randn(2, 4, height, width, generator=g).relu()
            x[0, 0, 0, 0] = -0.0  # a ReLU may leave negative zeros
            with torch.no_grad():
                expected = pool(x.bfloat16().float()).bfloat16()
                assert torch.equal(stem_pool(x), pool(x))  # fp32: the pooling itself
                got = _bf16(stem_pool, x)
            assert got.shape == expected.shape and torch.equal(got, expected), (height, width)
            assert got.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="not a 3x3"):
        PackedStemPool(nn.MaxPool2d(2))


def test_packed_spatial_gcn_computes_the_spatial_gcn():
    from dgcnet.models.dualgcn import SpatialGCN
    from dgcnet.models.packed import PackedSpatialGCN

    torch.manual_seed(4)
    plain, folded = _with_folded_copy(SpatialGCN(32))
    packed = PackedSpatialGCN(folded)
    x = torch.randn(2, 32, 5, 7, generator=torch.Generator().manual_seed(5)).relu()
    with torch.no_grad():
        expected = plain(x)
        graph = expected - F.relu(x)  # what the graph adds: the test must see it
        assert graph.abs().max() > 0.1 * expected.abs().max()
        assert relative_error(packed(x), expected) < 1e-5  # fp32: the SpatialGCN's own forward
        low = _bf16(packed, x)
    assert low.dtype == torch.bfloat16 and low.is_contiguous(memory_format=torch.channels_last)
    assert relative_error(low.float(), expected) < 2e-2
    with pytest.raises(ValueError, match="fold"):
        PackedSpatialGCN(SpatialGCN(32))
