"""DGCNet, the Dual Graph Convolutional Network for semantic segmentation, in PyTorch.

The names below are imported on first use (PEP 562), so ``import dgcnet`` and the command line's
``--help`` stay quick: torch is loaded only when something that needs it is used.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "CITYSCAPES": "dgcnet.data.labels",
    "TrainConfig": "dgcnet.config",
    "load_config": "dgcnet.config",
    "TrainResult": "dgcnet.engine.train",
    "train": "dgcnet.engine.train",
    "predict": "dgcnet.engine.predict",
    "load_model": "dgcnet.formats.load",
    "build_model": "dgcnet.models",
    "list_models": "dgcnet.models",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dgcnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
