"""Training checkpoints: written atomically, readable with ``torch.load(..., weights_only=True)``.

A checkpoint is ``checkpoint_<iteration>.pt`` in the run folder. It is first written to a hidden
temporary file, flushed to disk, then renamed over the final name, so a process killed at any
moment leaves either a complete checkpoint or a temporary file that ``--resume auto`` ignores.
"""
from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dgcnet.errors import DgcnetError

FORMAT = "dgcnet-train-v1"
_NAME = re.compile(r"^checkpoint_(\d+)\.pt$")
BEST_NAME = "best.pt"


def checkpoint_path(run_dir: str | Path, iteration: int) -> Path:
    return Path(run_dir) / f"checkpoint_{iteration:07d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in the run folder, oldest first (temporary files are not listed)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def remove_stale_temporaries(run_dir: str | Path) -> None:
    """Temporary files left by a process killed while writing."""
    for p in Path(run_dir).glob(".*.tmp"):
        p.unlink(missing_ok=True)


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (``best.pt`` is never deleted)."""
    for _, path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)


def check_finite(state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Raise unless every floating-point tensor is finite (``path`` names the checkpoint refused)."""
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise DgcnetError(f"{path}: not written: the weights hold non-finite values "
                          f"({len(bad)} tensors, e.g. {bad[0]})")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically. Refuses weights holding NaN or infinity."""
    path = Path(path)
    check_finite(state["model"], path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def link_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` a hard link to the checkpoint ``src``, replacing ``dst`` atomically, so that
    one checkpoint under two names takes its space once (a copy where the file system has no
    hard links)."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)
    _fsync_dir(dst.parent)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (on the CPU) with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise DgcnetError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file: report it on one line
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DgcnetError(f"{path}: not a readable checkpoint: {message}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DgcnetError(f"{path}: not a {FORMAT} training checkpoint")
    return state


def rng_state() -> dict[str, Any]:
    """The random generators of this process as tensors and plain values."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
