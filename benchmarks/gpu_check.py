"""GPU check in one call: logits against the CPU, training images/s at 832x832, sliding-window
evaluation images/s at 1024x2048, and last, if time is left, training through the engine with
data loading; one markdown table (and a JSON) at the end.

    PYTHONPATH=. python3 benchmarks/gpu_check.py --device cuda --out results/
    PYTHONPATH=. python3 benchmarks/gpu_check.py --device cpu --tiny   # dry run of every stage

Every stage is guarded, so one failure keeps the others; no stage starts once ``--budget-s`` has
passed, and the compiled-training stage runs in a child process that is stopped at the budget.
The tables are rewritten after every stage, so a run stopped from outside keeps what it measured.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgcnet.benchmark import benchmark, train_step  # noqa: E402
from dgcnet.models.fast import optimize_for_inference  # noqa: E402
from dgcnet.engine.inference import default_stride, infer_logits, tile_grid  # noqa: E402
from dgcnet.models import build_model  # noqa: E402

# Goals on one H100: the 480k-image recipe (60k iterations x 8 images) in under 2.3 hours,
# and the 500 Cityscapes val images by the sliding-window protocol in under 60 s.
TRAIN_GOAL_IMAGES_PER_S = 60.0
VAL_IMAGES = 500
VAL_GOAL_S = 60.0
# torch.compile of the R101 training step (forward + backward) takes one to three minutes.
MIN_COMPILE_S = 90


def settings(tiny: bool) -> dict:
    if tiny:  # dgcnet_r18 at tiny sizes: runs every stage end to end on a CPU in seconds
        return dict(arch="dgcnet_r18", check_size=(64, 128), train_size=(65, 65), batches=(2, 3),
                    eval_size=(129, 257), tile=97, warmup=1, iters=2, eval_images=2,
                    engine_image_size=(96, 192), engine_steps=4, engine_log_every=1, crop_epochs=3)
    return dict(arch="dgcnet_r101", check_size=(256, 512), train_size=(832, 832), batches=(8, 16, 24),
                eval_size=(1024, 2048), tile=832, warmup=3, iters=10, eval_images=6,
                engine_image_size=(1024, 2048), engine_steps=30, engine_log_every=5, crop_epochs=8)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def engine_config(root: Path, arch: str, size: tuple[int, int], batch: int, steps: int, device: torch.device,
                  overrides: list[tuple[str, object]]):
    """A training-engine configuration on the synthetic data under ``root / "data"``."""
    from dgcnet import load_config

    return load_config(overrides=[
        ("model.arch", arch), ("data.data_dir", str(root / "data")),
        ("data.data_list", str(root / "data" / "train.txt")), ("data.input_size", size),
        ("train.batch_size", batch), ("train.num_steps", steps), ("run.save_dir", str(root / "run")),
        ("run.device", device.type), ("run.save_every", steps), *overrides])


def trained_r18(device: torch.device, tiny: bool) -> torch.nn.Module:
    """dgcnet_r18 trained briefly on synthetic scenes, on the GPU. Random weights do not do for a
    logit check: in a randomly initialised deep network with the SpatialGCN softmax every rounding
    difference grows layer by layer, so CPU and GPU disagree by design, not by a bug."""
    from dgcnet import train
    from dgcnet.data.synth import write_synth
    from dgcnet.formats.load import load_model

    root = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    write_synth(root / "data", train=8 if tiny else 64, val=1, size=(128, 256), seed=0)
    config = engine_config(root, "dgcnet_r18", (128, 128), 8, 4 if tiny else 150, device, [
        ("data.scale", False), ("data.workers", 2), ("train.lr", 0.05), ("loss.ohem_min_kept", 5000),
        ("run.log_every", 50)])
    return load_model(train(config).checkpoint, device="cpu")


def engine_data(cfg: dict, batch: int) -> Path:
    """Full-size synthetic PNGs for the engine stages, with a prepared store beside them."""
    from dgcnet.data.prepare import prepare
    from dgcnet.data.synth import write_synth

    root = Path(tempfile.mkdtemp(prefix="gpu_check_engine_"))
    write_synth(root / "data", train=2 * batch, val=0, size=cfg["engine_image_size"], seed=0)
    prepare(root / "data", root / "data" / "train.txt")
    return root


# Training data paths of the engine stage: (data.prepared, data.resize_on, description).
ENGINE_DATA = {
    "files": ("none", "loader", "decoding the PNGs, crops resized in the loader"),
    "store": ("auto", "device", "prepared store, crops resized on the training device"),
}


def stage_engine(cfg: dict, device: torch.device, batch: int, root: Path, data: str) -> dict:
    """Training through the engine, data loading included: full-size synthetic images, the
    recipe's augmentation, loader workers as the engine chooses them, bf16, channels-last,
    compile off. images/s from the median logged step time after the first interval (cuDNN's
    search); the share of the step spent waiting for the loader from the run's metrics."""
    from dgcnet import train

    prepared, resize_on, described = ENGINE_DATA[data]
    steps, every = cfg["engine_steps"], cfg["engine_log_every"]
    config = engine_config(root, cfg["arch"], cfg["train_size"], batch, steps, device, [
        ("train.amp", "bf16"), ("train.channels_last", True), ("run.log_every", every),
        ("run.save_dir", str(root / f"run_{data}")), ("data.prepared", prepared), ("data.resize_on", resize_on)])
    result = train(config)
    records = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    middle = (len(records) - 1) // 2
    step_s = sorted(r["seconds_per_iter"] for r in records[1:])[middle]
    height, width = cfg["engine_image_size"]
    return dict(stage="engine", setting=f"{cfg['arch']} {cfg['train_size'][0]}x{cfg['train_size'][1]} batch {batch} "
                                        f"bf16 channels-last compile off, {height}x{width} images, {described}, "
                                        f"{steps} iterations, {config.data.workers or 'default'} loader workers",
                images_per_s=batch / step_s, ms_per_step=step_s * 1000, peak_memory_mb=peak_memory_mb(device))


def stage_crops(cfg: dict, device: torch.device, root: Path) -> dict:
    """Training crops resized on the GPU from the loader's uint8 windows against the crops the
    loader resizes on the CPU, over many draws: labels must be equal, images equal within float
    rounding."""
    from dgcnet.data import SegmentationDataset
    from dgcnet.data.dataset import collate

    data = root / "data"
    kwargs = dict(train=True, crop_size=cfg["train_size"], seed=1, prepared="auto")
    cpu = SegmentationDataset(data, data / "train.txt", **kwargs)
    gpu = SegmentationDataset(data, data / "train.txt", resize_on_device=True, **kwargs)
    worst, crops, labels_equal = 0.0, 0, True
    for epoch in range(cfg["crop_epochs"]):
        cpu.set_epoch(epoch)
        gpu.set_epoch(epoch)
        expected = collate([cpu[i] for i in range(len(cpu))])
        windows = collate([gpu[i] for i in range(len(gpu))])
        images = windows[0].images(gpu.augment, device).cpu()
        worst = max(worst, (images - expected[0]).abs().max().item())
        labels_equal &= torch.equal(windows[1], expected[1])
        crops += len(cpu)
    return dict(stage="crops", setting=f"{crops} training crops of {cfg['train_size'][0]}x{cfg['train_size'][1]} "
                                       "resized on the GPU vs in the loader", max_abs_difference=worst,
                labels_equal=labels_equal)


def stage_check(cfg: dict, device: torch.device) -> list[dict]:
    """GPU logits (fast inference path) against CPU fp32 logits of the plain model, same trained
    weights, on synthetic street scenes."""
    from dgcnet.data.synth import synth_scene
    from dgcnet.data.transforms import normalize

    cpu_model = trained_r18(device, cfg["arch"] != "dgcnet_r101")
    rng = np.random.default_rng(5)
    height, width = cfg["check_size"]
    image = torch.stack([normalize(synth_scene(rng, height, width)[0]) for _ in range(4)])
    with torch.no_grad():
        reference = cpu_model(image)
    reference_argmax = reference.argmax(1)
    fast = optimize_for_inference(copy.deepcopy(cpu_model).to(device))
    rows = []
    for label, amp, tf32 in (("fp32 (TF32 off)", "off", False), ("fp32 (TF32 on, the default)", "off", True),
                             ("bf16 autocast", "bf16", None)):
        torch.backends.cudnn.allow_tf32 = tf32 if tf32 is not None else True
        torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            logits = fast(image.to(device)).float().cpu()
        rows.append(dict(stage="check", setting=f"dgcnet_r18 briefly trained, 4 scenes {height}x{width} {label}",
                         max_rel_error=(logits - reference).abs().max().item() / reference.abs().max().item(),
                         rel_error=relative_error(logits, reference),
                         argmax_agreement=(logits.argmax(1) == reference_argmax).double().mean().item()))
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = False
    return rows


def train_row(result, note: str = "") -> dict:
    r = asdict(result)
    r.update(stage="train", setting=f"{r['arch']} {r['size'][0]}x{r['size'][1]} batch {r['batch']} {r['amp']}"
             f"{' channels-last' if r['channels_last'] else ''} compile {'on' if r['compile'] else 'off'}{note}")
    return r


def stage_train(cfg: dict, device: torch.device, batch: int, compile: bool) -> dict:
    return train_row(benchmark(cfg["arch"], cfg["train_size"], "train", batch=batch, device=str(device),
                               amp="bf16", channels_last=True, compile=compile, warmup=cfg["warmup"],
                               iters=cfg["iters"]))


def stage_profile(cfg: dict, device: torch.device, batch: int) -> dict:
    """Where one eager training step (bf16, channels-last) spends its device time: the kernels (or,
    on the CPU, operators) with the largest share of the self time, and the convolutions by
    input and weight shape (a 3x3 weight on the stride-8 maps is a dilated one), for choosing
    what to speed up next."""
    from torch.profiler import ProfilerActivity, profile

    model = build_model(cfg["arch"]).to(device).to(memory_format=torch.channels_last)
    step = train_step(model, model.num_classes, batch, cfg["train_size"], device, "bf16", True, False)
    for _ in range(2):  # cuDNN's algorithm search and the allocator's first growth
        step()
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=True) as prof:
        step()
        sync(device)
    if device.type == "cuda":
        self_time, total_time = (lambda e: e.self_device_time_total), (lambda e: e.device_time_total)
    else:
        self_time, total_time = (lambda e: e.self_cpu_time_total), (lambda e: e.cpu_time_total)
    events = prof.key_averages()
    total = sum(self_time(e) for e in events) or 1  # self times partition the step's time
    top = sorted(events, key=self_time, reverse=True)[:12]
    # aten::convolution once per forward convolution, aten::convolution_backward once per backward.
    convs = [e for e in prof.key_averages(group_by_input_shape=True)
             if e.key in ("aten::convolution", "aten::convolution_backward")]
    def conv_name(e) -> str:  # backward's arguments are (grad_output, input, weight, ...)
        image, weight = e.input_shapes[1:3] if e.key.endswith("backward") else e.input_shapes[:2]
        return f"{'bwd' if e.key.endswith('backward') else 'fwd'} {image} x {weight} (x{e.count})"

    # Every shape, largest share first (the table shows the first ten).
    conv_shapes = {conv_name(e): total_time(e) / total for e in sorted(convs, key=total_time, reverse=True)}
    return dict(stage="profile", setting=f"{cfg['arch']} {cfg['train_size'][0]}x{cfg['train_size'][1]} batch {batch} "
                                        "bf16 channels-last compile off, one step", step_ms=total / 1000,
                shares={e.key: self_time(e) / total for e in top}, conv_shapes=conv_shapes)


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def stage_eval(cfg: dict, device: torch.device, amp: str) -> dict:
    """Sliding-window evaluation of full-size images: all tiles of an image in one batch, logits
    summed on the device, argmax; images/s from the median image."""
    model = optimize_for_inference(build_model(cfg["arch"]).to(device).eval())
    height, width = cfg["eval_size"]
    tiles = len(tile_grid(height, width, cfg["tile"], default_stride(cfg["tile"])))
    image = torch.randn(3, height, width, device=device, generator=torch.Generator(device).manual_seed(0))
    times = []
    for i in range(1 + cfg["eval_images"]):
        sync(device)
        start = time.perf_counter()
        infer_logits(model, image, mode="sliding", tile=cfg["tile"], batch_tiles=tiles, amp=amp).argmax(0)
        sync(device)
        if i:  # the first image warms up cuDNN's algorithm choice
            times.append(time.perf_counter() - start)
    per_image = sorted(times)[len(times) // 2]
    return dict(stage="eval", setting=f"{cfg['arch']} {height}x{width} sliding {tiles} tiles of {cfg['tile']} "
                                      f"in one batch, {amp}", images_per_s=1 / per_image,
                ms_per_image=per_image * 1000, val_projection_s=VAL_IMAGES * per_image,
                peak_memory_mb=peak_memory_mb(device))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def environment(device: torch.device) -> dict:
    env = dict(torch=torch.__version__, python=sys.version.split()[0], device=device.type)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        free, total = torch.cuda.mem_get_info(device)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}", gpu_memory_gib=total / 2**30,
                   gpu_memory_in_use_gib=(total - free) / 2**30, cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    return env


def markdown(env: dict, rows: list[dict], elapsed: float) -> str:
    lines = [f"GPU check: {env.get('gpu', env['device'])}, torch {env['torch']}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {elapsed:.0f} s in all", "",
             "| stage | setting | result | goal |", "|---|---|---|---|"]
    for r in rows:
        if "note" in r:
            result, goal = r["note"], ""
        elif r.get("out_of_memory"):
            result, goal = "out of memory", ""
        elif "error" in r:
            result, goal = f"FAILED: {r['error']}", ""
        elif r["stage"] == "check":
            result = (f"max rel. error {r['max_rel_error']:.2e}, rel. L2 error {r['rel_error']:.2e}, "
                      f"argmax agreement {100 * r['argmax_agreement']:.3f}%")
            goal = "fp32: < 1e-4 with TF32 off; bf16: argmax >= 99.5%"
        elif r["stage"] == "train":
            share = f", {100 * r['peak_share']:.0f}% of {r['peak_tflops']:g}" if r.get("peak_share") else ""
            result = (f"{r['images_per_s']:.1f} images/s ({r['median_ms']:.0f} ms/step, "
                      f"{r['achieved_tflops']:.0f} TFLOP/s{share}, peak {r['peak_memory_mb'] / 1024:.1f} GiB, "
                      f"first step {r['first_step_s']:.0f} s)")
            if r["images_per_s"] > 0:
                result += f"; 480k images in {480000 / r['images_per_s'] / 3600:.2f} h"
            goal = f">= {TRAIN_GOAL_IMAGES_PER_S:g} images/s"
        elif r["stage"] == "engine":
            memory = f", peak {r['peak_memory_mb'] / 1024:.1f} GiB" if r.get("peak_memory_mb") else ""
            result = f"{r['images_per_s']:.1f} images/s ({r['ms_per_step']:.0f} ms/step{memory})"
            goal = "the benchmark's compile-off row at the same batch"
        elif r["stage"] == "crops":
            result = (f"max abs. difference {r['max_abs_difference']:.2e} (normalised units), labels "
                      + ("equal" if r["labels_equal"] else "DIFFERENT"))
            goal = "labels equal; images within float rounding (< 1e-4)"
        elif r["stage"] == "eval":
            memory = f", peak {r['peak_memory_mb'] / 1024:.1f} GiB" if r.get("peak_memory_mb") else ""
            result = (f"{r['images_per_s']:.2f} images/s ({r['ms_per_image']:.0f} ms/image{memory}); "
                      f"{VAL_IMAGES} val images in {r['val_projection_s']:.0f} s")
            goal = f"{VAL_IMAGES} images < {VAL_GOAL_S:g} s"
        elif r["stage"] == "profile":
            result = f"{r['step_ms']:.0f} ms of kernel time (CPU: operator time): " + ", ".join(
                f"{name} {100 * share:.1f}%" for name, share in r["shares"].items())
            result += "; convolutions by shape: " + ", ".join(
                f"{name} {100 * share:.1f}%" for name, share in list(r["conv_shapes"].items())[:10])
            goal = ""
        else:
            result, goal = "", ""
        lines.append(f"| {r['stage']} | {r['setting']} | {result} | {goal} |")
    return "\n".join(lines) + "\n"


def compiled_train_in_child(args: argparse.Namespace, batch: int, timeout: float) -> dict:
    """torch.compile of the training step can take minutes; a child process can be stopped in time."""
    command = [sys.executable, __file__, "--device", args.device, "--child-compile-batch", str(batch)]
    if args.tiny:
        command.append("--tiny")
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"child exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def model_stages(args: argparse.Namespace, cfg: dict, device: torch.device, run, rows: list[dict],
                 start: float) -> None:
    """Logits against the CPU, training steps by batch (compile off, then on), profile, evaluation."""
    run("check", "GPU vs CPU logits", stage_check, cfg, device)
    run("train", "batch 1, compile off", stage_train, cfg, device, 1, False)
    largest = None
    for batch in cfg["batches"]:  # the largest batch that fits: stop at the first out-of-memory
        result = run("train", f"batch {batch}, compile off", stage_train, cfg, device, batch, False)
        if result is None or "error" in result:
            break
        largest = batch
    run("profile", "one eager training step", stage_profile, cfg, device, largest or 1)
    run("eval", "sliding window, bf16", stage_eval, cfg, device, "bf16")
    run("eval", "sliding window, fp32", stage_eval, cfg, device, "off")
    if not args.skip_compile:
        compile_batch = largest or 1
        remaining = args.budget_s + 30 - (time.perf_counter() - start)
        setting = f"batch {compile_batch}, compile on (child process, {remaining:.0f} s allowed)"
        if remaining < MIN_COMPILE_S:
            rows.append(dict(stage="train", setting=setting, note=f"skipped: compiling needs about {MIN_COMPILE_S} s"))
        else:
            run("train", setting, compiled_train_in_child, args, compile_batch, remaining)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="dry run: dgcnet_r18 at tiny sizes")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no stage after this (default: 420)")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the compiled-training stage")
    parser.add_argument("--data-only", action="store_true",
                        help="only the training-data stages: GPU-resized crops, then the engine on each data path")
    parser.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                        help="folder for gpu_check.md and gpu_check.json (default: $OUT if set)")
    parser.add_argument("--child-compile-batch", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = settings(args.tiny)
    if args.child_compile_batch is not None:
        print(json.dumps(stage_train(cfg, device, args.child_compile_batch, compile=True)))
        return 0

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes everywhere, as in training
    start = time.perf_counter()
    env = environment(device)
    print(json.dumps(env), flush=True)
    rows: list[dict] = []

    def report() -> str:
        table = markdown(env, rows, time.perf_counter() - start)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "gpu_check.md").write_text(table)
            (args.out / "gpu_check.json").write_text(json.dumps(dict(environment=env, results=rows), indent=1))
        return table

    def run(stage: str, setting: str, function, *function_args) -> dict | list | None:
        elapsed = time.perf_counter() - start
        if elapsed > args.budget_s:
            rows.append(dict(stage=stage, setting=setting, note=f"skipped: time budget spent ({elapsed:.0f} s)"))
            report()
            return None
        print(f"[{elapsed:5.0f} s] {stage}: {setting}", file=sys.stderr, flush=True)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            result = function(*function_args)
        except Exception as error:  # one failed stage must not lose the others
            traceback.print_exc()
            result = dict(stage=stage, setting=setting, error=f"{type(error).__name__}: {str(error)[:200]}",
                          out_of_memory=is_out_of_memory(error))
        rows.extend(result if isinstance(result, list) else [result])
        free_memory(device)
        print(report().splitlines()[-1], file=sys.stderr, flush=True)
        return result

    if not args.data_only:
        model_stages(args, cfg, device, run, rows, start)
    # Written only when the stages below can still start (16 full-size images and their store).
    root = engine_data(cfg, cfg["batches"][0]) if time.perf_counter() - start <= args.budget_s else None
    run("crops", "training crops resized on the GPU", stage_crops, cfg, device, root)
    for data in ENGINE_DATA:
        run("engine", f"training engine, {ENGINE_DATA[data][2]}", stage_engine, cfg, device, cfg["batches"][0],
            root, data)
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        env["gpu_memory_in_use_at_end_gib"] = (total - free) / 2**30
    table = report()
    print(table)
    print(json.dumps(dict(environment=env, results=rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
