"""Whole-image inference on the CPU: the plain eager model against the fast inference path.

    python benchmarks/cpu_inference.py --arch dgcnet_r101 --size 512x1024
    python benchmarks/cpu_inference.py --arch dgcnet_r18 --weights run/final.pt --size 512x1024

Variants, each timed on the same synthetic street scene:
  eager      the model as built, NCHW, fp32, under torch.no_grad()  (the baseline)
  fast       optimize_for_inference(model): BatchNorm folded, channels-last, inference mode, fp32
  fast-bf16  the same under torch.autocast("cpu", torch.bfloat16)
  compiled   optimize_for_inference(model, compile=True), fp32 (with --compile; compiling takes minutes)

The variants are timed in turn, round after round, so that load from other processes hits all of
them alike; the speed-up is given from each variant's fastest round, from the median rounds, and
as the median of the per-round ratios. The share of CPU time stolen by the hypervisor while
timing (from /proc/stat) tells how much other machines on the same host disturbed the run. Without --weights the
model has random weights with realistic BatchNorm statistics (averaged over random batches).
Accuracy: fp32 logits relative to the baseline; bf16: the share of pixels (logits upsampled to the
image, as in evaluation) whose argmax equals the baseline's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgcnet.benchmark import calibrate_batchnorm, device_name  # noqa: E402
from dgcnet.cli.common import image_size  # noqa: E402
from dgcnet.data.synth import synth_scene  # noqa: E402
from dgcnet.data.transforms import normalize  # noqa: E402
from dgcnet.models.fast import optimize_for_inference  # noqa: E402
from dgcnet.formats.load import load_model  # noqa: E402
from dgcnet.models import build_model, list_models  # noqa: E402


def full_size_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=True).argmax(1)


def cpu_ticks() -> tuple[int, int]:
    """(all ticks, steal ticks) of the machine so far, from /proc/stat; (0, 0) where there is none.
    Steal is the time the hypervisor gave this virtual machine's CPUs to others."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="dgcnet_r101", choices=list_models())
    parser.add_argument("--size", type=image_size, default=(512, 1024), help="image size HxW (default: 512x1024)")
    parser.add_argument("--weights", default=None, help="weights file (default: random, calibrated BatchNorm)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per variant (default: 3)")
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd fast path")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.weights:
        model = load_model(args.weights)
        weights = args.weights
    else:
        torch.manual_seed(0)
        model = calibrate_batchnorm(build_model(args.arch), (args.size[0] // 2, args.size[1] // 2))
        weights = "random, BatchNorm statistics averaged over 2 random batches"
    image_np, _ = synth_scene(np.random.default_rng(0), *args.size)
    image = normalize(image_np, model.info.rgb)[None]

    variants = {"eager": (model.eval(), False), "fast": (optimize_for_inference(model), False),
                "fast-bf16": (optimize_for_inference(model), True)}
    if args.compile:
        variants["compiled"] = (optimize_for_inference(model, compile=True), False)

    def forward(name: str) -> torch.Tensor:
        net, bf16 = variants[name]
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            return net(image)

    outputs, first = {}, {}
    for name in variants:  # warm-up round (oneDNN primitive creation, compilation)
        start = time.perf_counter()
        outputs[name] = forward(name).float()
        first[name] = time.perf_counter() - start
    load_before, steal_before = os.getloadavg(), cpu_ticks()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            start = time.perf_counter()
            forward(name)
            times[name].append(time.perf_counter() - start)
    load_after, steal_after = os.getloadavg(), cpu_ticks()
    busy = steal_after[0] - steal_before[0]
    steal_share = (steal_after[1] - steal_before[1]) / busy if busy else 0.0

    reference = outputs["eager"]
    reference_argmax = full_size_argmax(reference, args.size)
    results = {}
    for name in variants:
        out = outputs[name]
        results[name] = dict(
            min_s=min(times[name]), median_s=statistics.median(times[name]), first_s=first[name],
            speedup_min=min(times["eager"]) / min(times[name]),
            speedup_median=statistics.median(times["eager"]) / statistics.median(times[name]),
            # Each round's eager time over the variant's time in the same round, then the median:
            # the steadiest figure when the host's speed drifts between rounds.
            speedup_paired=statistics.median(e / v for e, v in zip(times["eager"], times[name])),
            round_s=times[name],
            rel_error=((out - reference).norm() / reference.norm()).item(),
            max_rel_error=((out - reference).abs().max() / reference.abs().max()).item(),
            argmax_agreement=(full_size_argmax(out, args.size) == reference_argmax).double().mean().item())

    machine = dict(cpu=device_name(torch.device("cpu")), cores=os.cpu_count(), threads=torch.get_num_threads(),
                   torch=torch.__version__, python=platform.python_version(),
                   date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   load_average_before=load_before, load_average_after=load_after, steal_share=steal_share)
    h, w = args.size
    print(f"{args.arch} whole image {h}x{w}, weights: {weights}")
    print(f"{machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads, torch {machine['torch']}, "
          f"{machine['date']}, load average {load_before[0]:.1f} -> {load_after[0]:.1f}, "
          f"steal {100 * steal_share:.1f}% of the CPU time while timing")
    print(f"{args.rounds} rounds after one warm-up round. Speed-up against eager: fastest round / "
          f"median round / median of the per-round ratios\n")
    print("| variant | fastest s | median s | speed-up | rel. error | max rel. error | argmax agreement |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['min_s']:.2f} | {r['median_s']:.2f} | {r['speedup_min']:.2f}x / "
              f"{r['speedup_median']:.2f}x / {r['speedup_paired']:.2f}x | {r['rel_error']:.1e} | "
              f"{r['max_rel_error']:.1e} | {100 * r['argmax_agreement']:.3f}% |")
    if args.json:
        args.json.write_text(json.dumps(dict(arch=args.arch, size=args.size, weights=weights, machine=machine,
                                             results=results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
