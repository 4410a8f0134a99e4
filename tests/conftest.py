from pathlib import Path

import pytest
import torch

# Reference files the tests compare against (what each is: fixtures/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def one_thread():
    """Small tensors: one thread is faster, and it is what a DataLoader worker uses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
