"""Writing files safely: atomic writes, and output locations checked before any heavy work.

Every file the package writes goes through :func:`atomic_write`: a hidden temporary file in the
destination folder, flushed to disk, then renamed over the final name. A process killed at any
moment, or a full disk, leaves the previous file intact and no partial file behind.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator

from dgcnet.errors import DgcnetError


def temporary_path(path: str | Path) -> Path:
    """Where :func:`atomic_write` writes before the rename (``.NAME.tmp``, ignored by every reader)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reason(error: BaseException) -> str:
    """One line for a failed write: the OS reason, also when a library wrapped it (torch's zip writer)."""
    cause = error
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_write(path) as f: f.write(...)``: all of the file or none of it.

    On any failure (a full disk, a file size limit, an error in the caller) the temporary file is
    removed and whatever ``path`` held before is left as it was; OS errors (and libraries'
    errors while writing, such as torch's zip writer failing) become one DgcnetError line.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except DgcnetError:
        tmp.unlink(missing_ok=True)
        raise
    except (OSError, RuntimeError) as error:
        tmp.unlink(missing_ok=True)
        raise DgcnetError(f"{path}: cannot write: {_reason(error)}; nothing written"
                          + (", the previous file is intact" if path.exists() else "")) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- output locations

def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: str | Path, flag: str) -> None:
    """A folder that can be created or written: not a file, under a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DgcnetError(f"{path}: {flag} must be a folder, but this is a file")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise DgcnetError(f"{path}: {flag} cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DgcnetError(f"{path}: {flag} is not writable ({existing}: permission denied)")


def check_output_file(path: str | Path, flag: str, overwrite: bool = False,
                      inputs: Iterable[str | Path] = ()) -> None:
    """A file that can be written: its folder exists and is writable, it is not a folder, not one
    of ``inputs``, and it does not exist yet unless ``overwrite``."""
    path = Path(path)
    check_not_inputs([path], inputs)
    parent = path.absolute().parent
    if not parent.is_dir():
        what = "is a file" if parent.exists() else "does not exist"
        raise DgcnetError(f"{path}: {flag}: the folder {parent} {what}")
    if path.is_dir():
        raise DgcnetError(f"{path}: {flag} must be a file name, but this is a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DgcnetError(f"{path}: {flag}: the folder {parent} is not writable")
    if path.exists() and not overwrite:
        raise DgcnetError(f"{path}: already exists; pass --overwrite to replace it, or choose another name")


def check_not_inputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path]) -> None:
    """No output may be one of the inputs (also through links or '..')."""
    resolved = {os.path.realpath(p) for p in inputs}
    for output in outputs:
        if os.path.realpath(output) in resolved:
            raise DgcnetError(f"{output}: refused: this output is one of the command's inputs; "
                              f"choose another output folder or name")


def check_new_outputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path], overwrite: bool,
                      what: str = "output file") -> None:
    """Outputs never replace inputs, and replace earlier files only with ``overwrite``."""
    outputs = list(outputs)
    check_not_inputs(outputs, inputs)
    if overwrite:
        return
    existing = [p for p in outputs if Path(p).exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise DgcnetError(f"{existing[0]}: {what} already exists{more}; pass --overwrite to replace "
                          f"files of an earlier run, or choose another --output-dir")
