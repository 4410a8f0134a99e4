"""Shared makers of bad inputs for the fault-injection suite (see docs/failures.md).

Each test file here covers one class of fault: images, lists, configs, weights, full disks,
concurrent runs, signals, checkpoints. To add a case, add a maker here (or a parameter to an
existing test) and assert the one-line error, what was kept and what was not written.
"""
import errno
import io
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from tests.engine.test_train import make_dataset, tiny_overrides  # noqa: F401 (re-exported for the suite)


def png_bytes(height: int = 32, width: int = 64, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def broken_chunk_png() -> bytes:
    """A PNG whose image data continues in a chunk with an invalid type: Pillow raises SyntaxError."""
    b = png_bytes()
    i = b.index(b"IDAT")
    length = struct.unpack(">I", b[i - 4:i])[0]
    data = b[i + 4:i + 4 + length]
    half = length // 2
    return b[:i - 4] + _chunk(b"IDAT", data[:half]) + _chunk(b"\x00bad", data[half:]) + b[i + 8 + length:]


def bomb_png(height: int = 12000, width: int = 12000) -> bytes:
    """A PNG header declaring a huge 8-bit greyscale image, with a few bytes of data: decoding it
    would allocate height x width bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes(width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


# name -> bytes of an image file that cannot be decoded; each must give one line naming the file.
BAD_IMAGES = {
    "broken chunk (SyntaxError)": broken_chunk_png,
    "truncated": lambda: png_bytes()[:200],
    "garbage": lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "empty": lambda: b"",
    "not an image": lambda: b"hello, world\n",
    "bad header checksum": lambda: png_bytes()[:29] + b"\0\0\0\0" + png_bytes()[33:],
}


@pytest.fixture
def tiny_model():
    from dgcnet.models import build_model

    torch.manual_seed(0)
    return build_model("dgcnet_r18", 19).eval()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A real 2-iteration dgcnet_r18 run (checkpoints at 1 and 2) on tiny data; tests copy what
    they change."""
    from dgcnet.config import load_config
    from dgcnet.engine.train import train

    root = tmp_path_factory.mktemp("trained")
    data_list = make_dataset(root / "data", n=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(load_config(None, tiny_overrides(data_list, root / "run", steps=2, **{"run.save_every": 1})))
    finally:
        torch.set_num_threads(threads)
    return result, data_list


@pytest.fixture(scope="session")
def release_weights(tmp_path_factory):
    """dgcnet_r18 weights (random, seed 0) as a released dgcnet safetensors file."""
    from safetensors.torch import save_file

    from dgcnet.formats.convert import release_metadata
    from dgcnet.models import build_model

    torch.manual_seed(0)
    model = build_model("dgcnet_r18", 19)
    path = tmp_path_factory.mktemp("weights") / "r18.safetensors"
    save_file(model.state_dict(), str(path), metadata=release_metadata(model.info))
    return path


class FullDisk(io.FileIO):
    """A file on a disk that fills up after ``room`` bytes: writes then fail with ENOSPC."""

    room = 0

    def write(self, data):
        if len(data) > FullDisk.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        FullDisk.room -= len(data)
        return super().write(data)


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(room)``: every atomic write from now on finds only ``room`` bytes free."""
    import dgcnet.io

    def fill(room: int) -> None:
        FullDisk.room = room

        def fake_open(path, mode="r", *args, **kwargs):
            raw = FullDisk(path, mode.replace("b", "").replace("t", ""))
            return raw if "b" in mode else io.TextIOWrapper(raw)
        monkeypatch.setattr(dgcnet.io, "open", fake_open, raising=False)
    return fill
