import pytest
import torch
from torch import nn

from dgcnet.models.fast import fold_batchnorm, optimize_for_inference
from dgcnet.models import build_model

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BATCHNORMS):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


@pytest.fixture(scope="module")
def image():
    return torch.randn(2, 3, 65, 81, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def expected(r18, image):
    with torch.no_grad():
        return r18(image)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_folded_logits_match_eager(r18, image, expected):
    fast = optimize_for_inference(r18, channels_last=False, fold_bn=True)
    got = fast(image)
    assert got.shape == expected.shape
    assert relative_error(got, expected) < 1e-4
    # No BatchNorm is left to run, and the original model still has all of its own.
    assert not any(isinstance(m, BATCHNORMS) for m in fast.modules())
    assert sum(isinstance(m, BATCHNORMS) for m in r18.modules()) > 0


def test_channels_last_output_matches_eager(r18, image, expected):
    got = optimize_for_inference(r18, channels_last=True, fold_bn=False)(image)
    assert got.is_contiguous()
    assert relative_error(got, expected) < 1e-5


def test_default_path_is_exact_and_keeps_metadata(r18, image, expected):
    fast = optimize_for_inference(r18)
    assert fast.num_classes == 5 and fast.arch == "dgcnet_r18" and fast.info == r18.info
    assert relative_error(fast(image), expected) < 1e-4
    assert not r18.training
    with pytest.raises(RuntimeError):
        fast.train()


def test_every_batchnorm_of_r101_is_folded():
    # The meta device checks the structure of the big model without allocating it.
    with torch.device("meta"):
        model = build_model("dgcnet_r101").eval()
    total = sum(isinstance(m, BATCHNORMS) for m in model.modules())
    assert fold_batchnorm(model) == total
    assert not any(isinstance(m, BATCHNORMS) for m in model.modules())


def test_bf16_autocast_agrees_with_fp32(r18, image):
    fast = optimize_for_inference(r18)
    reference = fast(image)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = fast(image)
    assert low.dtype == torch.float32  # bf16 features, the classifier in fp32
    assert relative_error(low.float(), reference) < 5e-2


def test_a_batchnorm_left_unfolded_is_an_error():
    """A layer whose conv -> BatchNorm pair nobody declared must not pass silently."""
    class Undeclared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.norm = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.norm(self.conv(x))

    with pytest.raises(ValueError, match="norm"):
        fold_batchnorm(Undeclared().eval())
    Undeclared.conv_bn_pairs = (("conv", "norm"),)
    assert fold_batchnorm(Undeclared().eval()) == 1
