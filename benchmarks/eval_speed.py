"""Evaluation speed: images/s of the inference path `dgcnet eval` runs (sliding window or whole
image, logits upsampled and accumulated, argmax) at Cityscapes size, and the projected time for
the 500 val images. Random weights (speed does not depend on them); image loading not included.

    python benchmarks/eval_speed.py --arch dgcnet_r18 dgcnet_r101 --modes sliding whole --images 1
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from dgcnet.cli.common import image_size
from dgcnet.models.fast import optimize_for_inference
from dgcnet.config import AMP_MODES
from dgcnet.engine.inference import MODES, infer_logits, tile_grid, default_stride
from dgcnet.models import build_model, list_models

VAL_IMAGES = 500


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", nargs="+", default=["dgcnet_r18"], choices=list_models())
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--size", type=image_size, default=(1024, 2048), help="image size HxW (default: 1024x2048)")
    p.add_argument("--images", type=int, default=1, help="timed images per arch and mode (default: 1)")
    p.add_argument("--tile", type=int, default=832)
    p.add_argument("--batch-tiles", type=int, default=4)
    p.add_argument("--amp", choices=AMP_MODES, default="off")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-fast", dest="fast", action="store_false", help="time the plain model")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    args = p.parse_args()

    device = torch.device(args.device)
    height, width = args.size
    tiles = len(tile_grid(height, width, args.tile, default_stride(args.tile)))
    for arch in args.arch:
        model = build_model(arch).eval().to(device)
        if args.fast:
            model = optimize_for_inference(model)
        # Warm-up on a small input so one-off kernel selection is not timed.
        infer_logits(model, torch.zeros(3, 65, 65, device=device), mode="whole", amp=args.amp)
        for mode in args.modes:
            image = torch.randn(3, height, width, device=device)
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(args.images):
                logits = infer_logits(model, image, mode=mode, tile=args.tile, batch_tiles=args.batch_tiles,
                                      amp=args.amp)
                logits.argmax(0).cpu()
            seconds = (time.perf_counter() - start) / args.images
            # CPU seconds of this process: on a shared machine, cpu / threads estimates the idle wall time.
            cpu = (time.process_time() - cpu_start) / args.images
            row = {"arch": arch, "mode": mode, "size": f"{height}x{width}", "tiles": tiles if mode == "sliding" else 1,
                   "device": str(device), "threads": torch.get_num_threads(), "amp": args.amp, "fast": args.fast,
                   "seconds_per_image": round(seconds, 3), "cpu_seconds_per_image": round(cpu, 3), "images_per_s": round(1 / seconds, 4),
                   "projected_val_minutes": round(VAL_IMAGES * seconds / 60, 1)}
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"{arch:12s} {mode:8s} {height}x{width} on {device} ({torch.get_num_threads()} threads): "
                      f"{seconds:8.2f} s/image ({cpu:8.2f} CPU s), {1 / seconds:7.4f} images/s, "
                      f"500 val images in {VAL_IMAGES * seconds / 60:7.1f} min", flush=True)


if __name__ == "__main__":
    main()
