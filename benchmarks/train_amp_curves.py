"""Loss curves of the fast training path (bf16 autocast + channels-last) against fp32.

    python benchmarks/train_amp_curves.py --steps 200 --png docs/img/amp_curves.png

Trains dgcnet_r18 on a synthetic dataset with the training engine three times: fp32 (seed 0),
bf16 + channels-last (seed 0) and, as the measure of noise, fp32 with another seed (seed 1:
other initial weights, augmentation and sampling). Same data, recipe and step count otherwise.
Reports the mean and largest difference between the smoothed curves, draws all three into one
PNG (PIL only) and writes the per-step losses to a JSON file beside it.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgcnet.benchmark import device_name  # noqa: E402
from dgcnet.cli.common import image_size  # noqa: E402
from dgcnet.config import TrainConfig  # noqa: E402
from dgcnet.data.synth import write_synth  # noqa: E402
from dgcnet.engine.train import train  # noqa: E402

RUNS = (  # (label, amp, channels_last, seed, colour)
    ("fp32, seed 0", "off", False, 0, (31, 119, 180)),
    ("bf16 + channels-last, seed 0", "bf16", True, 0, (214, 39, 40)),
    ("fp32, seed 1 (noise reference)", "off", False, 1, (150, 150, 150)),
)


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average (shorter at the start)."""
    x = np.asarray(values, dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(x)])
    starts = np.maximum(np.arange(len(x)) + 1 - window, 0)
    return (cumulative[1:] - cumulative[starts]) / (np.arange(len(x)) + 1 - starts)


def run_losses(data_dir: Path, run_dir: Path, args: argparse.Namespace, amp: str, channels_last: bool,
               seed: int) -> list[float]:
    config = TrainConfig()
    config.model.arch = "dgcnet_r18"
    config.data.data_dir = str(data_dir)
    config.data.data_list = str(data_dir / "train.txt")
    config.data.input_size = args.crop
    config.data.workers = 0
    config.train.batch_size = args.batch
    config.train.lr = args.lr
    config.train.num_steps = args.steps
    config.train.amp = amp
    config.train.channels_last = channels_last
    config.run.save_dir = str(run_dir)
    config.run.save_every = args.steps
    config.run.log_every = 1
    config.run.seed = seed
    config.run.device = args.device
    losses: list[float] = []
    train(config, on_log=lambda record: losses.append(record["loss"]) if "loss" in record else None)
    return losses


def draw(curves: dict[str, list[float]], window: int, path: Path, title: str) -> None:
    width, height, left, right, top, bottom = 900, 520, 70, 20, 40, 60
    image = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(image)
    steps = max(len(v) for v in curves.values())
    all_values = np.concatenate([np.asarray(v) for v in curves.values()])
    y_max = float(np.percentile(all_values, 99)) * 1.05
    y_min = 0.0

    def xy(step: int, value: float) -> tuple[float, float]:
        x = left + (width - left - right) * step / max(steps - 1, 1)
        y = top + (height - top - bottom) * (1 - (min(value, y_max) - y_min) / (y_max - y_min))
        return x, y

    d.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(6):  # axis ticks
        value = y_min + (y_max - y_min) * i / 5
        _, y = xy(0, value)
        d.line([left - 5, y, left, y], fill="black")
        d.text((5, y - 6), f"{value:.2f}", fill="black")
        step = round((steps - 1) * i / 5)
        x, _ = xy(step, y_min)
        d.line([x, height - bottom, x, height - bottom + 5], fill="black")
        d.text((x - 10, height - bottom + 8), str(step + 1), fill="black")
    d.text((width // 2 - 20, height - 25), "iteration", fill="black")
    d.text((left, 10), title, fill="black")
    for label, _, _, _, colour in RUNS:
        raw = curves[label]
        faint = tuple(255 - (255 - c) // 4 for c in colour)
        d.line([xy(i, v) for i, v in enumerate(raw)], fill=faint, width=1)
    for n, (label, _, _, _, colour) in enumerate(RUNS):
        d.line([xy(i, v) for i, v in enumerate(smooth(curves[label], window))], fill=colour, width=3)
        d.line([width - 330, top + 15 + 18 * n, width - 300, top + 15 + 18 * n], fill=colour, width=3)
        d.text((width - 295, top + 9 + 18 * n), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="iterations per run (default: 200)")
    parser.add_argument("--crop", type=image_size, default=(96, 192), help="crop HxW (default: 96x192)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default: 2)")
    parser.add_argument("--lr", type=float, default=0.01, help="base learning rate (default: 0.01)")
    parser.add_argument("--images", type=int, default=40, help="synthetic training images (default: 40)")
    parser.add_argument("--window", type=int, default=20, help="smoothing window in steps (default: 20)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--png", type=Path, default=Path("docs/img/amp_curves.png"))
    args = parser.parse_args()

    curves: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        write_synth(data_dir, train=args.images, val=0, size=(args.crop[0] * 2, args.crop[1] * 2), seed=0)
        for n, (label, amp, channels_last, seed, _) in enumerate(RUNS):
            print(f"training: {label}", file=sys.stderr, flush=True)
            start = time.perf_counter()
            curves[label] = run_losses(data_dir, Path(tmp) / f"run{n}", args, amp, channels_last, seed)
            seconds[label] = time.perf_counter() - start

    fp32, bf16, other = (smooth(curves[label], args.window) for label, *_ in RUNS)
    summary = {
        "bf16 vs fp32 (same seed)": (np.abs(bf16 - fp32).mean(), np.abs(bf16 - fp32).max()),
        "fp32 seed 1 vs seed 0 (noise)": (np.abs(other - fp32).mean(), np.abs(other - fp32).max()),
    }
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = f"{device_name(torch.device(args.device))}, torch {torch.__version__}, python {platform.python_version()}"
    title = (f"dgcnet_r18, synthetic data, crop {args.crop[0]}x{args.crop[1]}, batch {args.batch}, "
             f"lr {args.lr}; thick: moving average of {args.window}")
    draw(curves, args.window, args.png, title)
    print(f"{title}\n{machine}, {date}")
    print("| runs compared | mean abs. difference of smoothed loss | largest |")
    print("|---|---|---|")
    for name, (mean, largest) in summary.items():
        print(f"| {name} | {mean:.4f} | {largest:.4f} |")
    for label in curves:
        first, last = np.mean(curves[label][:10]), np.mean(curves[label][-10:])
        print(f"{label}: loss {first:.3f} (first 10) -> {last:.3f} (last 10), {seconds[label]:.0f} s")
    args.png.with_suffix(".json").write_text(json.dumps(dict(
        args={k: str(v) for k, v in vars(args).items()}, machine=machine, date=date, losses=curves,
        seconds=seconds, summary={k: list(v) for k, v in summary.items()}), indent=1))
    print(f"wrote {args.png} and {args.png.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
