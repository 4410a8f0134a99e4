"""The model must equal the reference DGCNet: names, shapes, output sizes and arithmetic."""
import pytest
import torch
import torch.nn.functional as F

import dgcnet
from dgcnet.errors import DgcnetError
from dgcnet.models.dualgcn import DualGCN, DualGCNHead, SpatialGCN

from tests.conftest import FIXTURES

REFERENCE = FIXTURES / "dgcnet_r101_state_dict.tsv"


def reference_shapes() -> dict[str, tuple[int, ...]]:
    rows = [line.split("\t") for line in REFERENCE.read_text().splitlines()]
    return {name: tuple(int(v) for v in shape.strip("()").split(",") if v.strip()) for name, shape in rows}


def meta_model(arch: str, num_classes: int = 19):
    with torch.device("meta"):
        return dgcnet.build_model(arch, num_classes)


def test_r101_state_dict_equals_reference():
    expected = reference_shapes()
    state = meta_model("dgcnet_r101").state_dict()
    assert len(expected) == 738
    assert list(state) == list(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_r50_is_r101_with_six_blocks_in_layer3():
    expected = {k: v for k, v in reference_shapes().items()
                if not (k.startswith("layer3.") and int(k.split(".")[1]) >= 6)}
    state = meta_model("dgcnet_r50").state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_parameter_counts():
    assert sum(p.numel() for p in meta_model("dgcnet_r101").parameters()) == 72_506_598
    assert sum(p.numel() for p in meta_model("dgcnet_r50").parameters()) == 53_514_470


def test_num_classes_changes_only_the_classifiers():
    state = meta_model("dgcnet_r101", 7).state_dict()
    assert state["head.bottleneck.3.weight"].shape == (7, 512, 1, 1)
    assert state["dsn.3.bias"].shape == (7,)


def test_list_and_unknown_arch():
    assert {"dgcnet_r101", "dgcnet_r50", "dgcnet_r18", "dgcnet_r34"} <= set(dgcnet.list_models())
    with pytest.raises(DgcnetError, match="unknown arch"):
        dgcnet.build_model("dgcnet_r7")


@pytest.mark.parametrize("size,expected", [((832, 832), (105, 105)), ((769, 769), (97, 97)),
                                           ((1024, 2048), (129, 257)), ((129, 129), (17, 17))])
def test_output_size_with_ceil_mode(size, expected):
    model = meta_model("dgcnet_r101").eval()
    out = model(torch.empty(1, 3, *size, device="meta"))
    assert tuple(out.shape) == (1, 19, *expected)


@pytest.mark.slow
def test_small_arch_eval_and_train_outputs():
    torch.manual_seed(0)
    model = dgcnet.build_model("dgcnet_r18", num_classes=5)
    x = torch.randn(2, 3, 129, 129)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5, 17, 17)
    model.train()
    logits, aux = model(x)
    assert logits.shape == aux.shape == (2, 5, 17, 17)


# --- independent float64 computation of the graph modules -----------------------------------

def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def p64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().double()


def bn(x, m, train):
    """Batch norm over every axis but the channel axis 1."""
    axes = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    if train:
        mean, var = x.mean(axes), x.var(axes, unbiased=False)
    else:
        mean, var = p64(m.running_mean), p64(m.running_var)
    return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + m.eps) * p64(m.weight).view(shape) \
        + p64(m.bias).view(shape)


def pointwise(x, conv):
    """A 1x1 convolution (2-D or 1-D) as an einsum."""
    w = p64(conv.weight).reshape(conv.weight.shape[0], conv.weight.shape[1])
    y = torch.einsum("oc,bc...->bo...", w, x)
    if conv.bias is not None:
        y = y + p64(conv.bias).view([1, -1] + [1] * (x.dim() - 2))
    return y


def depthwise_stride2(x, conv):
    """3x3 depthwise convolution, stride 2, padding 1, written as a sum of shifted products."""
    w = p64(conv.weight)[:, 0]
    xp = F.pad(x, (1, 1, 1, 1))
    h, wd = (x.shape[2] + 1) // 2, (x.shape[3] + 1) // 2
    out = torch.zeros(x.shape[0], x.shape[1], h, wd, dtype=x.dtype)
    for i in range(3):
        for j in range(3):
            out += xp[:, :, i:i + 2 * h:2, j:j + 2 * wd:2] * w[:, i, j].view(1, -1, 1, 1)
    return out


def spatial_gcn_ref(x, m, train):
    b, _, h, w = x.shape
    k = pointwise(x, m.node_k).flatten(2)
    v = pointwise(x, m.node_v).flatten(2)
    q = pointwise(x, m.node_q).flatten(2)
    attention = torch.softmax(torch.einsum("bin,bjn->bij", q, v), dim=2)
    av = torch.einsum("bcn,bcj->bjn", k, attention)
    avw = bn(pointwise(av, m.conv_wg), m.bn_wg, train).reshape(b, -1, h, w)
    return torch.relu(bn(pointwise(avw, m.out[0]), m.out[1], train) + x)


def dualgcn_ref(x, m, train):
    b, c, h, w = x.shape
    local = x
    for i in range(0, 6, 2):
        local = bn(depthwise_stride2(local, m.local[i]), m.local[i + 1], train)
    local = spatial_gcn_ref(local, m.gcn_local_attention, train)
    local = F.interpolate(local, size=(h, w), mode="bilinear", align_corners=True)
    spatial = x * local + x
    x_sqz = bn(pointwise(x, m.phi), m.bn_phi, train).flatten(2)
    nodes = bn(pointwise(x, m.theta), m.bn_theta, train).flatten(2)
    z_idt = torch.einsum("bcn,bkn->bck", x_sqz, nodes)
    z = bn(pointwise(z_idt.transpose(1, 2), m.conv_adj), m.bn_adj, train).transpose(1, 2) + z_idt
    z = bn(pointwise(z, m.conv_wg), m.bn_wg, train)
    y = torch.einsum("bck,bkn->bcn", z, nodes).reshape(b, c // 2, h, w)
    g_out = torch.relu(x + bn(pointwise(y, m.conv3), m.bn3, train))
    return bn(pointwise(torch.cat([spatial, g_out], 1), m.final[0]), m.final[1], train)


def conv_bn_relu_ref(x, seq, train, relu=True):
    y = bn(F.conv2d(x, p64(seq[0].weight), padding=1), seq[1], train)
    return torch.relu(y) if relu else y


def head_ref(x, m, train):
    out = conv_bn_relu_ref(dualgcn_ref(conv_bn_relu_ref(x, m.conva, train), m.dualgcn, train), m.convb, train)
    out = conv_bn_relu_ref(torch.cat([x, out], 1), m.bottleneck, train)
    return pointwise(out, m.bottleneck[3])


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("module_cls,reference,in_channels,size", [
    (lambda: SpatialGCN(32), spatial_gcn_ref, 32, (5, 7)),
    (lambda: DualGCN(32), dualgcn_ref, 32, (13, 11)),
    (lambda: DualGCNHead(24, 32, 5), head_ref, 24, (9, 10)),
], ids=["SpatialGCN", "DualGCN", "DualGCNHead"])
def test_graph_modules_match_float64_reference(module_cls, reference, in_channels, size, train):
    torch.manual_seed(1)
    module = module_cls()
    randomize(module)
    module.train(train)
    x = torch.randn(2, in_channels, *size)
    with torch.no_grad():
        ours = module(x)
    expected = reference(x.double(), module, train)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours.double(), expected, rtol=1e-4, atol=1e-4)
