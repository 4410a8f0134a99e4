"""The Hugging Face Hub layout: a folder that can be uploaded as a model repository as it is.

``dgcnet convert W DIR --to hf`` writes ``DIR/model.safetensors`` (our released ``dgcnet``
safetensors, metadata included), ``DIR/config.json`` (the model's facts, for people and for the
Hub) and ``DIR/README.md`` (the model card). ``dgcnet.load_model(DIR)`` and
``dgcnet.load_model("hf://OWNER/NAME")`` load it; the second needs ``pip install 'dgcnet[hub]'``
(huggingface_hub, which keeps its own cache and honours HF_HUB_CACHE / HF_HUB_OFFLINE).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from dgcnet.errors import DgcnetError, install_hint

HF_SCHEME = "hf://"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


def folder_weights(folder: Path) -> Path:
    """The weights file of a folder in the Hub layout."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise DgcnetError(f"{folder}: a folder without {WEIGHTS_NAME}; weights folders are written by "
                          f"'dgcnet convert W DIR --to hf'")
    return path


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """``hf://OWNER/NAME[@REVISION]`` -> (repo id, revision or None)."""
    rest = spec[len(HF_SCHEME):]
    repo, _, revision = rest.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts):
        raise DgcnetError(f"{spec}: expected hf://OWNER/NAME or hf://OWNER/NAME@REVISION")
    return repo, revision or None


def hub_weights(spec: str) -> Path:
    """The ``model.safetensors`` of a Hub model repository, through huggingface_hub's cache."""
    repo, revision = parse_hub_spec(spec)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DgcnetError(f"{spec}: loading from the Hugging Face Hub needs huggingface_hub: {install_hint('hub')}") from None
    try:
        return Path(hf_hub_download(repo, WEIGHTS_NAME, revision=revision))
    except Exception as error:  # offline, not found, gated, network: one line, whatever the cause
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DgcnetError(f"{spec}: cannot get {WEIGHTS_NAME}: {type(error).__name__}: {message}") from None


def hf_config(metadata: dict[str, str], *, crop: tuple[int, int] | None = None) -> dict[str, Any]:
    """config.json of a model: its facts, from the metadata of a released ``dgcnet`` safetensors
    file (all strings there) plus the class colours and the training crop when known."""
    from dgcnet.data.classes import default_colors
    from dgcnet.data.labels import CITYSCAPES

    names = json.loads(metadata["class_names"])
    colors = CITYSCAPES.colors if tuple(names) == CITYSCAPES.names else default_colors(len(names))
    if "palette" in metadata:  # files that record the model's own colours and crop (ModelInfo)
        colors = json.loads(metadata["palette"])
    if crop is None and "crop_size" in metadata:
        crop = tuple(json.loads(metadata["crop_size"]))
    return {
        "library_name": "dgcnet", "model_type": "dgcnet", "format": metadata["format"],
        "arch": metadata["arch"], "num_classes": int(metadata["num_classes"]),
        "class_names": names, "palette": [list(c) for c in colors],
        "rgb": metadata["rgb"] == "true", "channels": metadata["channels"],
        "mean": json.loads(metadata["mean"]), "std": json.loads(metadata["std"]),
        "crop_size": list(crop) if crop is not None else None, "output_stride": 8,
        "dataset": json.loads(metadata["dataset"]) if "dataset" in metadata else None,
    }


def _training_facts(src: Path) -> dict[str, Any]:
    """What a dgcnet training checkpoint says about how its weights were made (else nothing)."""
    from dgcnet.formats.convert import TRAIN_FORMAT, detect_format, torch_load

    if detect_format(src) != "torch":
        return {}
    state = torch_load(src)
    if not isinstance(state, dict) or state.get("format") != TRAIN_FORMAT:
        return {}
    config = state.get("config") or {}
    return {"iteration": state.get("iteration"), "best_miou": state.get("best_miou"), "config": config,
            "crop": tuple(config.get("data", {}).get("input_size") or ()) or None}


def model_card(config: dict[str, Any], facts: dict[str, Any], source: str) -> str:
    """README.md of the folder: what the model is, how to run it, how it was trained when known."""
    arch = config["arch"]
    classes = ", ".join(config["class_names"])
    train = facts.get("config") or {}
    if train:
        solver, data, model = train.get("train", {}), train.get("data", {}), train.get("model", {})
        recipe = (f"Trained with dgcnet on {data.get('dataset') or 'Cityscapes'}"
                  f"{' (classes from ' + data['classes'] + ')' if data.get('classes') else ''} for "
                  f"{facts.get('iteration')} iterations: crop "
                  f"{'x'.join(map(str, data.get('input_size', [])))}, batch {solver.get('batch_size')} per process, "
                  f"SGD lr {solver.get('lr')} (poly {solver.get('poly_power')}), momentum {solver.get('momentum')}, "
                  f"weight decay {solver.get('weight_decay')}, starting weights "
                  f"{model.get('restore_from') or 'none (random)'}. The full configuration is the checkpoint's "
                  f"`config`.")
    else:
        recipe = ("Not recorded in the source file. The published recipe (80.3 mIoU on Cityscapes val): "
                  "ImageNet deep-stem ResNet-101 start, 8 GPUs x 1 image of 832x832, synchronised BatchNorm, "
                  "SGD lr 0.01 momentum 0.9 weight decay 5e-4, poly 0.9, 60000 iterations, OHEM 0.7 / 100000, "
                  "auxiliary loss weight 0.4.")
    if facts.get("best_miou") is not None:
        metrics = f"Best validation mIoU during training: {facts['best_miou']:.4f} (as validated by the run)."
    else:
        metrics = "Not recorded in the source file: evaluate with `dgcnet eval` before relying on it."
    return f"""---
library_name: dgcnet
pipeline_tag: image-segmentation
tags:
- semantic-segmentation
- dgcnet
---

# DGCNet {arch}

DGCNet (Dual Graph Convolutional Network, Zhang, Li et al., BMVC 2019) for semantic segmentation,
architecture `{arch}`, {config['num_classes']} classes, in the format of the `dgcnet` PyTorch
package. Converted from `{source}` with `dgcnet convert SRC DIR --to hf`.

## Use

```python
import dgcnet
model = dgcnet.load_model("hf://OWNER/NAME")   # needs: pip install 'dgcnet[hub]'
model = dgcnet.load_model("path/to/this/folder")
```

```bash
dgcnet predict images/ --restore-from hf://OWNER/NAME --output-dir out
```

## Model

- Input: {config['channels']} images, normalised as `(pixel - mean) / std` per channel on the
  0..255 scale with mean {config['mean']} and std {config['std']} (`config.json`).
- Output: {config['num_classes']} class scores at 1/8 of the input size.
- Classes: {classes}.
- Training crop: {'x'.join(map(str, config['crop_size'])) if config['crop_size'] else 'not recorded'}.

## Training

{recipe}

## Metrics

{metrics}

## Citation

```
@inproceedings{{zhangli_dgcn,
  title={{Dual Graph Convolutional Network for Semantic Segmentation}},
  author={{Zhang, Li and Li, Xiangtai and Arnab, Anurag and Yang, Kuiyuan and Tong, Yunhai and Torr, Philip HS}},
  booktitle={{BMVC}},
  year={{2019}}
}}
```
"""


def convert_to_hf(src: str | Path, dst: str | Path, *, arch: str | None = None, strict: bool = False):
    """Write the Hub folder ``dst`` (missing or empty) from the weights ``src``; returns the
    conversion report. The folder appears complete or not at all."""
    from safetensors import safe_open

    from dgcnet.formats.convert import convert

    src, dst = Path(src), Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DgcnetError(f"{dst}: already exists and is not an empty folder")
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        report = convert(src, tmp / WEIGHTS_NAME, "dgcnet", arch=arch, strict=strict)
        with safe_open(str(tmp / WEIGHTS_NAME), "pt") as f:
            metadata = f.metadata()
        facts = _training_facts(src)
        config = hf_config(metadata, crop=facts.get("crop"))
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / CARD_NAME).write_text(model_card(config, facts, src.name))
        if dst.exists():
            dst.rmdir()
        os.replace(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report
