"""MindSpore ``.ckpt`` files read and written in pure Python (no MindSpore, no protobuf package).

A checkpoint is a concatenation of one-tensor protobuf records, no header::

    message Checkpoint { repeated Value value = 1; }
    message Value { required string tag = 1; required TensorProto tensor = 2; }
    message TensorProto { repeated int64 dims = 1; required string tensor_type = 2;
                          required bytes tensor_content = 3; }

Each record is ``0x0A varint(len) Value``. Content is raw little-endian C-order bytes. MindSpore
splits tensors over 512 MiB into consecutive records with the same tag and full dims; a 0-d
tensor has no dims (MindSpore 1.x wrote dims [0]); zero-size tensors are not written. With
``crc_check=True`` the file ends with ``b"crc_num"`` and the CRC-32 of everything before it as
10 big-endian bytes. The writer emits exactly what MindSpore 2.x writes: dims unpacked, fields
in the order dims, tensor_type, tensor_content.
"""
from __future__ import annotations

import math
import sys
import zlib
from pathlib import Path
from typing import Iterator, Mapping

import torch

from dgcnet.errors import DgcnetError
from dgcnet.io import atomic_write

CRC_MARK = b"crc_num"
CRC_TRAILER_SIZE = len(CRC_MARK) + 10
# MindSpore's SLICE_SIZE: tensors above 512 MiB are written as several records.
SLICE_BYTES = 512 * 1024 * 1024

_TORCH_DTYPES: dict[str, torch.dtype] = {
    "Bool": torch.bool,
    "Int8": torch.int8, "Int16": torch.int16, "Int32": torch.int32, "Int64": torch.int64,
    "UInt8": torch.uint8, "UInt16": torch.uint16, "UInt32": torch.uint32, "UInt64": torch.uint64,
    "Float16": torch.float16, "Float32": torch.float32, "Float64": torch.float64,
    "BFloat16": torch.bfloat16,
}
_TYPE_NAMES = {dtype: name for name, dtype in _TORCH_DTYPES.items()}

# Protobuf wire types.
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5

if sys.byteorder != "little":  # tensor contents are little-endian and copied as raw bytes
    raise ImportError("dgcnet.formats.mindspore needs a little-endian machine")


class _Reader:
    """Protobuf wire-format cursor over ``data[start:end]`` that never reads past ``end``."""

    def __init__(self, data: memoryview, start: int, end: int, where: str) -> None:
        self.data, self.pos, self.end, self.where = data, start, end, where

    def fail(self, what: str) -> DgcnetError:
        return DgcnetError(f"{self.where}: not a valid MindSpore checkpoint: {what} at byte {self.pos}")

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= self.end:
                raise self.fail("truncated varint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift >= 70:
                raise self.fail("varint longer than 10 bytes")

    def length_delimited(self) -> tuple[int, int]:
        """Return (start, end) of a length-prefixed field, checked against the bytes left."""
        length = self.varint()
        if length > self.end - self.pos:
            raise self.fail(f"length {length} runs past the end ({self.end - self.pos} bytes left)")
        start = self.pos
        self.pos += length
        return start, self.pos

    def key(self) -> tuple[int, int]:
        key = self.varint()
        return key >> 3, key & 7

    def skip(self, wire_type: int) -> None:
        if wire_type == _VARINT:
            self.varint()
        elif wire_type == _LENGTH:
            self.length_delimited()
        elif wire_type in (_FIXED64, _FIXED32):
            size = 8 if wire_type == _FIXED64 else 4
            if size > self.end - self.pos:
                raise self.fail("truncated fixed-size field")
            self.pos += size
        else:
            raise self.fail(f"unsupported wire type {wire_type}")


def _parse_tensor(reader: _Reader) -> tuple[list[int], str, memoryview]:
    dims: list[int] = []
    tensor_type: str | None = None
    content: memoryview | None = None
    while reader.pos < reader.end:
        field, wire_type = reader.key()
        if field == 1 and wire_type == _VARINT:
            dims.append(reader.varint())
        elif field == 1 and wire_type == _LENGTH:  # packed dims
            start, end = reader.length_delimited()
            packed = _Reader(reader.data, start, end, reader.where)
            while packed.pos < packed.end:
                dims.append(packed.varint())
        elif field == 2 and wire_type == _LENGTH:
            start, end = reader.length_delimited()
            try:
                tensor_type = bytes(reader.data[start:end]).decode("utf-8")
            except UnicodeDecodeError:
                raise reader.fail("tensor_type is not UTF-8") from None
        elif field == 3 and wire_type == _LENGTH:
            start, end = reader.length_delimited()
            content = reader.data[start:end]
        else:
            reader.skip(wire_type)
    if tensor_type is None or content is None:
        raise reader.fail("tensor without tensor_type or tensor_content")
    if any(d >= 1 << 63 for d in dims):
        raise reader.fail(f"negative dimension in {dims}")
    return dims, tensor_type, content


def _parse_value(reader: _Reader) -> tuple[str, list[int], str, memoryview]:
    tag: str | None = None
    tensor: tuple[list[int], str, memoryview] | None = None
    while reader.pos < reader.end:
        field, wire_type = reader.key()
        if field == 1 and wire_type == _LENGTH:
            start, end = reader.length_delimited()
            try:
                tag = bytes(reader.data[start:end]).decode("utf-8")
            except UnicodeDecodeError:
                raise reader.fail("tag is not UTF-8") from None
        elif field == 2 and wire_type == _LENGTH:
            start, end = reader.length_delimited()
            tensor = _parse_tensor(_Reader(reader.data, start, end, reader.where))
        else:
            reader.skip(wire_type)
    if tag is None or tensor is None:
        raise reader.fail("record without tag or tensor")
    return (tag, *tensor)


def _records(data: memoryview, where: str) -> Iterator[tuple[str, list[int], str, memoryview]]:
    """Yield (tag, dims, tensor_type, content) per record; verifies the CRC trailer if present."""
    end = len(data)
    if end >= CRC_TRAILER_SIZE and bytes(data[end - CRC_TRAILER_SIZE:end - 10]) == CRC_MARK:
        end -= CRC_TRAILER_SIZE
        stored = int.from_bytes(data[end + len(CRC_MARK):], "big")
        actual = zlib.crc32(data[:end])
        if stored != actual:
            raise DgcnetError(f"{where}: MindSpore checkpoint CRC mismatch "
                              f"(stored {stored:#010x}, computed {actual:#010x}): the file is corrupt")
    reader = _Reader(data, 0, end, where)
    while reader.pos < end:
        field, wire_type = reader.key()
        if field != 1 or wire_type != _LENGTH:
            raise reader.fail(f"unexpected field {field} (wire type {wire_type})")
        start, stop = reader.length_delimited()
        yield _parse_value(_Reader(data, start, stop, where))


def _to_tensor(tag: str, dims: list[int], tensor_type: str, content: bytes, where: str) -> torch.Tensor | str:
    if tensor_type == "str":
        if len(content) % 4:
            raise DgcnetError(f"{where}: {tag}: str content is not UTF-32 ({len(content)} bytes)")
        try:
            return content.decode("utf-32-le")
        except UnicodeDecodeError:
            raise DgcnetError(f"{where}: {tag}: str content is not valid UTF-32") from None
    dtype = _TORCH_DTYPES.get(tensor_type)
    if dtype is None:
        raise DgcnetError(f"{where}: {tag}: unsupported tensor_type {tensor_type!r}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    if dims == [0] and len(content) == itemsize:  # MindSpore 1.x wrote a scalar with dims [0]
        dims = []
    # A zero dim makes the product 0 whatever the others: check the others on their own, so that
    # [0, 2^62, 2^62] is refused here rather than overflowing torch's stride calculation.
    if math.prod(d for d in dims if d) * itemsize >= 2**62:
        raise DgcnetError(f"{where}: {tag}: {tensor_type} shape {dims} is impossibly large")
    expected = math.prod(dims) * itemsize
    if expected != len(content):
        raise DgcnetError(f"{where}: {tag}: {tensor_type} shape {dims} needs {expected} bytes, "
                          f"the file holds {len(content)}")
    if not content:
        return torch.empty(dims, dtype=dtype)
    return torch.frombuffer(bytearray(content), dtype=dtype).reshape(dims)


def parse_checkpoint(data: bytes, where: str = "<bytes>") -> dict[str, torch.Tensor | str]:
    """Decode checkpoint bytes into {tag: tensor} in file order (``str`` entries as Python str)."""
    if not data:
        raise DgcnetError(f"{where}: not a valid MindSpore checkpoint: the file is empty")
    view = memoryview(data)
    # Records of one split tensor are consecutive; gather their contents before decoding.
    gathered: dict[str, tuple[list[int], str, list[memoryview]]] = {}
    previous = None
    for tag, dims, tensor_type, content in _records(view, where):
        if tag in gathered:
            first_dims, first_type, parts = gathered[tag]
            if tag != previous or (dims, tensor_type) != (first_dims, first_type):
                raise DgcnetError(f"{where}: tag {tag!r} appears twice")
            parts.append(content)
        else:
            gathered[tag] = (dims, tensor_type, [content])
        previous = tag
    return {tag: _to_tensor(tag, dims, tensor_type, b"".join(parts), where)
            for tag, (dims, tensor_type, parts) in gathered.items()}


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor | str]:
    """Read a MindSpore .ckpt (1.x or 2.x, with or without CRC) into {tag: tensor} in file order."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DgcnetError(f"{path}: cannot read: {error.strerror}") from None
    return parse_checkpoint(data, str(path))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LENGTH) + _varint(len(payload)) + payload


def _tensor_records(tag: str, value: torch.Tensor | str) -> Iterator[bytes]:
    if isinstance(value, str):
        tensor = _field(2, b"str") + _field(3, value.encode("utf-32-le"))
        yield _field(1, _field(1, tag.encode("utf-8")) + _field(2, tensor))
        return
    if value.dtype not in _TYPE_NAMES:
        raise DgcnetError(f"{tag}: dtype {value.dtype} has no MindSpore tensor_type")
    value = value.detach().cpu().contiguous()
    header = b"".join(_varint(1 << 3 | _VARINT) + _varint(d) for d in value.shape)
    header += _field(2, _TYPE_NAMES[value.dtype].encode())
    slices = math.ceil(value.nbytes / SLICE_BYTES)
    parts = torch.tensor_split(value, slices) if slices > 1 else (value,)
    for part in parts:
        content = part.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        yield _field(1, _field(1, tag.encode("utf-8")) + _field(2, header + _field(3, content)))


def _file_chunks(tensors: Mapping[str, torch.Tensor | str], crc: bool) -> Iterator[bytes]:
    checksum = 0
    for tag, value in tensors.items():
        if isinstance(value, torch.Tensor) and value.numel() == 0:
            continue  # MindSpore does not write zero-size tensors
        for record in _tensor_records(tag, value):
            checksum = zlib.crc32(record, checksum)
            yield record
    if crc:
        yield CRC_MARK + checksum.to_bytes(10, "big")


def encode_checkpoint(tensors: Mapping[str, torch.Tensor | str], crc: bool = False) -> bytes:
    """Encode {tag: tensor} exactly as MindSpore writes it (``crc`` = its ``crc_check=True``)."""
    return b"".join(_file_chunks(tensors, crc))


def write_checkpoint(path: str | Path, tensors: Mapping[str, torch.Tensor | str], crc: bool = False) -> None:
    """Write a .ckpt that ``mindspore.load_checkpoint`` reads, one record at a time (atomically)."""
    with atomic_write(path) as f:
        for chunk in _file_chunks(tensors, crc):
            f.write(chunk)


def looks_like_checkpoint(head: bytes) -> bool:
    """True when the first bytes start a record whose Value starts with its tag field."""
    if len(head) < 3 or head[0] != 0x0A:
        return False
    reader = _Reader(memoryview(head), 1, len(head), "")
    try:
        reader.varint()
        return reader.pos < len(head) and head[reader.pos] == 0x0A
    except DgcnetError:
        return False
