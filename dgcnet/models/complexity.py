"""Parameter and FLOP counts (FLOPs = 2 x multiply-adds, from torch's own FLOP counter)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from dgcnet.models.factory import build_model


@dataclass
class Complexity:
    arch: str
    size: tuple[int, int]
    params_total: int
    params_inference: int
    forward_flops: int
    train_flops: int


def count_flops(model: torch.nn.Module, size: tuple[int, int], batch: int = 1, train: bool = False) -> int:
    """FLOPs of one forward pass (train=False) or one forward + backward pass (train=True)."""
    device = next(model.parameters()).device
    x = torch.empty(batch, 3, *size, device=device)
    model.train(train)
    with FlopCounterMode(display=False) as counter:
        if train:
            out = model(x)
            sum(o.sum() for o in out).backward()
        else:
            with torch.no_grad():
                model(x)
    return counter.get_total_flops()


def complexity(arch: str, size: tuple[int, int], num_classes: int = 19) -> Complexity:
    # The meta device gives shapes without computing anything, so R101 at 1024x2048 counts instantly.
    with torch.device("meta"):
        model = build_model(arch, num_classes)
    total = sum(p.numel() for p in model.parameters())
    aux = sum(p.numel() for p in model.dsn.parameters())
    return Complexity(arch, size, total, total - aux,
                      count_flops(model, size), count_flops(model, size, train=True))
