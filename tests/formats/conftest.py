from pathlib import Path

import pytest
import torch

from dgcnet.models import build_model
from tests.conftest import FIXTURES


def random_state_dict(arch: str = "dgcnet_r18", num_classes: int = 19, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict whose every entry (BN statistics and counters too) is random, so that a lost
    or swapped tensor shows in a comparison."""
    generator = torch.Generator().manual_seed(seed)
    state = build_model(arch, num_classes).state_dict()
    for name, value in state.items():
        if value.is_floating_point():
            value.copy_(torch.rand(value.shape, generator=generator) + 0.5 if "running_var" in name
                        else torch.randn(value.shape, generator=generator))
        else:
            value.fill_(int(torch.randint(1, 1000, (), generator=generator)))
    return state


@pytest.fixture(scope="session")
def r18_state() -> dict[str, torch.Tensor]:
    return random_state_dict()


@pytest.fixture(scope="session")
def r18_pth(tmp_path_factory: pytest.TempPathFactory, r18_state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path_factory.mktemp("weights") / "r18.pth"
    torch.save(r18_state, path)
    return path


@pytest.fixture(scope="session")
def ms_reference() -> Path:
    return FIXTURES / "mindspore"
