"""torch.hub entry points: ``torch.hub.load(REPO, "dgcnet_r101", source="local", weights=PATH)``.

``weights`` is a file in any format ``dgcnet convert`` reads (released ``dgcnet`` safetensors
preferred), an http(s) URL of one (downloaded once into the torch hub cache, ``#sha256=HEX`` pins
it), a folder written by ``dgcnet convert W DIR --to hf`` or ``hf://OWNER/NAME``; without it the
model has random weights. The model comes back in eval mode with
its facts (``model.info``: classes, normalisation, training crop) from the file.
"""
from __future__ import annotations

dependencies = ["torch", "numpy", "safetensors", "PIL", "yaml", "tqdm"]

from dgcnet.models.factory import ARCHS  # noqa: E402  (after `dependencies`, which torch.hub checks first)


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


def _entry_point(arch: str):
    def entry(weights: str | None = None, num_classes: int = 19, device: str = "cpu"):
        return _entry(arch, weights, num_classes, device)

    entry.__name__ = entry.__qualname__ = arch
    entry.__doc__ = f"DGCNet {arch}: {ARCHS[arch].description}."
    return entry


# One entry point per architecture of the factory's table: dgcnet_r101, dgcnet_r50, dgcnet_r34, dgcnet_r18.
globals().update({arch: _entry_point(arch) for arch in ARCHS})
