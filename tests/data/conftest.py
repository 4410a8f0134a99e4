from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgcnet.data.synth import write_synth


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic Cityscapes tree (6 train, 3 val, 2 test images of 64x128)."""
    out = tmp_path_factory.mktemp("synth")
    write_synth(out, train=6, val=3, test=2, size=(64, 128), seed=3)
    return out


@pytest.fixture(autouse=True)
def single_thread(one_thread):
    """Every data test runs with one intra-op thread (the fixture of tests/conftest.py)."""
