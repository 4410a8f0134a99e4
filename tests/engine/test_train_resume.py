"""A run killed with SIGKILL and resumed with --resume auto equals the run without a stop."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from dgcnet.config import load_config
from dgcnet.engine.train import train
from tests.engine.test_train import make_dataset, tiny_overrides

STEPS = 4


def losses(run_dir):
    return {r["iteration"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def launch(overrides, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "dgcnet", "train", *overrides], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path):
    data_list = make_dataset(tmp_path / "data", n=3)
    # Dropout stays on (aux_dropout 0.1): its random stream must be restored too.
    common = {"run.log_every": 1, "run.save_every": 2, "run.seed": 3}

    # The stopped run: SIGKILL as soon as the first checkpoint exists (2 loader workers here,
    # none in the reference run: the samples must not depend on the worker count).
    stopped = tmp_path / "stopped"
    overrides = tiny_overrides(data_list, stopped, steps=STEPS, **common, **{"data.workers": 2})
    process = launch(overrides)
    deadline = time.monotonic() + 120
    while not (stopped / "checkpoint_0000002.pt").exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (stopped / f"checkpoint_{STEPS:07d}.pt").exists()
    # What a kill in the middle of writing the next checkpoint and a log line leaves behind.
    (stopped / ".checkpoint_0000004.pt.tmp").write_bytes(b"PK\x03\x04 partial")
    with open(stopped / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 3, "lo')

    resumed = launch(overrides + ["run.resume=auto"])
    out, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, out
    assert "resumed from" in out and "checkpoint_0000002.pt at iteration 2" in out
    assert not (stopped / ".checkpoint_0000004.pt.tmp").exists()
    assert sorted(p.name for p in stopped.glob("*.pt")) == ["checkpoint_0000002.pt", "checkpoint_0000004.pt"]

    # The reference: the same run in one go, in this process.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = train(load_config(None, tiny_overrides(data_list, tmp_path / "reference", steps=STEPS,
                                                            **common)))
    finally:
        torch.set_num_threads(threads)

    assert list(losses(stopped)) == list(range(1, STEPS + 1))
    assert losses(stopped) == losses(reference.run_dir)  # exactly, every iteration
    final = torch.load(stopped / f"checkpoint_{STEPS:07d}.pt", weights_only=True)
    expected = torch.load(reference.checkpoint, weights_only=True)
    for key, value in expected["model"].items():
        assert torch.equal(final["model"][key], value), key
    for a, b in zip(final["optimizer"]["state"].values(), expected["optimizer"]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert torch.equal(final["rng"]["ranks"][0]["torch"], expected["rng"]["ranks"][0]["torch"])


def test_resume_path_and_bad_checkpoint(tmp_path):
    from dgcnet.errors import DgcnetError

    data_list = make_dataset(tmp_path / "data", n=2)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DgcnetError, match="junk.pt: not a checkpoint"):
        train(load_config(None, tiny_overrides(data_list, tmp_path / "run", **{"run.resume": tmp_path / "junk.pt"})))
    with pytest.raises(DgcnetError, match="nothere.pt: no such checkpoint"):
        train(load_config(None, tiny_overrides(data_list, tmp_path / "run",
                                               **{"run.resume": tmp_path / "nothere.pt"})))
