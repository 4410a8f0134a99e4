import pytest
import torch

from dgcnet.models import build_model
from tests.models.test_fast import randomize_batchnorm


@pytest.fixture(scope="module")
def r18():
    """dgcnet_r18 with 5 classes, random weights and BatchNorm statistics as after training."""
    torch.manual_seed(0)
    model = build_model("dgcnet_r18", num_classes=5).eval()
    randomize_batchnorm(model)
    return model
