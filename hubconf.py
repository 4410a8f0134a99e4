"""torch.hub entry points: ``torch.hub.load(REPO, "dgcnet_r101", source="local", weights=PATH)``.

``weights`` is a file in any format ``dgcnet convert`` reads (released ``dgcnet`` safetensors
preferred), an http(s) URL of one (downloaded once into the torch hub cache, ``#sha256=HEX`` pins
it), a folder written by ``dgcnet convert W DIR --to hf`` or ``hf://OWNER/NAME``; without it the
model has random weights. The model comes back in eval mode with
its facts (``model.info``: classes, normalisation, training crop) from the file.
"""
from __future__ import annotations

dependencies = ["torch", "numpy", "safetensors", "PIL", "yaml", "tqdm"]


def _entry(arch: str, weights: str | None, num_classes: int, device: str):
    from dgcnet.errors import DgcnetError
    from dgcnet.formats.load import load_model
    from dgcnet.models import build_model

    if weights is None:
        return build_model(arch, num_classes).to(device).eval()
    model = load_model(weights, device=device)
    if model.arch != arch:
        raise DgcnetError(f"{weights}: holds {model.arch} weights, not {arch}")
    return model


def dgcnet_r101(weights: str | None = None, num_classes: int = 19, device: str = "cpu"):
    """DGCNet with the ResNet-101 deep-stem backbone (the published model)."""
    return _entry("dgcnet_r101", weights, num_classes, device)


def dgcnet_r50(weights: str | None = None, num_classes: int = 19, device: str = "cpu"):
    """DGCNet with a ResNet-50 deep-stem backbone."""
    return _entry("dgcnet_r50", weights, num_classes, device)


def dgcnet_r34(weights: str | None = None, num_classes: int = 19, device: str = "cpu"):
    """DGCNet with a ResNet-34 deep-stem backbone and a 256-channel head."""
    return _entry("dgcnet_r34", weights, num_classes, device)


def dgcnet_r18(weights: str | None = None, num_classes: int = 19, device: str = "cpu"):
    """DGCNet with a ResNet-18 deep-stem backbone and a 256-channel head (the small one)."""
    return _entry("dgcnet_r18", weights, num_classes, device)
