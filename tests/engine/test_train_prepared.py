"""Training reads a prepared store when there is one, says so, and sees the same samples."""
from pathlib import Path

import pytest
import torch

from dgcnet.config import load_config
from dgcnet.data.prepare import prepare
from dgcnet.engine.train import train
from tests.engine.test_train import make_dataset, tiny_overrides


@pytest.fixture(autouse=True)
def one_thread(one_thread):
    """One intra-op thread (the fixture of tests/conftest.py)."""


def test_training_uses_the_store_says_so_and_sees_the_same_samples(tmp_path: Path, capsys) -> None:
    data_list = make_dataset(tmp_path / "data", n=2)
    losses = {}
    for prepared in ("none", "auto"):
        if prepared == "auto":
            prepare(data_list.parent, data_list)
        records = []
        torch.manual_seed(0)
        train(load_config(None, tiny_overrides(data_list, tmp_path / prepared, steps=1,
                                               **{"data.prepared": prepared})), on_log=records.append)
        losses[prepared] = [r["loss"] for r in records]
        out = capsys.readouterr().out
        expected = "prepared store" if prepared == "auto" else "decoding the image files"
        assert f"training data: {expected}" in out
    assert losses["auto"] == losses["none"]
