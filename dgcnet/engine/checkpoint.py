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

from dgcnet.engine import distributed
from dgcnet.engine.distributed import DistEnv
from dgcnet.errors import DgcnetError
from dgcnet.io import atomic_write, fsync_dir, temporary_path

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


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically. Refuses weights holding NaN or infinity."""
    path = Path(path)
    check_finite(state["model"], path)
    with atomic_write(path) as f:
        torch.save(state, f)


def link_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` a hard link to the checkpoint ``src``, replacing ``dst`` atomically, so that
    one checkpoint under two names takes its space once (a copy where the file system has no
    hard links)."""
    src, dst = Path(src), Path(dst)
    tmp = temporary_path(dst)
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


class Checkpointer:
    """A run folder's checkpoints: ``checkpoint_<iteration>.pt`` (the newest ``keep`` kept),
    ``best.pt``, and :attr:`last`, the latest one written, which a stopped run names.

    Call it on every process: each checkpoint holds the random generators of all of them, and
    only the main process writes.
    """

    def __init__(self, run_dir: str | Path, keep: int, env: DistEnv, last: Path | None = None) -> None:
        self.run_dir, self.keep, self.env = Path(run_dir), keep, env
        self.last = last  # the checkpoint a resumed run started from, until it writes one

    def holds(self, iteration: int) -> bool:
        """Whether the latest checkpoint written is that of ``iteration``."""
        return self.last is not None and self.last.name == checkpoint_path(".", iteration).name

    def save(self, state: dict[str, Any]) -> Path:
        """``checkpoint_<iteration>.pt`` of ``state`` (without its "rng"), then older ones pruned."""
        self.last = self._write(state, checkpoint_path(self.run_dir, state["iteration"]))
        if self.env.is_main:
            prune_checkpoints(self.run_dir, self.keep)
        return self.last

    def save_best(self, state: dict[str, Any]) -> None:
        """``best.pt``: a hard link to the checkpoint of the same iteration when there is one, not a
        second copy."""
        best = self.run_dir / BEST_NAME
        if not self.holds(state["iteration"]):
            self._write(state, best)
        elif self.env.is_main:
            link_checkpoint(self.last, best)

    def _write(self, state: dict[str, Any], path: Path) -> Path:
        check_finite(state["model"], path)  # on every process, so that all stop together
        rngs = distributed.gather_objects(rng_state(), self.env)
        if self.env.is_main:
            save_checkpoint({**state, "rng": {"world_size": self.env.world_size, "ranks": rngs}}, path)
        return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (on the CPU) with ``weights_only=True`` and check its structure,
    so that resuming from an odd file is one line rather than a KeyError halfway through setup."""
    from dgcnet.formats.convert import check_finite_weights, torch_load

    path = Path(path)
    if not path.is_file():
        raise DgcnetError(f"{path}: no such checkpoint")
    if path.stat().st_size == 0:
        raise DgcnetError(f"{path}: not a checkpoint (the file is empty)")
    state = torch_load(path)  # pickles that would run code and unreadable files: the project's own line
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DgcnetError(f"{path}: not a {FORMAT} training checkpoint")
    check_train_state(state, path)
    check_finite_weights(state["model"], path)
    return state


def check_train_state(state: dict[str, Any], path: str | Path, resume: bool = True) -> None:
    """Raise unless ``state`` has the entries a training checkpoint needs, of the right types
    (``resume=False``: only what reading the weights needs)."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise DgcnetError(f"{path}: not a usable {FORMAT} checkpoint: {what}")

    model = state.get("model")
    need(isinstance(model, dict) and bool(model), "no 'model' state dict")
    for name, value in model.items():
        need(isinstance(name, str), f"model key {name!r} is not a name")
        need(isinstance(value, torch.Tensor), f"model entry {name} is not a tensor")
        need(value.layout == torch.strided, f"model entry {name} is a {value.layout} tensor, not a dense one")
    need(isinstance(state.get("arch"), str), "'arch' missing or not a string")
    need(isinstance(state.get("num_classes"), int) and state["num_classes"] >= 1,
         "'num_classes' missing or not a positive integer")
    names = state.get("class_names")
    need(names is None or (isinstance(names, (list, tuple)) and len(names) == state["num_classes"]
                           and all(isinstance(n, str) for n in names)),
         f"'class_names' must be {state['num_classes']} strings, got {names!r:.60}")
    need(state.get("rgb") is None or isinstance(state.get("rgb"), bool), "'rgb' is not true or false")
    if not resume:
        return
    need(isinstance(state.get("iteration"), int) and state["iteration"] >= 0,
         "'iteration' missing or not a whole number")
    optimizer = state.get("optimizer")
    need(isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
         and isinstance(optimizer.get("param_groups"), list), "no 'optimizer' state")
    need(state.get("scaler") is None or isinstance(state.get("scaler"), dict), "'scaler' is not a state dict")
    rng = state.get("rng")
    need(isinstance(rng, dict) and isinstance(rng.get("world_size"), int) and isinstance(rng.get("ranks"), list)
         and len(rng["ranks"]) == rng["world_size"], "'rng' missing or not one entry per process")
    for entry in rng["ranks"]:
        need(isinstance(entry, dict) and isinstance(entry.get("torch"), torch.Tensor)
             and isinstance(entry.get("numpy"), dict) and isinstance(entry.get("python"), dict)
             and "cuda" in entry, "an 'rng' entry lacks the torch, cuda, numpy or python state")
    best = state.get("best_miou")
    need(best is None or isinstance(best, float), "'best_miou' is not a number")


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


def set_rng_state(state: dict[str, Any], path: str | Path = "checkpoint") -> None:
    try:
        torch.set_rng_state(state["torch"])
        if state["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        n = state["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
        p = state["python"]
        random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise DgcnetError(f"{path}: not a usable {FORMAT} checkpoint: its random generator state is "
                          f"broken ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
