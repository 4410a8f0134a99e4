"""The prepared store: the images and labels of data lists decoded once (`dgcnet prepare`), so that
training reads arrays instead of decoding PNGs.

Each image is an uncompressed HxWx3 uint8 RGB ``.npy`` and each label an HxW uint8 ``.npy`` of
train ids (ignore = 255), exactly what ``SegmentationDataset.load`` gives for the PNGs. Training
opens them as memory maps, so a crop reads only the rows it needs, and the processes of a
multi-GPU run share one copy in the page cache. ``manifest.json`` records, for each source file
(keyed by its path in the list), the array file, its shape, a checksum and the source's size
and modification time: a changed source file, a missing or damaged array, or labels prepared
for other classes are errors naming the file, never a silent mismatch.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dgcnet.data.labels import CITYSCAPES, IGNORE_INDEX, ClassInfo
from dgcnet.errors import DgcnetError

if TYPE_CHECKING:
    from dgcnet.data.dataset import Sample

FORMAT = "dgcnet-prepared"
VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_NAME = "dgcnet-prepared"  # the store's folder inside the data folder, unless told otherwise


def default_store(data_dir: str | Path) -> Path:
    return Path(data_dir) / DEFAULT_NAME


def find_store(data_dir: str | Path, prepared: str | Path | None = "auto") -> Path | None:
    """The store to read: ``"auto"`` the default one when it exists, ``None`` none, else the given
    folder, which must hold a store."""
    if prepared is None:
        return None
    if str(prepared) == "auto":
        store = default_store(data_dir)
        return store if (store / MANIFEST).is_file() else None
    store = Path(prepared)
    if not (store / MANIFEST).is_file():
        raise DgcnetError(f"{store}: no prepared store here (no {MANIFEST}); make one with "
                          f"`dgcnet prepare --data-dir DIR --data-list LIST --output-dir {store}`")
    return store


def classes_fingerprint(classes: ClassInfo) -> str:
    """What the stored train ids depend on: the id mapping and the ignore index."""
    table = b"identity" if classes.id_to_train is None else np.asarray(classes.id_to_train, np.uint8).tobytes()
    return hashlib.sha256(table + f"/{classes.ignore_index}/{IGNORE_INDEX}".encode()).hexdigest()[:16]


def source_key(path: Path, data_dir: Path) -> str:
    """A source file's name in the manifest: its path relative to the data folder, as listed."""
    try:
        return path.relative_to(data_dir).as_posix()
    except ValueError:  # an absolute path in the list
        return path.as_posix()


def source_stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def array_checksum(array: np.ndarray) -> str:
    return hashlib.blake2b(memoryview(np.ascontiguousarray(array)).cast("B"), digest_size=16).hexdigest()


def array_name(kind: str, key: str) -> str:
    stem = Path(key).name.rsplit(".", 1)[0]
    return f"{kind}/{stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npy"


def write_atomic(path: Path, write: Any) -> None:
    """Write through a temporary file and rename, so the file is whole or absent."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def store_size(store: str | Path) -> int:
    """Bytes the store takes on disk (allocated blocks of all its files)."""
    return sum(p.stat().st_blocks * 512 for p in Path(store).rglob("*") if p.is_file())


@dataclass(frozen=True)
class Entry:
    """One source file in the store."""
    source: Path
    array: Path
    shape: tuple[int, ...]
    source_size: int
    source_mtime_ns: int
    checksum: str

    def check_source(self) -> str | None:
        """What is wrong with the source file against the store, or None."""
        try:
            stamp = source_stamp(self.source)
        except OSError:
            return "no such file"
        if stamp != (self.source_size, self.source_mtime_ns):
            return (f"changed since it was prepared into {self.array} (size or modification time "
                    f"differ); run `dgcnet prepare` again")
        return None

    def open(self) -> np.ndarray:
        """The array, memory-mapped (copy-on-write: writable for torch, the file is never changed)."""
        try:
            array = np.load(self.array, mmap_mode="c", allow_pickle=False)
        except FileNotFoundError:
            raise DgcnetError(f"{self.array}: prepared array of {self.source} is missing; "
                              f"run `dgcnet prepare` again") from None
        except (OSError, ValueError) as error:
            raise DgcnetError(f"{self.array}: prepared array of {self.source} is unreadable ({error}); "
                              f"run `dgcnet prepare` again") from None
        if array.shape != self.shape or array.dtype != np.uint8:
            raise DgcnetError(f"{self.array}: prepared array of {self.source} is {array.dtype} "
                              f"{'x'.join(map(str, array.shape))}, the manifest says uint8 "
                              f"{'x'.join(map(str, self.shape))}; run `dgcnet prepare` again")
        return array


class PreparedStore:
    """A store's manifest, read once; ``entries`` finds the arrays of a data list's samples."""

    def __init__(self, root: str | Path, classes: ClassInfo = CITYSCAPES) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / MANIFEST
        manifest = read_manifest(self.manifest_path)
        if manifest is None:
            raise DgcnetError(f"{self.root}: no prepared store here (no {MANIFEST})")
        self.manifest = manifest
        if manifest["labels"] and manifest["classes"] != classes_fingerprint(classes):
            raise DgcnetError(f"{self.manifest_path}: labels were prepared for other classes (id mapping or "
                              f"ignore index); prepare again with the class file of this run")

    def entry(self, kind: str, path: Path, data_dir: Path) -> Entry | None:
        record = self.manifest[kind].get(source_key(path, data_dir))
        if record is None:
            return None
        return Entry(path, self.root / record["file"], tuple(record["shape"]), record["source_size"],
                     record["source_mtime_ns"], record["checksum"])

    def entries(self, samples: list[Sample], data_dir: str | Path) -> list[tuple[Entry, Entry | None]]:
        """The image and label entries of each sample. Raises, naming the list line and file, for a
        sample not in the store or a source file changed since it was prepared."""
        data_dir = Path(data_dir)
        found = []
        for s in samples:
            pair = []
            for kind, path in (("images", s.image), ("labels", s.label)):
                if path is None:
                    pair.append(None)
                    continue
                entry = self.entry(kind, path, data_dir)
                if entry is None:
                    raise DgcnetError(f"{s.where}: {path}: not in the prepared store {self.root}; run `dgcnet "
                                      f"prepare --data-dir {data_dir} --data-list {s.list_path}` (it resumes)")
                problem = entry.check_source()
                if problem:
                    raise DgcnetError(f"{s.where}: {path}: {problem}")
                pair.append(entry)
            found.append((pair[0], pair[1]))
        return found


def read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DgcnetError(f"{path}: unreadable manifest of a prepared store ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DgcnetError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise DgcnetError(f"{path}: prepared store version {manifest.get('version')}, this dgcnet reads "
                          f"version {VERSION}; prepare the data again into a new folder")
    return manifest


def save_manifest(path: Path, manifest: dict[str, Any]) -> None:
    write_atomic(path, lambda f: f.write(json.dumps(manifest, indent=0, sort_keys=True).encode()))


