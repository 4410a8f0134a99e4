"""Training reads a prepared store when there is one, says so, and sees the same samples; crops
resized on the training device are the same crops as those resized in the loader."""
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


def test_resizing_on_the_device_trains_on_the_same_crops(tmp_path: Path, capsys) -> None:
    data_list = make_dataset(tmp_path / "data", n=2)
    prepare(data_list.parent, data_list)
    losses = {}
    for resize_on in ("loader", "device"):
        records = []
        torch.manual_seed(0)
        train(load_config(None, tiny_overrides(data_list, tmp_path / resize_on, steps=2,
                                               **{"data.resize_on": resize_on, "data.workers": 1})),
              on_log=records.append)
        losses[resize_on] = [r["loss"] for r in records]
        where = "on the training device" if resize_on == "device" else "in the loader workers"
        assert f"crops resized {where}" in capsys.readouterr().out
    assert losses["device"] == losses["loader"]
