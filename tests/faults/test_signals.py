"""SIGTERM (what schedulers send before killing) and Ctrl-C stop training cleanly with a
checkpoint of the current iteration; --resume auto then ends with the weights of an
uninterrupted run."""
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
from tests.faults.conftest import tiny_overrides

STEPS = 5


def launch(overrides):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "dgcnet", "train", *overrides], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group, as under a scheduler


def logged_iterations(run):
    path = run / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return max((r["iteration"] for r in lines), default=0)


@pytest.mark.slow
@pytest.mark.parametrize("signum,to_group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_signal_stops_with_a_checkpoint_and_resume_equals_an_uninterrupted_run(tmp_path, trained_run, signum,
                                                                               to_group):
    _, data_list = trained_run
    common = {"run.log_every": 1, "run.save_every": 100, "run.seed": 3}  # no periodic checkpoint before the end
    run = tmp_path / "stopped"
    overrides = tiny_overrides(data_list, run, steps=STEPS, **common, **{"data.workers": 2})
    process = launch(overrides)
    deadline = time.monotonic() + 180
    while logged_iterations(run) < 1:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # Ctrl-C in a terminal reaches the whole process group, loader workers included.
    (os.killpg if to_group else os.kill)(process.pid, signum)
    out, _ = process.communicate(timeout=180)
    assert process.returncode == 128 + signum, out
    stopped_at = int(out.split("after iteration ")[1].split(";")[0])
    assert 1 <= stopped_at < STEPS
    assert f"stopped by {signal.Signals(signum).name} after iteration {stopped_at}; last checkpoint: " in out
    assert "Traceback" not in out
    assert [p.name for p in run.glob("*.pt")] == [f"checkpoint_{stopped_at:07d}.pt"]
    assert not (run / ".lock").exists()

    resumed = launch(overrides + ["run.resume=auto"])
    out, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, out
    assert f"at iteration {stopped_at}" in out

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = train(load_config(None, tiny_overrides(data_list, tmp_path / "reference", steps=STEPS, **common)))
    finally:
        torch.set_num_threads(threads)
    final = torch.load(run / f"checkpoint_{STEPS:07d}.pt", weights_only=True)
    expected = torch.load(reference.checkpoint, weights_only=True)
    for key, value in expected["model"].items():
        assert torch.equal(final["model"][key], value), key


def test_signal_handlers_are_restored_after_training(trained_run, tmp_path):
    _, data_list = trained_run
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    train(load_config(None, tiny_overrides(data_list, tmp_path / "run", steps=1)))
    assert {s: signal.getsignal(s) for s in before} == before
