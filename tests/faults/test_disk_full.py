"""A full disk (or a file size limit) while writing a checkpoint, converting, or saving
predictions: one line, no partial file, and the previous file intact."""
import shutil
import subprocess
import sys

import pytest
import torch

from dgcnet.cli import main
from dgcnet.engine.checkpoint import save_checkpoint
from dgcnet.errors import DgcnetError
from tests.faults.conftest import tiny_overrides


def leftovers(folder):
    return [p.name for p in folder.rglob(".*")]


def test_checkpoint_on_a_full_disk_keeps_the_previous_one(tmp_path, full_disk, trained_run):
    result, _ = trained_run
    state = torch.load(result.checkpoint, weights_only=True)
    target = tmp_path / "checkpoint_0000002.pt"
    shutil.copy(result.checkpoint, target)
    before = target.read_bytes()
    full_disk(100_000)
    with pytest.raises(DgcnetError) as error:
        save_checkpoint(state, target)
    assert str(error.value) == f"{target}: cannot write: No space left on device; nothing written, the previous file is intact"
    assert target.read_bytes() == before and not leftovers(tmp_path)


@pytest.mark.parametrize("to", ["dgcnet", "safetensors", "pth", "mindspore"])
def test_convert_on_a_full_disk(tmp_path, capsys, full_disk, release_weights, to):
    full_disk(10_000)
    assert main(["convert", str(release_weights), str(tmp_path / "out"), "--to", to]) == 1
    err = capsys.readouterr().err
    assert err == f"dgcnet convert: error: {tmp_path / 'out'}: cannot write: No space left on device; nothing written\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_predictions_on_a_full_disk(tmp_path, capsys, full_disk, release_weights, trained_run, command):
    _, data_list = trained_run
    out = tmp_path / "out"
    if command == "predict":
        argv = ["predict", str(data_list.parent / "img"), "--format", "color,trainids"]
    else:
        argv = ["eval", "--data-dir", str(data_list.parent), "--data-list", str(data_list), "--save-pred", "color"]
    full_disk(200)  # the first small PNG fits, the next ones do not
    status = main(argv + ["--restore-from", str(release_weights), "--output-dir", str(out), "--device", "cpu",
                          "--mode", "whole", "--workers", "0"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "cannot write: No space left on device" in err, err
    assert not leftovers(out)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs the resource module (RLIMIT_FSIZE)")
def test_training_under_a_file_size_limit_keeps_the_last_checkpoint(tmp_path, trained_run):
    result, data_list = trained_run
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    before = (run / "checkpoint_0000002.pt").read_bytes()
    # A checkpoint is a few MB; metrics and config lines are far below the limit.
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000)); "
            "from dgcnet.cli import main; sys.exit(main(sys.argv[1:]))")
    overrides = tiny_overrides(data_list, run, steps=3, **{"run.resume": "auto", "run.save_every": 1})
    process = subprocess.run([sys.executable, "-c", code, "train", *overrides], capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == 1, process.stdout + process.stderr
    assert process.stderr.count("\n") == 1 and "Traceback" not in process.stderr
    assert f"{run / 'checkpoint_0000003.pt'}: cannot write: File too large; nothing written" in process.stderr
    assert (run / "checkpoint_0000002.pt").read_bytes() == before
    assert not (run / "checkpoint_0000003.pt").exists() and not leftovers(run)
