"""CPU inference of one model by dgcnet and by the runtimes a deploying user would pick instead.

    pip install -e ".[bench]"          # onnxruntime and openvino
    python benchmarks/deploy_runtimes.py --arch dgcnet_r101 --size 512x1024 --threads 2
    python benchmarks/deploy_runtimes.py --arch dgcnet_r18 --size 832x832 --weights run/final.pt

Variants, each running the whole image once per round on the same synthetic street scene, all
fed the same normalised float32 NCHW input and giving stride-8 logits:
  eager          the model as built, NCHW, fp32, under torch.no_grad()  (the baseline)
  fast fp32      optimize_for_inference(model): what `dgcnet eval`/`predict` and dgcnet.predict run
  fast bf16      the same under torch.autocast("cpu", torch.bfloat16)
  onnxruntime    our plain ONNX export (`dgcnet export --onnx`), CPU provider, fp32
  openvino f32   the same ONNX file, OpenVINO CPU plugin with INFERENCE_PRECISION_HINT f32
  openvino       the same, OpenVINO's default precision (bf16 on CPUs with bf16 support)

A runtime that is not installed is left out with a note. Every variant gets --threads threads.
Variants alternate within each round, so load from other processes hits all alike; the table
gives the median and fastest round. Accuracy against eager: fp32 logits (max abs difference over
the largest logit), and the share of pixels whose argmax (logits upsampled to the image) equals
eager's. After the table, the median over rounds of each dgcnet variant's time divided by its
rival's in the same round. Without --weights the model has random weights with BatchNorm
statistics averaged over random batches; give trained weights for accuracy figures that mean
something.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgcnet.benchmark import calibrate_batchnorm, device_name  # noqa: E402
from dgcnet.cli.common import image_size  # noqa: E402
from dgcnet.data.synth import synth_scene  # noqa: E402
from dgcnet.data.transforms import normalize  # noqa: E402
from dgcnet.engine.heap import use_fast_heap  # noqa: E402
from dgcnet.models.fast import optimize_for_inference  # noqa: E402
from dgcnet.formats.load import load_model  # noqa: E402
from dgcnet.formats.onnx import export_onnx  # noqa: E402
from dgcnet.models import build_model, list_models  # noqa: E402


def torch_runner(net: torch.nn.Module, bf16: bool) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            return net(torch.from_numpy(x)).float().numpy()
    return run


def onnxruntime_runner(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x})[0]


def openvino_runner(path: Path, threads: int, precision: str | None) -> Callable[[np.ndarray], np.ndarray]:
    import openvino

    config = {"INFERENCE_NUM_THREADS": threads}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = openvino.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return lambda x: np.asarray(request.infer({0: x})[0], dtype=np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="dgcnet_r101", choices=list_models())
    parser.add_argument("--size", type=image_size, default=(512, 1024), help="image size HxW (default: 512x1024)")
    parser.add_argument("--weights", default=None, help="weights file (default: random, calibrated BatchNorm)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default: 5)")
    parser.add_argument("--threads", type=int, default=2, help="threads of every variant (default: 2)")
    parser.add_argument("--profile", action="store_true",
                        help="after the table, where the bf16 time goes: dgcnet's by operator (torch.profiler) "
                             "and by stage of the model (conv1 ... layer4, head), OpenVINO's default precision by "
                             "layer type and kernel and by stage (its performance counters), and both side by "
                             "side by part of the model (each stem convolution, residual block and head module)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # As `dgcnet eval` and `predict` run the fast path: process-wide, before any model loads.
    heap = use_fast_heap("cpu")

    if args.weights:
        model, weights = load_model(args.weights), args.weights
    else:
        torch.manual_seed(0)
        model = calibrate_batchnorm(build_model(args.arch), (args.size[0] // 2, args.size[1] // 2))
        weights = "random, BatchNorm statistics averaged over 2 random batches"
    image_np, _ = synth_scene(np.random.default_rng(0), *args.size)
    x = normalize(image_np, model.info.rgb)[None].numpy()

    fast_bf16 = optimize_for_inference(model)
    variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "eager fp32": torch_runner(model.eval(), False),
        "dgcnet fast fp32": torch_runner(optimize_for_inference(model), False),
        "dgcnet fast bf16": torch_runner(fast_bf16, True),
    }
    notes = []
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = Path(folder) / "model.onnx"
        export_onnx(model, onnx_path, args.size)
        versions = {"torch": torch.__version__}
        try:
            import onnxruntime
            variants["onnxruntime fp32"] = onnxruntime_runner(onnx_path, args.threads)
            versions["onnxruntime"] = onnxruntime.__version__
        except ImportError:
            notes.append("onnxruntime is not installed: left out (pip install -e '.[bench]')")
        try:
            import openvino
            variants["openvino f32"] = openvino_runner(onnx_path, args.threads, "f32")
            variants["openvino default"] = openvino_runner(onnx_path, args.threads, None)
            versions["openvino"] = openvino.__version__
        except ImportError:
            notes.append("openvino is not installed: left out (pip install -e '.[bench]')")

        outputs, first = {}, {}
        for name, run in variants.items():  # warm-up round (primitive creation, graph compilation)
            start = time.perf_counter()
            outputs[name] = run(x)
            first[name] = time.perf_counter() - start
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, run in variants.items():
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
        load_after = os.getloadavg()
        profiles, parts = bf16_profiles(variants["dgcnet fast bf16"], fast_bf16, onnx_path, x, args.threads) \
            if args.profile else ([], {})

    def full_argmax(logits: np.ndarray) -> torch.Tensor:
        return F.interpolate(torch.from_numpy(logits), size=args.size, mode="bilinear", align_corners=True).argmax(1)

    reference = outputs["eager fp32"]
    reference_argmax = full_argmax(reference)
    h, w = args.size
    print(f"{args.arch} whole image {h}x{w}, weights: {weights}")
    print(f"{device_name(torch.device('cpu'))}, {os.cpu_count()} cores, {args.threads} threads per variant, "
          f"{', '.join(f'{k} {v}' for k, v in versions.items())}, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load_before[0]:.1f} -> "
          f"{load_after[0]:.1f}")
    for note in notes:
        print(f"note: {note}")
    print(f"process heap (as the CLI sets it for the fast path, shared by every variant): {heap}")
    print(f"{args.rounds} rounds after one warm-up round, variants alternating within each round\n")
    print("| variant | median s | fastest s | eager / variant (median) | max logit difference | argmax agreement |")
    print("|---|---|---|---|---|---|")
    for name in variants:
        out = outputs[name]
        error = float(np.abs(out - reference).max() / np.abs(reference).max())
        agreement = float((full_argmax(out) == reference_argmax).double().mean())
        median = statistics.median(times[name])
        print(f"| {name} | {median:.3f} | {min(times[name]):.3f} | "
              f"{statistics.median(times['eager fp32']) / median:.2f}x | {error:.1e} | {100 * agreement:.3f}% |")
    # Paired per round (the two ran seconds apart), steadier than the medians where the machine's
    # speed drifts between rounds.
    pairs = [(ours, theirs) for ours, theirs in (("dgcnet fast fp32", "onnxruntime fp32"),
                                                  ("dgcnet fast fp32", "openvino f32"),
                                                  ("dgcnet fast bf16", "openvino default")) if theirs in times]
    if pairs:
        print("\nmedian of the per-round ratios (below 1: dgcnet faster): " + ", ".join(
            f"{ours} / {theirs} {statistics.median(a / b for a, b in zip(times[ours], times[theirs])):.3f}"
            for ours, theirs in pairs))
    for title, shares in profiles:
        total = sum(shares.values())
        print(f"\n{title}: {1000 * total:.0f} ms in all; " + ", ".join(
            f"{name} {1000 * seconds:.1f} ms ({100 * seconds / total:.1f}%)"
            for name, seconds in sorted(shares.items(), key=lambda kv: -kv[1])[:8]))
    if parts:
        print("\nbf16 by part of the model, ms (dgcnet: wall time of the module; openvino: its layers' times)\n")
        print("| part | dgcnet | openvino | difference |")
        print("|---|---|---|---|")
        for name, (ours, theirs) in parts.items():
            if max(ours, theirs) < 5e-6:  # layers OpenVINO fused into others, e.g. the stem's ReLUs
                continue
            print(f"| {name} | {1000 * ours:.2f} | {1000 * theirs:.2f} | {1000 * (ours - theirs):+.2f} |")
    return 0


STAGES = ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "head")  # the model's top-level modules
WHOLE_STAGES = ("maxpool",)  # stages that are one part


def module_times(run: Callable[[], object], groups: dict[str, list[torch.nn.Module]]) -> tuple[dict[str, float], float]:
    """Wall seconds spent in each group of modules during one ``run()`` (forward hooks; a module
    inside another is timed in both), and the seconds of the whole run."""
    times: dict[str, float] = {}
    started: dict[int, float] = {}

    def before(module: torch.nn.Module, args: tuple) -> None:
        started[id(module)] = time.perf_counter()

    def timed_into(name: str) -> Callable[..., None]:
        def after(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            times[name] = times.get(name, 0.0) + time.perf_counter() - started.pop(id(module))
        return after

    hooks = [hook for name, modules in groups.items() for module in modules
             for hook in (module.register_forward_pre_hook(before), module.register_forward_hook(timed_into(name)))]
    start = time.perf_counter()
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return times, time.perf_counter() - start


def rerun_times(run: Callable[[], object], stages: dict[str, torch.nn.Module]) -> dict[str, float]:
    """Wall seconds of each stage run a second time right after its own call in one ``run()``,
    on the same input (the stages leave their input as it was): its feature maps then land in
    memory its first run has just written and freed, where in the model's run they land in blocks
    last written one forward pass before."""
    times: dict[str, float] = {}
    rerunning = False

    def again(name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            nonlocal rerunning
            if rerunning:
                return
            rerunning = True
            start = time.perf_counter()
            try:
                module(*args)
            finally:
                rerunning = False
            times[name] = time.perf_counter() - start
        return hook

    hooks = [module.register_forward_hook(again(name)) for name, module in stages.items()]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return times


def model_parts(net: torch.nn.Module) -> dict[str, list[torch.nn.Module]]:
    """The parts the profile compares, by the name OpenVINO's layers carry: each convolution of
    the stem, the max pooling, each residual block, and each module of the head (the classifier
    counted with the bottleneck it belongs to in the ONNX graph)."""
    from dgcnet.models.packed import PackedConv2d

    model, parts = net.model, {}
    for stage in STAGES:
        module = getattr(model, stage, None)
        if module is None:
            continue
        if stage in WHOLE_STAGES:
            parts[stage] = [module]
        elif stage == "conv1":
            parts.update((f"{stage}.{name}", [m]) for name, m in module.named_children() if isinstance(m, PackedConv2d))
        else:
            parts.update((f"{stage}.{name}", [m]) for name, m in module.named_children())
    if "head.classifier" in parts:
        parts["head.bottleneck (and classifier)"] = parts.pop("head.bottleneck") + parts.pop("head.classifier")
    return parts


def openvino_part(node_name: str) -> str:
    """The part of the model an OpenVINO layer belongs to, by its ONNX node name
    ("/layer4/layer4.1/conv2/Conv" -> "layer4.1", "/head/dualgcn/MatMul" -> "head.dualgcn")."""
    if not node_name.startswith("/"):  # layers OpenVINO adds, e.g. the reorder of the input
        return "outside the parts"
    scopes = node_name.strip("/").split("/")[:-1]  # the last one names the operator
    if not scopes:
        return "outside the parts"
    if len(scopes) == 1:  # the max pooling, or e.g. the head's concatenation
        if scopes[0] not in STAGES:
            return "outside the parts"
        return scopes[0] if scopes[0] in WHOLE_STAGES else f"{scopes[0]} (between its parts)"
    if scopes[0] == "head":
        return "head.bottleneck (and classifier)" if scopes[1] == "bottleneck" else f"head.{scopes[1]}"
    return scopes[1]


def bf16_profiles(ours: Callable[[np.ndarray], np.ndarray], net: torch.nn.Module, onnx_path: Path, x: np.ndarray,
                  threads: int) -> tuple[list[tuple[str, dict[str, float]]], dict[str, tuple[float, float]]]:
    """Seconds of one dgcnet bf16 pass by operator, by convolution kernel size and by stage of
    the model, and of one OpenVINO pass at its default precision by layer type and kernel and by
    stage (when installed); and, with OpenVINO, (dgcnet's, OpenVINO's) seconds by ``model_parts``."""
    from torch.profiler import profile

    from dgcnet.models.packed import PackedConv2d

    with profile() as prof:
        ours(x)
    profiles = [("dgcnet fast bf16, by operator (self CPU time)",
                 {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()})]
    convs = [m for m in net.modules() if isinstance(m, PackedConv2d)]
    by_kernel, _ = module_times(lambda: ours(x), {
        f"{'x'.join(map(str, size))} convolutions": [m for m in convs if m.base.kernel_size == size]
        for size in dict.fromkeys(m.base.kernel_size for m in convs)})
    # One pass timing the stages and their parts: what a stage spends outside its parts (layer4's
    # split into phase grids and merge, say) is a part of its own.
    stages = {name: [getattr(net.model, name)] for name in STAGES if hasattr(net.model, name)}
    parts = model_parts(net)
    times, total = module_times(lambda: ours(x), {**stages, **parts})
    by_stage = {name: times.get(name, 0.0) for name in stages}
    by_stage["outside the stages (input, output)"] = total - sum(by_stage.values())
    by_part: dict[str, float] = {}
    for stage in stages:
        inside = [name for name in parts if name.split(".")[0] == stage]
        by_part.update((name, times.get(name, 0.0)) for name in inside)
        if stage not in WHOLE_STAGES:
            by_part[f"{stage} (between its parts)"] = by_stage[stage] - sum(by_part[name] for name in inside)
    by_part["outside the parts"] = by_stage["outside the stages (input, output)"]
    rerun = rerun_times(lambda: ours(x), {name: modules[0] for name, modules in stages.items()})
    if by_kernel:
        profiles.append(("dgcnet fast bf16, convolutions by kernel size (wall time)", by_kernel))
    try:
        import openvino
    except ImportError:
        return profiles + [("dgcnet fast bf16, by stage (wall time)", by_stage),
                           ("dgcnet fast bf16, by stage, each run again at once on the same input", rerun)], {}
    compiled = openvino.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                    "PERF_COUNT": True})
    request = compiled.create_infer_request()
    request.infer({0: x})
    request.infer({0: x})  # the second pass, after the first one's primitive creation
    shares: dict[str, float] = {}
    ov_stages: dict[str, float] = {}
    ov_parts: dict[str, float] = {}
    for info in request.profiling_info:
        key = f"{info.node_type} ({info.exec_type})"
        shares[key] = shares.get(key, 0.0) + info.real_time.total_seconds()
        # ONNX node names carry the module path: "/layer4/layer4.1/conv2/Conv".
        part = openvino_part(info.node_name)
        ov_parts[part] = ov_parts.get(part, 0.0) + info.real_time.total_seconds()
        stage = part.split(".")[0].split(" ")[0]  # "layer4.1" and "layer4 (between its parts)": layer4
        stage = stage if stage in STAGES else "outside the stages (input, output)"
        ov_stages[stage] = ov_stages.get(stage, 0.0) + info.real_time.total_seconds()
    profiles.append(("openvino default, by layer type (kernel)", shares))
    profiles.append(("dgcnet fast bf16, by stage (wall time)", by_stage))
    profiles.append(("dgcnet fast bf16, by stage, each run again at once on the same input", rerun))
    profiles.append(("openvino default, by stage (its layers' times)", ov_stages))
    return profiles, {name: (by_part.get(name, 0.0), ov_parts.get(name, 0.0)) for name in {**by_part, **ov_parts}}


if __name__ == "__main__":
    sys.exit(main())
