"""Stopping training cleanly on SIGTERM (what schedulers and preemptible machines send before
killing) and Ctrl-C (SIGINT).

While training, the first such signal only sets a flag: the iteration in progress finishes, a
checkpoint of it is written, and training raises :class:`TrainingStopped`; ``--resume auto``
then continues exactly as if nothing had happened. A second signal stops at once (a
KeyboardInterrupt). The previous handlers come back when training ends. Loader workers ignore
both signals: the main process shuts them down, and a worker killed by a signal sent to the
whole process group would fail the next batch.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType

from dgcnet.errors import DgcnetError

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), signal.SIGINT) if s is not None)


class TrainingStopped(DgcnetError):
    """Training stopped on a signal after writing a checkpoint of the last finished iteration."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """``with StopSignals() as stop:`` ... ``if stop.requested:``; a no-op outside the main thread."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second signal: stop now
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()


def ignore_stop_signals(worker_id: int = 0) -> None:
    """A DataLoader ``worker_init_fn``: the main process decides when workers end."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
