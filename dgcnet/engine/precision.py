"""Mixed precision: the one table from the ``amp`` setting (config.AMP_MODES) to the autocast dtype."""
from __future__ import annotations

import torch

from dgcnet.config import AMP_MODES

AMP_DTYPES: dict[str, torch.dtype | None] = dict(zip(AMP_MODES, (None, torch.bfloat16, torch.float16)))


def amp_dtype(mode: str) -> torch.dtype | None:
    """The autocast dtype of an ``amp`` setting (None: full precision)."""
    if mode not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {mode!r}")
    return AMP_DTYPES[mode]
