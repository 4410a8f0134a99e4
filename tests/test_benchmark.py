import json

import pytest

from dgcnet.benchmark import known_peak_tflops
from dgcnet.cli import main
from dgcnet.models.complexity import complexity


def run_json(capsys, *args: str) -> dict:
    assert main(["benchmark", "--arch", "dgcnet_r18", "--device", "cpu", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_benchmark_reports_consistent_figures(capsys):
    r = run_json(capsys, "--size", "65x81", "--mode", "train", "--batch", "2", "--warmup", "1", "--iters", "2",
                 "--peak-tflops", "2.5")
    assert (r["mode"], r["batch"], r["iters"], r["size"]) == ("train", 2, 2, [65, 81])
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    assert r["images_per_s"] == pytest.approx(2 * 1000 / r["median_ms"])
    # A training step costs forward + backward (about three forwards) of both images.
    forward = complexity("dgcnet_r18", (65, 81)).forward_flops
    assert 2 * 2 * forward < r["flops_per_step"] < 2 * 4 * forward
    assert r["achieved_tflops"] == pytest.approx(r["flops_per_step"] / (r["median_ms"] / 1000) / 1e12)
    assert r["peak_share"] == pytest.approx(r["achieved_tflops"] / 2.5)
    assert r["peak_memory_mb"] > 50  # the whole process with torch loaded


def test_infer_benchmark_with_bf16_and_table_output(capsys):
    assert main(["benchmark", "--arch", "dgcnet_r18", "--device", "cpu", "--size", "33x33", "--mode", "infer",
                 "--amp", "bf16", "--channels-last", "--warmup", "0", "--iters", "1"]) == 0
    out = capsys.readouterr().out
    assert "dgcnet_r18 infer 33x33 batch 1" in out and "amp bf16, channels-last" in out
    assert "images/s" in out and "TFLOP/s achieved" in out
    assert "share of peak" not in out  # no peak known for a CPU unless given


def test_cuda_request_without_cuda_is_a_clean_error(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["benchmark", "--arch", "dgcnet_r18", "--device", "cuda", "--size", "33x33"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err


def test_known_gpu_peaks():
    # Dense datasheet figures: H100 SXM 989.4 bf16, H100 PCIe 756.5 bf16, A100 312 bf16 / 19.5 fp32.
    assert known_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert known_peak_tflops("NVIDIA H100 PCIe", "fp16") == 756.5
    assert known_peak_tflops("NVIDIA H200", "bf16") == 989.4
    assert known_peak_tflops("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert known_peak_tflops("Tesla V100-SXM2-32GB", "fp16") == 125.0
    assert known_peak_tflops("Some Other GPU", "bf16") is None
