"""One training per run folder: a lock file that names the process holding it.

``RUN_FOLDER/.lock`` is created with O_CREAT | O_EXCL (atomic on every platform and on NFS v3+)
and holds ``pid host start-time``. A second training on the folder stops at once with a line
naming the folder and that process. A lock left by a killed run (its process no longer exists
on this host, or the pid now belongs to a process started later) is stale: it is replaced, so
``--resume auto`` after ``kill -9`` just works. Uses only os, so it works wherever Python does.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from dgcnet.errors import DgcnetError
from dgcnet.io import check_output_dir

LOCK_NAME = ".lock"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or '' where unknown: with the
    pid it tells a live holder from a later process that reused a dead holder's pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # field 22, counted after the command name


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except OSError:  # e.g. Windows: signal 0 is not supported; assume it runs
        return True
    return not start or not _start_time(pid) or _start_time(pid) == start


class RunLock:
    """``with RunLock(run_dir):`` holds the run folder for this process (creating the folder)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.text = f"{os.getpid()} {socket.gethostname()} {_start_time(os.getpid())}\n"
        self.held = False
        self.created = False

    def acquire(self) -> None:
        check_output_dir(self.run_dir, "run.save_dir (--save_dir)")
        try:
            self.created = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DgcnetError(f"{self.run_dir}: cannot create the run folder ({error.strerror})") from None
        for _ in range(2):  # the second try follows the removal of a stale lock
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None or self._holder_alive(holder):
                    raise DgcnetError(self._in_use(holder)) from None
                self._remove_if(holder)  # stale: left by a process that no longer runs
                continue
            except OSError as error:
                raise DgcnetError(f"{self.run_dir}: cannot lock the run folder ({error.strerror})") from None
            with os.fdopen(fd, "w") as f:
                f.write(self.text)
            self.held = True
            return
        raise DgcnetError(self._in_use(self._read()))

    def _read(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return ""  # removed meanwhile: try again
        except OSError:
            return None

    def _holder_alive(self, holder: str) -> bool:
        fields = holder.split()
        if not fields:  # empty: a holder is writing it now, or was killed before it could
            try:
                return time.time() - self.path.stat().st_mtime < 10
            except OSError:
                return False
        try:
            pid = int(fields[0])
        except ValueError:
            return False
        host = fields[1] if len(fields) > 1 else ""
        if host != socket.gethostname():
            return True  # another machine's process cannot be checked from here
        return _alive(pid, fields[2] if len(fields) > 2 else "")

    def _in_use(self, holder: str | None) -> str:
        fields = (holder or "").split()
        who = f"process {fields[0]}" + (f" on {fields[1]}" if len(fields) > 1 else "") if fields else "another process"
        return (f"{self.run_dir}: in use by another training ({who}, lock file {self.path}); wait for it to "
                f"finish or choose another --save_dir (remove the lock file only if that run is gone)")

    def _remove_if(self, holder: str) -> None:
        """Remove the lock if it still holds ``holder`` (not a lock another process just took)."""
        if self._read() == holder:
            self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self._remove_if(self.text)
            self.held = False
            if self.created and not any(self.run_dir.iterdir()):
                self.run_dir.rmdir()  # a run that stopped before writing anything leaves no folder

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
