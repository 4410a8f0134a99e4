import json
import subprocess
import sys
from pathlib import Path

import pytest

from dgcnet.benchmark import known_peak_tflops
from dgcnet.cli import main
from dgcnet.models.complexity import complexity


def run_json(capsys, *args: str) -> dict:
    assert main(["benchmark", "--arch", "dgcnet_r18", "--device", "cpu", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_train_benchmark_reports_consistent_figures(capsys):
    r = run_json(capsys, "--size", "65x65", "--mode", "train", "--batch", "1", "--warmup", "0", "--iters", "2",
                 "--peak-tflops", "2.5")
    assert (r["mode"], r["batch"], r["iters"], r["size"]) == ("train", 1, 2, [65, 65])
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    assert r["images_per_s"] == pytest.approx(1000 / r["median_ms"])
    # A training step costs forward + backward: about three forwards.
    forward = complexity("dgcnet_r18", (65, 65)).forward_flops
    assert 2 * forward < r["flops_per_step"] < 4 * forward
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


@pytest.mark.slow  # about a minute on 2 cores
def test_gpu_check_dry_run(tmp_path):
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, str(root / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny",
                    "--skip-compile", "--out", str(tmp_path)], check=True, capture_output=True, cwd=root)
    results = json.loads((tmp_path / "gpu_check.json").read_text())["results"]
    assert not [r for r in results if "error" in r or "note" in r]
    checks = {label: r for r in results if r["stage"] == "check"
              for label in ("fp32 (TF32 off)", "bf16 autocast") if r["setting"].endswith(label)}
    assert checks["fp32 (TF32 off)"]["rel_error"] < 1e-4
    assert 0.5 < checks["bf16 autocast"]["argmax_agreement"] <= 1
    train = [r for r in results if r["stage"] == "train"]
    assert [r["batch"] for r in train] == [1, 2, 3] and all(r["images_per_s"] > 0 for r in train)
    evals = [r for r in results if r["stage"] == "eval"]
    assert len(evals) == 2 and all(r["val_projection_s"] == pytest.approx(500 / r["images_per_s"]) for r in evals)
    profile = [r for r in results if r["stage"] == "profile"]
    assert len(profile) == 1 and profile[0]["step_ms"] > 0
    assert 0 < sum(profile[0]["shares"].values()) <= 1 + 1e-9
    convs = profile[0]["conv_shapes"]
    assert any(name.startswith("fwd [3, 512, 9, 9] x [512, 512, 3, 3]") for name in convs)
    assert any(name.startswith("bwd [3, 512, 9, 9] x [512, 512, 3, 3]") for name in convs)
    assert 0 < sum(convs.values()) <= 1 + 1e-9
    engine = [r for r in results if r["stage"] == "engine"]
    assert len(engine) == 2 and all(r["images_per_s"] == pytest.approx(2000 / r["ms_per_step"]) for r in engine)
    assert "crops resized in the loader" in engine[0]["setting"] and "on the training device" in engine[1]["setting"]
    crops = [r for r in results if r["stage"] == "crops"]
    assert len(crops) == 1 and crops[0]["labels_equal"] and crops[0]["max_abs_difference"] < 1e-4
    table = (tmp_path / "gpu_check.md").read_text()
    assert table.count("\n| train |") == 3 and table.count("\n| eval |") == 2
    assert table.count("\n| profile |") == 1 and table.count("\n| engine |") == 2


def test_data_benchmark_compares_files_and_prepared_store(tmp_path, capsys):
    from dgcnet.data.prepare import prepare
    from dgcnet.data.synth import write_synth

    write_synth(tmp_path, train=2, val=0, size=(32, 64), seed=0)
    args = ["benchmark", "--mode", "data", "--data-dir", str(tmp_path), "--data-list", str(tmp_path / "train.txt"),
            "--workers", "0", "--iters", "3", "--batch", "2", "--crop", "24x40"]
    assert main(args + ["--compare"]) == 1  # no store yet
    assert "--compare needs a prepared store" in capsys.readouterr().err
    prepare(tmp_path, tmp_path / "train.txt")
    assert main(args + ["--json", "--compare"]) == 0
    files, store = json.loads(capsys.readouterr().out)
    assert "decoding the image files" in files["source"] and "prepared store" in store["source"]
    for r in (files, store):
        assert (r["samples"], r["batch"], r["crop"], r["image_size"]) == (6, 2, [24, 40], [32, 64])
        assert r["cpu_ms_per_sample"] == pytest.approx(sum(r["phase_ms"].values()))
        assert list(r["phase_ms"]) == ["read", "decode", "augment", "collate"]
    assert files["store_bytes"] is None and store["store_bytes"] > 2 * 32 * 64 * 4
    assert files["phase_ms"]["decode"] > 0 and store["phase_ms"]["decode"] < files["phase_ms"]["decode"]
    assert files["resize_ms"] is None and store["resize_ms"] is None  # auto on the CPU: in the loader
    assert main(args) == 0  # auto: the store, as a table
    out = capsys.readouterr().out
    assert "training samples from prepared store" in out and "per CPU core" in out and "prepared store" in out
    # Resized on the device: the loader only cuts windows, the finishing is timed apart.
    assert main(args + ["--json", "--compare", "--resize-on", "device"]) == 0
    files, windows = json.loads(capsys.readouterr().out)
    assert files["resize_ms"] is None and windows["resize_ms"] > 0  # today's path against the windows
    assert windows["cpu_ms_per_sample"] == pytest.approx(sum(windows["phase_ms"].values()))


def test_deploy_profile_parts_cover_the_onnx_graph(tmp_path):
    """`deploy_runtimes.py --profile` matches OpenVINO's layers to dgcnet's modules by the ONNX node
    names: every convolution must land in a part the fast model times, and every part must get one."""
    import importlib.util

    import onnx
    import torch

    from dgcnet.formats.onnx import export_onnx
    from dgcnet.models import build_model
    from dgcnet.models.fast import optimize_for_inference

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "deploy_runtimes.py"
    spec = importlib.util.spec_from_file_location("deploy_runtimes", script)
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)

    torch.manual_seed(0)
    model = build_model("dgcnet_r18").eval()
    parts = deploy.model_parts(optimize_for_inference(model))
    export_onnx(model, tmp_path / "model.onnx", (64, 64))
    nodes = onnx.load(str(tmp_path / "model.onnx")).graph.node

    conv_parts = {deploy.openvino_part(n.name) for n in nodes if n.op_type == "Conv"}
    assert conv_parts == set(parts) - {"maxpool"}
    assert {deploy.openvino_part(n.name) for n in nodes if n.op_type == "MaxPool"} == {"maxpool"}
    between = {f"{stage} (between its parts)" for stage in deploy.STAGES}
    # The stem's ReLUs are modules of their own in the ONNX graph; the fast path and OpenVINO both
    # fuse them into the convolutions before them.
    fused = {n.name for n in nodes if n.op_type == "Relu" and n.name.startswith("/conv1/")}
    assert {deploy.openvino_part(n.name) for n in nodes if n.name not in fused} <= (
        set(parts) | between | {"outside the parts"})
    assert {"conv1.0", "layer1.0", "layer4.1", "head.dualgcn", "head.bottleneck (and classifier)"} <= set(parts)
