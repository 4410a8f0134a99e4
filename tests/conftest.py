import os
from pathlib import Path

import pytest
import torch

# The reference files (state-dict names, MindSpore samples, Cityscapes lists) live in ../shared.
SHARED = Path(os.environ.get("DGCNET_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"reference folder {SHARED} not found (set DGCNET_SHARED)")
    return SHARED


@pytest.fixture
def one_thread():
    """Small tensors: one thread is faster, and it is what a DataLoader worker uses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
