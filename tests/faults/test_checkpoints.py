"""Checkpoints that torch reads but that are not usable, pickles that would run code, garbage,
and resuming past the end: one line each, naming the file, and no output written."""
import os

import pytest
import torch

from dgcnet.cli import main
from dgcnet.config import load_config
from dgcnet.engine.train import train
from dgcnet.errors import DgcnetError
from tests.faults.conftest import tiny_overrides


def _drop(key):
    def change(state):
        del state[key]
    return change


def _set(key, value):
    def change(state):
        state[key] = value
    return change


def _model(change_model):
    def change(state):
        state["model"] = change_model(state["model"])
    return change


# name -> change to a real checkpoint; each must be refused on resume with a one-line message.
ODD_CHECKPOINTS = {
    "no arch": _drop("arch"),
    "no optimizer": _drop("optimizer"),
    "no model": _drop("model"),
    "no iteration": _drop("iteration"),
    "bad rng entry": _set("rng", {"world_size": 1, "ranks": [{"torch": "seed"}]}),
    "rng of the wrong size": _set("rng", {"world_size": 1, "ranks": [
        {"torch": torch.zeros(3, dtype=torch.uint8), "cuda": None, "numpy": {}, "python": {}}]}),
    "class_names=5": _set("class_names", 5),
    "two class names": _set("class_names", ["a", "b"]),
    "num_classes as text": _set("num_classes", "19"),
    "integer keys": _model(lambda m: {i: v for i, v in enumerate(m.values())}),
    "sparse tensor": _model(lambda m: {**m, "conv1.0.weight": m["conv1.0.weight"].to_sparse()}),
    "optimizer of another model": _set("optimizer", {"state": {}, "param_groups": [{"params": [0]}]}),
}


@pytest.mark.parametrize("kind", ODD_CHECKPOINTS)
def test_odd_checkpoint_contents_are_one_line(tmp_path, capsys, trained_run, kind):
    result, data_list = trained_run
    state = torch.load(result.checkpoint, weights_only=True)
    ODD_CHECKPOINTS[kind](state)
    odd = tmp_path / "odd.pt"
    torch.save(state, odd)
    run = tmp_path / "run"
    with pytest.raises(DgcnetError) as error:
        train(load_config(None, tiny_overrides(data_list, run, steps=3, **{"run.resume": odd})))
    assert str(error.value).startswith(f"{odd}: ") and "\n" not in str(error.value)
    assert not (run / "checkpoint_0000003.pt").exists()
    # convert reads only the weights: what they need must hold, and a failure writes nothing.
    status = main(["convert", str(odd), str(tmp_path / "out.pth"), "--to", "pth"])
    err = capsys.readouterr().err
    if status:
        assert err.count("\n") == 1 and f"{odd}: " in err
        assert not (tmp_path / "out.pth").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_resume_refuses_pickles_that_run_code_with_the_project_line(tmp_path, trained_run):
    class Payload:
        def __reduce__(self):
            return os.system, ("true",)

    result, data_list = trained_run
    evil = tmp_path / "evil.pt"
    torch.save({"format": "dgcnet-train-v1", "model": Payload()}, evil)
    with pytest.raises(DgcnetError) as error:
        train(load_config(None, tiny_overrides(data_list, tmp_path / "run", **{"run.resume": evil})))
    message = str(error.value)
    assert message.startswith(f"{evil}: refused: the pickle holds more than tensors") and "weights_only=False" not in message


@pytest.mark.parametrize("content", [b"\x80" + bytes(range(255, 0, -1)), b"\x80\x02garbage", b"PK\x03\x04junk", b""])
def test_garbage_is_not_a_checkpoint(tmp_path, trained_run, content):
    result, data_list = trained_run
    junk = tmp_path / "junk.pt"
    junk.write_bytes(content)
    with pytest.raises(DgcnetError, match=f"{junk}: not a checkpoint") as error:
        train(load_config(None, tiny_overrides(data_list, tmp_path / "run", **{"run.resume": junk})))
    assert "could run code" not in str(error.value)


def test_resume_with_num_steps_below_the_checkpoint_is_an_error(tmp_path, trained_run):
    import shutil

    result, data_list = trained_run
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    with pytest.raises(DgcnetError, match=r"checkpoint_0000002.pt: the checkpoint is at iteration 2, but "
                                          r"train.num_steps is 1"):
        train(load_config(None, tiny_overrides(data_list, run, steps=1, **{"run.resume": "auto"})))


def test_nan_guard_keeps_and_names_the_last_good_checkpoint(tmp_path, monkeypatch, trained_run):
    from tests.engine.test_train import nan_from_second_forward

    _, data_list = trained_run
    nan_from_second_forward(monkeypatch)
    run = tmp_path / "run"
    overrides = {"train.max_nonfinite_steps": 3, "run.save_every": 1, "run.keep": 1}
    with pytest.raises(DgcnetError, match=r"Last checkpoint: \S*checkpoint_0000001.pt\. "):
        train(load_config(None, tiny_overrides(data_list, run, steps=6, **overrides)))
    # Skipped steps wrote nothing, so pruning (keep 1) could not delete the good one.
    assert [p.name for p in run.glob("*.pt")] == ["checkpoint_0000001.pt"]
