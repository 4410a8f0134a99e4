"""Can a small DGCNet learn the synthetic Cityscapes on the CPU in a few minutes?

Writes a synthetic dataset (`dgcnet synth`), trains dgcnet_r18 from random init with plain
cross-entropy (+0.4 x auxiliary loss) on random crops from SegmentationDataset(train=True) for a
fixed wall-clock budget, then reports val mIoU over all 19 classes (absent classes score 0).

    python benchmarks/synth_learnability.py --minutes 4
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dgcnet.cli.common import image_size
from dgcnet.data import SegmentationDataset
from dgcnet.data.synth import write_synth
from dgcnet.models import build_model


def confusion(pred: torch.Tensor, label: torch.Tensor, num_classes: int = 19) -> np.ndarray:
    keep = label != 255
    index = label[keep] * num_classes + pred[keep]
    return torch.bincount(index, minlength=num_classes ** 2).view(num_classes, num_classes).numpy()


def tiles(size: int, tile: int) -> list[int]:
    """Start offsets of tiles covering 0..size, the last one flush with the end."""
    if tile >= size:
        return [0]
    return list(range(0, size - tile, tile)) + [size - tile]


def evaluate(model: torch.nn.Module, dataset: SegmentationDataset, tile: tuple[int, int] | None = None
             ) -> tuple[float, np.ndarray]:
    """Val mIoU over 19 classes. With ``tile``, infer tile by tile (as the sliding evaluation does):
    DGCNet's feature-space graph sums over all pixels, so it is meant to run at its training crop size."""
    model.eval()
    total = np.zeros((19, 19), dtype=np.int64)
    with torch.no_grad():
        for i in range(len(dataset)):
            image, label, _ = dataset[i]
            h, w = label.shape
            th, tw = tile or (h, w)
            scores = torch.zeros(19, h, w)
            for top in tiles(h, th):
                for left in tiles(w, tw):
                    patch = image[None, :, top:top + th, left:left + tw]
                    logits = F.interpolate(model(patch), size=patch.shape[-2:], mode="bilinear", align_corners=True)
                    scores[:, top:top + th, left:left + tw] += logits[0].softmax(0)
            total += confusion(scores.argmax(0), label)
    iou = np.diag(total) / np.maximum(total.sum(0) + total.sum(1) - np.diag(total), 1)
    model.train()
    return float(iou.mean()), iou


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=image_size, default=(128, 256), help="synthetic image size HxW")
    p.add_argument("--crop", type=image_size, default=(128, 128), help="training crop HxW")
    p.add_argument("--no-scale", action="store_true", help="turn off random scaling (keeps crop and flip)")
    p.add_argument("--train", type=int, default=200, help="training images")
    p.add_argument("--val", type=int, default=20, help="validation images")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--minutes", type=float, default=4.0, help="training wall-clock budget")
    p.add_argument("--steps", type=int, help="train this many steps instead of a time budget")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=0, help="also report val mIoU every N steps")
    p.add_argument("--data", type=Path, help="reuse/create the synthetic data here (default: a temp dir)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        if not (data / "train.txt").exists():
            t = time.perf_counter()
            write_synth(data, train=args.train, val=args.val, size=args.size, seed=args.seed)
            print(f"synth: {args.train}+{args.val} images at {args.size[0]}x{args.size[1]} "
                  f"in {time.perf_counter() - t:.1f} s")
        train_set = SegmentationDataset(data, data / "train.txt", train=True, crop_size=args.crop,
                                        scale=not args.no_scale, seed=args.seed)
        val_set = SegmentationDataset(data, data / "val.txt")
        model = build_model("dgcnet_r18", 19).train()
        if args.optimizer == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
        budget = args.minutes * 60

        def progress() -> float:  # fraction of the budget (steps or time) used
            return step / args.steps if args.steps else (time.perf_counter() - start) / budget

        start, cpu_start, step, epoch = time.perf_counter(), time.process_time(), 0, 0
        while progress() < 1:
            train_set.set_epoch(epoch)
            loader = DataLoader(train_set, batch_size=args.batch, shuffle=True, drop_last=True,
                                generator=torch.Generator().manual_seed(epoch))
            for images, labels, _ in loader:
                labels = labels.long()  # the loader gives uint8 labels
                if progress() >= 1:
                    break
                lr = args.lr * (1 - progress()) ** 0.9  # poly decay over the budget
                for group in optimizer.param_groups:
                    group["lr"] = lr
                logits, aux = model(images)
                size = labels.shape[-2:]
                loss = sum(weight * F.cross_entropy(
                    F.interpolate(out, size=size, mode="bilinear", align_corners=True), labels, ignore_index=255)
                    for weight, out in ((1.0, logits), (0.4, aux)))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                if step % 10 == 0:
                    print(f"step {step:4d}  {time.perf_counter() - start:6.1f} s  cpu {time.process_time() - cpu_start:6.1f} s  "
                          f"loss {loss.item():.3f}  lr {lr:.2e}", flush=True)
                if args.eval_every and step % args.eval_every == 0:
                    print(f"step {step:4d}  val mIoU whole images {evaluate(model, val_set)[0]:.4f}, "
                          f"tiles of the crop size {evaluate(model, val_set, args.crop)[0]:.4f}", flush=True)
            epoch += 1
        train_time, cpu_time = time.perf_counter() - start, time.process_time() - cpu_start
        t = time.perf_counter()
        miou, iou = evaluate(model, val_set, args.crop)
        print(f"trained {step} steps x batch {args.batch} (crop {args.crop[0]}x{args.crop[1]}) "
              f"in {train_time:.0f} s (process CPU time {cpu_time:.0f} s); val ({len(val_set)} images) in {time.perf_counter() - t:.1f} s")
        names = train_set.classes.names
        print("  ".join(f"{n}={v:.2f}" for n, v in zip(names, iou)))
        print(f"val mIoU (19 classes, tiles of the crop size) = {miou:.4f}; "
              f"whole images {evaluate(model, val_set)[0]:.4f}")


if __name__ == "__main__":
    main()
