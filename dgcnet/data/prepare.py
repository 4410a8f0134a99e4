"""`dgcnet prepare`: decode the files of a data list once into a prepared store
(``dgcnet.data.store``), and check a store against its list (`dgcnet check-data`)."""
from __future__ import annotations

import fcntl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dgcnet.data.check import CheckResult, Problem
from dgcnet.data.dataset import Sample, SegmentationDataset, read_list
from dgcnet.data.labels import CITYSCAPES, ClassInfo
from dgcnet.data.store import (FORMAT, MANIFEST, VERSION, PreparedStore, array_checksum, array_name,
                               classes_fingerprint, default_store, read_manifest, save_manifest, source_key,
                               source_stamp, store_size, write_atomic)
from dgcnet.errors import DgcnetError

_SAVE_EVERY_S = 10.0  # an interrupted prepare loses at most this much work


@dataclass(frozen=True)
class PrepareResult:
    store: Path
    samples: int
    prepared: int  # samples decoded and written by this call
    up_to_date: int  # samples already in the store and unchanged
    store_bytes: int


def _up_to_date(store: Path, record: dict[str, Any] | None, source: Path) -> bool:
    if record is None:
        return False
    array = store / record["file"]
    return (source_stamp(source) == (record["source_size"], record["source_mtime_ns"]) and array.is_file()
            and array.stat().st_size >= int(np.prod(record["shape"])))


def prepare(data_dir: str | Path, list_path: str | Path, store: str | Path | None = None, *,
            classes: ClassInfo = CITYSCAPES, workers: int = 4, progress: bool = False) -> PrepareResult:
    """Decode every file of a data list into the store (default: DATA_DIR/dgcnet-prepared).

    Idempotent and resumable: samples already stored from unchanged sources are skipped, each array
    is written whole (temporary file, then rename), and the manifest is saved every few seconds
    and on interruption. A changed source file is decoded again. Only one prepare writes to a
    store at a time.
    """
    data_dir = Path(data_dir)
    store = Path(store) if store is not None else default_store(data_dir)
    dataset = SegmentationDataset(data_dir, list_path, classes=classes)  # the training path's decoding
    store.mkdir(parents=True, exist_ok=True)
    manifest_path = store / MANIFEST
    manifest = read_manifest(manifest_path)
    if manifest is None:
        if any(p.name != ".lock" for p in store.iterdir()):
            raise DgcnetError(f"{store}: folder holds other files and no {MANIFEST}; choose an empty or new "
                              f"folder for the prepared store")
        manifest = {"format": FORMAT, "version": VERSION, "classes": classes_fingerprint(classes),
                    "images": {}, "labels": {}}
    elif manifest["labels"] and manifest["classes"] != classes_fingerprint(classes):
        raise DgcnetError(f"{manifest_path}: this store holds labels prepared for other classes; "
                          f"prepare into another folder (--output-dir)")
    manifest["classes"] = classes_fingerprint(classes)
    with open(store / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DgcnetError(f"{store}: another `dgcnet prepare` is writing this store") from None
        for kind in ("images", "labels"):
            (store / kind).mkdir(exist_ok=True)
            for tmp in (store / kind).glob(".*.tmp"):  # left by an interrupted run
                tmp.unlink()
        todo = []
        for index, s in enumerate(dataset.samples):
            keys = [source_key(s.image, data_dir)] + ([] if s.label is None else [source_key(s.label, data_dir)])
            fresh = _up_to_date(store, manifest["images"].get(keys[0]), s.image) and (
                s.label is None or _up_to_date(store, manifest["labels"].get(keys[1]), s.label))
            if not fresh:
                todo.append(index)
        done = 0
        last_save = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=max(1, workers))
        try:
            results = pool.map(lambda i: _prepare_sample(dataset, i, store, data_dir), todo)
            for records in tqdm(results, total=len(todo), desc="prepare", unit="sample", disable=not progress):
                for kind, key, record in records:
                    manifest[kind][key] = record
                done += 1
                if time.monotonic() - last_save > _SAVE_EVERY_S:
                    save_manifest(manifest_path, manifest)
                    last_save = time.monotonic()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            save_manifest(manifest_path, manifest)
    return PrepareResult(store, len(dataset), done, len(dataset) - len(todo), store_size(store))


def _prepare_sample(dataset: SegmentationDataset, index: int, store: Path, data_dir: Path
                    ) -> list[tuple[str, str, dict[str, Any]]]:
    s = dataset.samples[index]
    # Stamps before decoding: a file changed while being read is decoded again next time.
    stamps = [source_stamp(s.image)] + ([] if s.label is None else [source_stamp(s.label)])
    image, label = dataset.load(index)
    records = []
    for kind, path, array, stamp in zip(("images", "labels"), (s.image, s.label), (image, label), stamps):
        key = source_key(path, data_dir)
        name = array_name(kind, key)
        write_atomic(store / name, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))
        records.append((kind, key, {"file": name, "shape": list(array.shape), "source_size": stamp[0],
                                    "source_mtime_ns": stamp[1], "checksum": array_checksum(array)}))
    return records


def check_store(store: str | Path, data_dir: str | Path, list_path: str | Path, *,
                classes: ClassInfo = CITYSCAPES, workers: int = 4, progress: bool = False) -> CheckResult:
    """Check a store against a data list: every listed file stored, its source unchanged, its array
    whole and equal to what was written (checksum). Never raises for bad data."""
    list_path, data_dir = Path(list_path), Path(data_dir)
    try:
        samples = read_list(list_path, data_dir)
        opened = PreparedStore(store, classes)
    except DgcnetError as error:
        return CheckResult(list_path, 0, [Problem(list_path, 0, None, str(error))])

    def check(s: Sample) -> list[Problem]:
        problems = []
        for kind, path in (("images", s.image), ("labels", s.label)):
            if path is None:
                continue
            entry = opened.entry(kind, path, data_dir)
            if entry is None:
                problems.append(Problem(list_path, s.line, path, f"not in the prepared store {opened.root}"))
                continue
            problem = entry.check_source()
            if problem:
                problems.append(Problem(list_path, s.line, path, problem))
            try:
                array = entry.open()
            except DgcnetError as error:
                problems.append(Problem(list_path, s.line, entry.array, str(error).removeprefix(f"{entry.array}: ")))
                continue
            if array_checksum(array) != entry.checksum:
                problems.append(Problem(list_path, s.line, entry.array,
                                        f"prepared array of {path} differs from what was written (checksum); "
                                        f"delete it and run `dgcnet prepare` again"))
        return problems

    found: list[Problem] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for problems in tqdm(pool.map(check, samples), total=len(samples), desc="check prepared", unit="sample",
                             disable=not progress):
            found.extend(problems)
    return CheckResult(list_path, len(samples), found)
