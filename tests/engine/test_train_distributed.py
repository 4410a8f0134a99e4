"""Two processes (torchrun, gloo, CPU) train exactly like one process with the same global batch."""
import json
import os
import subprocess
import sys

import pytest
import torch

from dgcnet.config import load_config
from dgcnet.engine.train import train
from dgcnet.models import build_model
from tests.engine.test_train import make_dataset, tiny_overrides

STEPS = 2


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    data_list = make_dataset(tmp_path / "data", n=4)
    # Dropout off: each process draws its own masks (one seed per process), which one process
    # with batch 2 cannot reproduce. BatchNorm stays in: its statistics must cover both images.
    common = {"model.aux_dropout": 0.0, "run.save_every": STEPS}
    # In float64: float32 rounding differs between batch 1 and batch 2 convolutions, and exact
    # ties (zero padding, max-pool, ReLU) resolve either way, so float32 runs drift apart by ~1e-5
    # of the update per step; float64 shows that the computations are the same.
    launcher = tmp_path / "train_float64.py"
    launcher.write_text("import sys, torch\ntorch.set_default_dtype(torch.float64)\n"
                        "from dgcnet.cli import main\nsys.exit(main(['train', *sys.argv[1:]]))\n")
    two = tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(launcher), "--run_distribute", "1",
                          *tiny_overrides(data_list, two, steps=STEPS, **common)],
                         env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 process(es) x batch 1" in out.stdout
    assert out.stdout.count(f"iter = {STEPS} of {STEPS} completed") == 1  # only the main process logs

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    try:
        one = train(load_config(None, tiny_overrides(data_list, tmp_path / "one", steps=STEPS, **common,
                                                     **{"train.batch_size": 2})))
    finally:
        torch.set_default_dtype(torch.float32)
        torch.set_num_threads(threads)

    two_losses = [json.loads(line)["loss"] for line in (two / "metrics.jsonl").read_text().splitlines()]
    one_losses = [json.loads(line)["loss"] for line in one.metrics_path.read_text().splitlines()]
    assert two_losses == pytest.approx(one_losses, rel=1e-12)
    got = torch.load(two / f"checkpoint_{STEPS:07d}.pt", weights_only=True)
    expected = torch.load(one.checkpoint, weights_only=True)
    assert got["rng"]["world_size"] == 2 and len(got["rng"]["ranks"]) == 2
    assert not torch.equal(got["rng"]["ranks"][0]["torch"], got["rng"]["ranks"][1]["torch"])  # a seed per rank
    for key, value in expected["model"].items():
        if value.is_floating_point():
            assert got["model"][key].dtype == torch.float64
            torch.testing.assert_close(got["model"][key], value, rtol=1e-9, atol=1e-12, msg=key)
        else:
            assert torch.equal(got["model"][key], value), key
    # The weights really moved (seed 0 gives the initial weights), so the comparison is not trivial.
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    try:
        initial = build_model("dgcnet_r18").state_dict()
    finally:
        torch.set_default_dtype(torch.float32)
    for key in ("conv1.0.weight", "bn1.weight", "head.dualgcn.bn_adj.weight", "head.bottleneck.3.weight"):
        assert (expected["model"][key] - initial[key]).abs().max() > 1e-6, key
