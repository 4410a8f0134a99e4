"""A fast inference copy of a model: BatchNorm folded into the convolutions, channels-last memory,
Winograd 3x3 convolutions and packed oneDNN convolutions with fused ReLUs on the CPU, no autograd,
optionally compiled. The logits equal the eager
model's in fp32 (within 1e-4 relative).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from dgcnet.models.packed import packing_available, use_packed_convs
from dgcnet.models.winograd import use_winograd

_CONV = (nn.Conv1d, nn.Conv2d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_ANY_BN = nn.modules.batchnorm._BatchNorm

@torch.no_grad()
def fold_conv_bn(conv: nn.Conv1d | nn.Conv2d, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm that follows ``conv`` into the conv's weight and bias (in place).

    bn(conv(x)) = scale * (W x + b - mean) + beta with scale = gamma / sqrt(var + eps), so
    W' = scale * W and b' = scale * (b - mean) + beta. Computed in float64 to stay exact.
    """
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    dtype = conv.weight.dtype
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    gamma = bn.weight.double() if bn.affine else torch.ones_like(var)
    beta = bn.bias.double() if bn.affine else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    conv.weight.copy_(weight.to(dtype))
    folded_bias = ((bias - mean) * scale + beta).to(dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(folded_bias, requires_grad=False)
    else:
        conv.bias.copy_(folded_bias)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a convolution into it, replacing the BatchNorm
    by ``nn.Identity`` (in place; the model must be in eval mode). Returns the number folded.

    The pairs are the neighbours in each ``nn.Sequential`` and what each module declares in its
    ``conv_bn_pairs``; a BatchNorm left over is an error, so a new layer cannot stay unfolded unseen.
    """
    folded = 0
    for module in list(model.modules()):
        pairs = list(getattr(module, "conv_bn_pairs", ()))
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            pairs += [(a, b) for a, b in zip(names, names[1:])
                      if isinstance(module._modules[a], _CONV) and isinstance(module._modules[b], _BN)]
        for conv_path, bn_path in pairs:
            conv, bn = module.get_submodule(conv_path), module.get_submodule(bn_path)
            if not isinstance(bn, _BN):  # folded already
                continue
            if not isinstance(conv, _CONV) or conv.out_channels != bn.num_features:
                raise ValueError(f"{type(module).__name__}.conv_bn_pairs: {conv_path} does not feed {bn_path}")
            fold_conv_bn(conv, bn)
            parent, _, name = bn_path.rpartition(".")
            setattr(module.get_submodule(parent), name, nn.Identity())
            folded += 1
    left = [name for name, m in model.named_modules() if isinstance(m, _ANY_BN)]
    if left:
        raise ValueError(f"BatchNorm not folded: {', '.join(left[:3])}; declare the convolution that feeds it "
                         f"in its module's conv_bn_pairs")
    return folded


class InferenceModel(nn.Module):
    """Eval-only wrapper: runs the (folded, channels-last, maybe compiled) model without autograd.

    Carries the wrapped model's facts, ``info`` (with ``arch`` and ``num_classes``).
    """

    def __init__(self, model: nn.Module, runner: nn.Module | None = None, channels_last: bool = True) -> None:
        super().__init__()
        self.model = model
        # The compiled callable shares the model's parameters; keep it out of the module tree.
        object.__setattr__(self, "_runner", runner if runner is not None else model)
        self.channels_last = channels_last
        self.info = model.info

    @property
    def arch(self) -> str:
        return self.info.arch

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def train(self, mode: bool = True) -> InferenceModel:
        if mode:
            raise RuntimeError("an optimized inference model cannot be trained; optimize a copy after training")
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self._runner(x).contiguous()


def optimize_for_inference(model: nn.Module, *, channels_last: bool = True, fold_bn: bool = True,
                           winograd: bool | None = None, packed: bool | None = None,
                           compile: bool = False) -> InferenceModel:
    """Return a fast eval-only copy of ``model`` (the original is left untouched).

    fold_bn: fold every conv -> BatchNorm pair into the conv (exact up to float rounding).
    channels_last: NHWC weights and inputs, the layout oneDNN and cuDNN convolutions prefer.
    winograd: run the wide 3x3 convolutions by the Winograd algorithm (``dgcnet.models.winograd``);
    default: when the model is on the CPU (GPU libraries choose their own algorithms). It keeps
    a 4x larger transformed copy of those filters (754 MiB more for dgcnet_r101).
    packed: oneDNN convolutions whose filters are converted once per dtype, with the ReLUs and
    residual sums fused (``dgcnet.models.packed``); default: on the CPU, when BatchNorm is folded
    and the model is not compiled (the compiler does its own fusing).
    On the CPU, calling ``dgcnet.engine.heap.keep_freed_memory()`` once first makes it faster still (process-wide).
    compile: ``torch.compile`` the result (the first call compiles; later calls are faster).
    Mixed precision stays the caller's choice: wrap the call in ``torch.autocast``. Under CPU bf16
    autocast the packed model's classifier runs in fp32 and its logits are fp32.
    """
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    if fold_bn:
        fold_batchnorm(fast)
    if winograd is None:
        winograd = next(fast.parameters()).device.type == "cpu"
    if winograd:
        use_winograd(fast)
    if packed is None:
        packed = next(fast.parameters()).device.type == "cpu" and fold_bn and not compile and packing_available()
    if packed:
        use_packed_convs(fast)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    runner = torch.compile(fast) if compile else None
    return InferenceModel(fast, runner, channels_last).eval()
