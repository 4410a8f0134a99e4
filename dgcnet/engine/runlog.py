"""What a training run tells: its printed lines (also in ``train.log``), ``metrics.jsonl``,
TensorBoard events when tensorboard is installed, and the progress numbers of each log line.

Only the main process writes. ``train.log`` is appended to across resumes; ``metrics.jsonl``
forgets, on resume, the records a stopped run wrote after the checkpoint it resumes from.
"""
from __future__ import annotations

import collections
import datetime
import json
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from dgcnet.errors import DgcnetError, install_hint
from dgcnet.io import write_text

LOG_NAME = "train.log"
METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_HINT = install_hint("tensorboard")


def tensorboard_writer_class() -> type | None:
    """torch's SummaryWriter, or None when the tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


def format_duration(seconds: float) -> str:
    """H:MM:SS (days as more hours), for ETAs."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def peak_memory_gb(device: torch.device) -> float | None:
    """GPU: the most memory tensors held on ``device`` so far. CPU: the process's peak resident
    set size. None where neither can be read."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9  # bytes on macOS, KiB elsewhere


class StepMeter:
    """Seconds per iteration, the share of it spent waiting for data, and the ETA, per log interval.

    The ETA divides the remaining iterations by the pace of the last ``window`` log intervals
    (validation and checkpoints included), so a slow first step (cuDNN autotuning, compilation)
    stops counting after a while.
    """

    def __init__(self, start: int, total: int, window: int = 20) -> None:
        self.total = total
        now = time.perf_counter()
        self.interval_start, self.interval_first, self.waited = now, start, 0.0
        self.marks: collections.deque[tuple[float, int]] = collections.deque([(now, start)], maxlen=window + 1)

    def add_wait(self, seconds: float) -> None:
        self.waited += seconds

    def exclude_since(self, since: float) -> None:
        """Leave the time from ``since`` (a perf_counter value) to now out of the seconds per iteration."""
        self.interval_start += time.perf_counter() - since

    def interval(self, done: int) -> dict[str, float]:
        """seconds_per_iter, data_wait (0..1) and eta_seconds of the interval ending at ``done``;
        starts the next interval."""
        now = time.perf_counter()
        elapsed = max(now - self.interval_start, 1e-9)
        steps = max(done - self.interval_first, 1)
        self.marks.append((now, done))
        (t0, i0), (t1, i1) = self.marks[0], self.marks[-1]
        pace = (t1 - t0) / max(i1 - i0, 1)
        result = {"seconds_per_iter": elapsed / steps, "data_wait": min(self.waited / elapsed, 1.0),
                  "eta_seconds": pace * (self.total - done)}
        self.interval_start, self.interval_first, self.waited = now, done, 0.0
        return result


def log_line(record: dict[str, Any], total: int) -> str:
    """The port's line (``iter = i of N completed, loss = L, lr=LR``) and the named progress fields."""
    loss = record["loss"]
    text = (f"iter = {record['iteration']} of {total} completed, "
            f"loss = {'nan (all skipped)' if loss is None else f'{loss:.6f}'}, lr={record['lr']:.6g}")
    if record.get("loss_main") is not None:
        text += f", loss_main={record['loss_main']:.6f}, loss_aux={record['loss_aux']:.6f}"
    text += (f", s/iter={record['seconds_per_iter']:.3f}, data_wait={100 * record['data_wait']:.0f}%, "
             f"eta={format_duration(record['eta_seconds'])}")
    if record.get("peak_memory_gb") is not None:
        text += f", peak_mem={record['peak_memory_gb']:.2f}GB"
    return text


def validation_pictures(model: torch.nn.Module, dataset: Any, *, mode: str, tile: int | None, count: int = 3,
                        amp: str = "off") -> list[np.ndarray]:
    """Input | ground truth | prediction (class colours, void black) of the first ``count``
    validation images, one HxWx3 uint8 picture each."""
    from dgcnet.data.transforms import normalize
    from dgcnet.engine.inference import infer_logits, model_device

    device = model_device(model)
    was_training = model.training
    model.eval()
    pictures = []
    for index in range(min(count, len(dataset))):
        image, label = dataset.load(index)
        x = normalize(image, dataset.rgb).to(device)
        prediction = infer_logits(model, x, mode=mode, tile=tile, amp=amp).argmax(0).cpu().numpy()
        truth = np.zeros_like(image) if label is None else dataset.classes.colorize(label)
        gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
        pictures.append(np.concatenate([image, gap, truth, gap, dataset.classes.colorize(prediction)], axis=1))
    model.train(was_training)
    return pictures


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a run folder's metrics.jsonl (or of that file). A last line cut short (a
    run killed while writing) is left out; any other bad line is an error naming it."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DgcnetError(f"{path}: no such file (is {path.parent} a run folder?)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DgcnetError(f"{path}: cannot read: {error}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise DgcnetError(f"{path}:{number}: not a JSON record: {error.msg}") from None
        if not isinstance(record, dict) or not isinstance(record.get("iteration"), int):
            raise DgcnetError(f"{path}:{number}: a record without an integer 'iteration'")
        records.append(record)
    return records


def _drop_records_after(path: Path, start: int) -> None:
    """On resume, forget what a stopped run logged after its last checkpoint (and a line cut short)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("iteration", 0) <= start:
            kept.append(line + "\n")
    write_text(path, "".join(kept))


def _append(file: IO[str], text: str) -> None:
    """Append a line to a log; a full disk is one line (the checkpoints written so far are intact)."""
    try:
        file.write(text)
        file.flush()
    except OSError as error:
        raise DgcnetError(f"{file.name}: cannot write: {error.strerror}") from None


class RunLogger:
    """Prints the run's lines and keeps them, with the metrics, in the run folder (main process).

    Lines said before :meth:`open` (the run folder may not exist yet) are kept and written when
    it is. ``tensorboard``: None writes events when tensorboard is installed (and says once how
    to get it when not), True requires it, False writes none. ``on_record`` receives every
    record written to metrics.jsonl.
    """

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool | None = None,
                 on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.on_record = on_record
        self.tensorboard_wanted = tensorboard
        self.metrics_path = self.run_dir / METRICS_NAME
        self.pending: list[str] = []
        self.log_file = self.metrics_file = None
        self.tensorboard = None
        self.bar: tqdm | None = None
        if enabled and tensorboard and tensorboard_writer_class() is None:
            raise DgcnetError(f"run.tensorboard is set but tensorboard is not installed: {TENSORBOARD_HINT}")

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text)
        sys.stdout.flush()
        self._keep(text)

    def _keep(self, text: str) -> None:
        if self.log_file is None:
            self.pending.append(text)
            return
        _append(self.log_file, text + "\n")

    def open(self, start: int) -> None:
        """Start writing into the run folder, which exists now; ``start`` is the first iteration."""
        if not self.enabled:
            return
        self.log_file = open(self.run_dir / LOG_NAME, "a")
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        self.log_file.write(f"--- {stamp}: {' '.join(sys.argv)}\n")  # where each (re)start begins
        for text in self.pending:
            self._keep(text)
        self.pending = []
        _drop_records_after(self.metrics_path, start)
        self.metrics_file = open(self.metrics_path, "a")
        writer = tensorboard_writer_class() if self.tensorboard_wanted is not False else None
        if writer is not None:
            events = self.run_dir / TENSORBOARD_DIR
            self.tensorboard = writer(str(events), purge_step=start + 1)
            self.say(f"TensorBoard events -> {events} (view: tensorboard --logdir {events})")
        elif self.tensorboard_wanted is None:
            self.say(f"note: no TensorBoard events (tensorboard is not installed): {TENSORBOARD_HINT}; "
                     f"run.tensorboard=false silences this")

    def progress(self, total: int, initial: int) -> None:
        """A progress bar with ETA on stderr when it is a terminal (else each log line reports)."""
        self.bar = tqdm(total=total, initial=initial, unit="it", file=sys.stderr, dynamic_ncols=True,
                        disable=not (self.enabled and sys.stderr.isatty()))

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def record(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl line; its numbers also go to TensorBoard."""
        if not self.enabled or self.metrics_file is None:
            return
        _append(self.metrics_file, json.dumps(record) + "\n")
        if self.on_record is not None:
            self.on_record(record)
        if self.tensorboard is None:
            return
        step = record["iteration"]
        for key, value in record.items():
            if key in ("iteration", "epoch") or value is None:
                continue
            if isinstance(value, dict):  # per-class IoU
                for name, v in value.items():
                    self.tensorboard.add_scalar(f"{key}/{name}", v, step)
            elif isinstance(value, (int, float)):
                self.tensorboard.add_scalar(key, value, step)
        self.tensorboard.flush()

    def wants_images(self) -> bool:
        return self.tensorboard is not None

    def images(self, tag: str, images: Sequence[np.ndarray], step: int) -> None:
        """HxWx3 uint8 images under ``tag/0``, ``tag/1``, ... (TensorBoard only)."""
        if self.tensorboard is None:
            return
        for i, image in enumerate(images):
            self.tensorboard.add_image(f"{tag}/{i}", image, step, dataformats="HWC")
        self.tensorboard.flush()

    def failed(self, error: BaseException) -> None:
        """Keep in train.log why the run stopped (the command line prints it too)."""
        if not self.enabled or self.log_file is None:
            return
        if isinstance(error, KeyboardInterrupt):
            self._keep("stopped: interrupted")
        else:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self._keep(f"stopped: {type(error).__name__}: {first}" if not isinstance(error, DgcnetError)
                       else f"stopped: {first}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        for f in (self.log_file, self.metrics_file):
            if f is not None:
                f.close()
        self.log_file = self.metrics_file = None
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
