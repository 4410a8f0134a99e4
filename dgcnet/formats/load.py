"""``load_model``: a ready-to-run DGCNet from any supported weights file (or an arch name)."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from dgcnet.errors import DgcnetError
from dgcnet.formats.convert import fit_to_model, model_info, read_weights, summarize_names
from dgcnet.formats.download import resolve_weights
from dgcnet.models import DGCNet, build_model, list_models


def load_model(path_or_arch: str | Path, device: str | torch.device = "cpu",
               num_classes: int | None = None) -> DGCNet:
    """Build the model a weights file describes, load the weights, return it in eval mode.

    ``path_or_arch`` is a file in any format ``dgcnet convert`` reads (released safetensors,
    training checkpoint, the authors' .pth, MindSpore .ckpt), an http(s) URL of one (downloaded
    once into the torch hub cache; ``#sha256=HEX`` pins it), a folder written by ``dgcnet
    convert W DIR --to hf`` or ``hf://OWNER/NAME`` (needs huggingface_hub), or an architecture name, which
    gives randomly initialised weights (with a warning). ``model.info`` holds the facts the file
    records (classes, normalisation, training crop, evaluation tile); files that record none
    get the published Cityscapes ones, with a warning. A backbone-only file (ImageNet init)
    loads with a warning that the heads are random; ``num_classes`` then sets the head size.
    """
    if isinstance(path_or_arch, str) and path_or_arch in list_models() and not Path(path_or_arch).exists():
        warnings.warn(f"{path_or_arch}: no weights file given, the model has random weights", stacklevel=2)
        model = build_model(path_or_arch, 19 if num_classes is None else num_classes)
        return model.to(device).eval()
    path = resolve_weights(path_or_arch)  # a URL, hf://OWNER/NAME or a Hub-layout folder: its file
    if not path.is_file():
        raise DgcnetError(f"{path}: no such file (and not an arch: {', '.join(list_models())})")
    weights = read_weights(path)
    state_dict, report = fit_to_model(weights, path, num_classes=num_classes)
    if report.unexpected:
        raise DgcnetError(f"{path}: names the model does not have: {summarize_names(report.unexpected)}")
    if report.missing:
        warnings.warn(f"{path}: {summarize_names(report.missing)} not in the file, left randomly initialised",
                      stacklevel=2)
    model = build_model(report.arch, report.num_classes, info=model_info(weights, path))
    model.load_state_dict(state_dict, strict=not report.missing)
    return model.to(device).eval()
