"""Processes launched by ``torchrun``: process group, synchronised BatchNorm, small collectives.

torch's SyncBatchNorm only runs on accelerators, so on the CPU (gloo) the BatchNorm layers become
:class:`dgcnet.models.layers.AllReduceBatchNorm`, which computes the same global batch statistics with two
differentiable all-reduces. It exists so that multi-process training works (and is tested) on
CPU machines; on CUDA torch's fused SyncBatchNorm is used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from dgcnet.errors import DgcnetError
from dgcnet.models.layers import AllReduceBatchNorm


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str | None = "auto", local_rank: int = 0) -> torch.device:
    """'auto' or None: CUDA when available, else the CPU. A bare 'cuda' picks this process's GPU."""
    if name is None or name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DgcnetError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):  # meta, mps, ...: the engines run on CPUs and CUDA GPUs
        raise DgcnetError(f"device {name!r} is not supported (use cpu, cuda or cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DgcnetError(f"device {name} asked for, but CUDA is not available (use --device cpu)")
        if device.index is None:
            return torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def setup(device: str, distributed: bool | None) -> DistEnv:
    """Join the process group that ``torchrun`` describes in RANK / WORLD_SIZE / LOCAL_RANK."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if distributed is None:
        distributed = world_size > 1
    if distributed and "RANK" not in os.environ:
        raise DgcnetError("distributed training needs the environment torchrun sets up: "
                          "launch with torchrun --nproc_per_node=N -m dgcnet train ...")
    if not distributed:
        if world_size > 1:
            raise DgcnetError(f"launched as one of {world_size} processes but run.distributed is false")
        return DistEnv(0, 1, 0, resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo",
                                device_id=torch_device if torch_device.type == "cuda" else None)
    return DistEnv(rank, world_size, local_rank, torch_device)


def cleanup(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def _convert_to_all_reduce(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm):
        like = next(module.parameters(), module.running_mean)
        converted = AllReduceBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                       module.track_running_stats,
                                       device=like.device if like is not None else None,
                                       dtype=like.dtype if like is not None else None)
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, _convert_to_all_reduce(child))
    return module


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm (the 1d ones of the head too) synchronised over the process group."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_to_all_reduce(model)


def all_true(flag: bool, env: DistEnv) -> bool:
    """True when ``flag`` is true on every process."""
    if not env.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def mean_over_processes(value: float, env: DistEnv) -> float:
    if not env.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / env.world_size


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """``obj`` of every process, in rank order (on every process)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out
