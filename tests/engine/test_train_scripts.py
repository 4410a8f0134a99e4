"""The port-compatible training script, on the CPU with a tiny run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dgcnet.models import build_model
from tests.engine.test_train import make_dataset

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.slow
def test_standalone_script_falls_back_to_cpu_and_writes_the_port_names(tmp_path):
    data_list = make_dataset(tmp_path / "data", n=2)
    backbone = {k: v for k, v in build_model("dgcnet_r18").state_dict().items() if not k.startswith(("head.", "dsn."))}
    torch.save(backbone, tmp_path / "resnet18-deep.pth")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(["bash", str(SCRIPTS / "run_standalone_gpu_train.sh"), str(data_list.parent), str(data_list),
                          str(tmp_path / "resnet18-deep.pth"),
                          "--arch", "dgcnet_r18", "--input_size", "65", "--num_steps", "1", "--workers", "0",
                          "--ohem_keep", "1000"], cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "warning: no GPU found, training on the CPU" in out.stderr
    log = (work / "train_1p.log").read_text()
    assert "warning: no GPU found" in log and "restore_from" in log and "loaded" in log
    assert "iter = 1 of 1 completed, loss = " in log
    assert (work / "dgc_832_1p" / "checkpoint_0000001.pt").is_file()
    assert "input_size:\n  - 65\n  - 65" in (work / "dgc_832_1p" / "config.yaml").read_text()


def test_distributed_scripts_launch_torchrun_with_the_port_names(tmp_path):
    # A stand-in python records the command line it is given (and reports no GPU).
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\n[ "$1" = -c ] && exit 1\necho "$@" >> "$CALLS"\n')
    fake.chmod(0o755)
    for n in (2, 8):
        work = tmp_path / f"work{n}"
        work.mkdir()
        calls = tmp_path / f"calls{n}"
        env = dict(os.environ, PYTHON=str(fake), CALLS=str(calls))
        out = subprocess.run(["bash", str(SCRIPTS / f"run_distributed_gpu_train{n}p.sh"), "D", "L", "none", "--seed", "3"],
                             cwd=work, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"training {n} CPU processes" in out.stderr
        command = calls.read_text().split()
        assert command[:6] == ["-m", "torch.distributed.run", f"--nproc_per_node={n}", "-m", "dgcnet", "train"]
        assert "--run_distribute" in command and "--restore_from" not in command
        assert command[command.index("--save_dir") + 1] == f"./dgc_832_{n}p"
        assert command[-2:] == ["--seed", "3"]
        assert (work / f"train_{n}p.log").is_file() and (work / f"dgc_832_{n}p").is_dir()


def test_scripts_print_usage_without_arguments():
    for name in ("run_standalone_gpu_train.sh", "run_distributed_gpu_train2p.sh", "run_distributed_gpu_train8p.sh"):
        out = subprocess.run(["bash", str(SCRIPTS / name)], capture_output=True, text=True)
        assert out.returncode == 2 and f"usage: bash {SCRIPTS / name} DATA_DIR DATA_LIST RESTORE_FROM" in out.stderr
