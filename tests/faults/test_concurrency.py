"""Two trainings on one run folder: the second stops at once naming the folder and the first
process; a lock left by a killed run does not block --resume auto."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from dgcnet.config import load_config
from dgcnet.engine.runlock import LOCK_NAME, RunLock
from dgcnet.engine.train import train
from dgcnet.errors import DgcnetError
from tests.faults.conftest import tiny_overrides


def launch_train(overrides):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "dgcnet", "train", *overrides], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path, process, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.slow
def test_second_training_on_a_folder_in_use_stops_at_once(tmp_path, trained_run):
    _, data_list = trained_run
    run = tmp_path / "run"
    first = launch_train(tiny_overrides(data_list, run, steps=10000, **{"run.save_every": 1}))
    try:
        wait_for(run / "checkpoint_0000001.pt", first)
        for resume in (None, "auto"):
            extra = {"run.resume": resume} if resume else {}
            with pytest.raises(DgcnetError) as error:
                train(load_config(None, tiny_overrides(data_list, run, steps=3, **extra)))
            message = str(error.value)
            assert message.startswith(f"{run}: in use by another training (process {first.pid} on "
                                      f"{socket.gethostname()}")
        assert (run / LOCK_NAME).read_text().split()[0] == str(first.pid)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The killed run left its lock behind: it is stale, and --resume auto continues.
    assert (run / LOCK_NAME).exists()
    result = train(load_config(None, tiny_overrides(data_list, run, steps=2, **{"run.resume": "auto"})))
    assert result.checkpoint.is_file()
    assert not (run / LOCK_NAME).exists()  # released at the end


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("content", [
    lambda: f"{_dead_pid()} {socket.gethostname()} 1\n",           # a killed run
    lambda: f"{os.getpid()} {socket.gethostname()} 1\n",           # its pid reused by a later process
    lambda: "not a pid\n",
])
def test_stale_locks_do_not_block(tmp_path, content):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(content())
    with RunLock(run):
        assert (run / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    assert not (run / LOCK_NAME).exists()


def test_live_locks_block(tmp_path):
    run = tmp_path / "run"
    with RunLock(run):
        with pytest.raises(DgcnetError, match=f"{run}: in use by another training \\(process {os.getpid()}"):
            RunLock(run).acquire()
    run.mkdir()
    (run / LOCK_NAME).write_text("1234 another-host 99\n")  # cannot be checked from here: assumed running
    with pytest.raises(DgcnetError, match="process 1234 on another-host"):
        RunLock(run).acquire()


def test_a_failed_start_leaves_no_folder(tmp_path, trained_run):
    _, data_list = trained_run
    with pytest.raises(DgcnetError):
        train(load_config(None, tiny_overrides(data_list, tmp_path / "run", **{"model.restore_from": tmp_path / "no.pth"})))
    assert not (tmp_path / "run").exists()


def test_import_works_without_fcntl_and_resource():
    code = ("import sys; sys.modules['fcntl'] = None; sys.modules['resource'] = None\n"
            "import dgcnet, dgcnet.cli, dgcnet.engine.runlock; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
