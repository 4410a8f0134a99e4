"""The pure-Python MindSpore .ckpt codec against real MindSpore 2.10 output and hand-built records."""
import zlib

import numpy as np
import pytest
import torch

from dgcnet.errors import DgcnetError
from dgcnet.formats import mindspore
from dgcnet.formats.mindspore import encode_checkpoint, parse_checkpoint, read_checkpoint


@pytest.mark.parametrize("name", ["ms_subset.ckpt", "ms_subset_crc.ckpt"])
def test_reader_returns_the_arrays_mindspore_wrote(ms_reference, name):
    expected = np.load(ms_reference / "ms_subset_expected.npz")
    tensors = read_checkpoint(ms_reference / name)
    assert list(tensors) == expected.files
    for tag in expected.files:
        array = tensors[tag].numpy()
        assert array.dtype == expected[tag].dtype and array.shape == expected[tag].shape, tag
        assert array.tobytes() == expected[tag].tobytes(), tag


@pytest.mark.parametrize("name,crc", [("ms_subset.ckpt", False), ("ms_subset_crc.ckpt", True)])
def test_writer_reproduces_mindspore_files_byte_for_byte(ms_reference, name, crc):
    expected = np.load(ms_reference / "ms_subset_expected.npz")
    tensors = {tag: torch.from_numpy(expected[tag]) for tag in expected.files}
    assert encode_checkpoint(tensors, crc=crc) == (ms_reference / name).read_bytes()


def test_crc_mismatch_is_refused(ms_reference, tmp_path):
    data = bytearray((ms_reference / "ms_subset_crc.ckpt").read_bytes())
    data[1000] ^= 0x01  # one flipped bit inside a tensor
    path = tmp_path / "bad.ckpt"
    path.write_bytes(bytes(data))
    with pytest.raises(DgcnetError, match="CRC mismatch"):
        read_checkpoint(path)


ALL_DTYPES = [torch.bool, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16,
              torch.uint32, torch.uint64, torch.float16, torch.float32, torch.float64, torch.bfloat16]


@pytest.mark.parametrize("crc", [False, True])
def test_every_dtype_round_trips_bit_exact(crc):
    generator = torch.Generator().manual_seed(1)
    tensors = {}
    for i, dtype in enumerate(ALL_DTYPES):
        raw = torch.randint(0, 256, (2 * 3 * 8,), dtype=torch.uint8, generator=generator)
        tensors[f"t{i}.{dtype}"] = raw.view(dtype).reshape(2, 3, -1) if dtype != torch.bool else raw[:6].bool().reshape(2, 3)
    tensors["scalar"] = torch.tensor(3.5)
    tensors["label"] = "Ölmühle 🚗"
    decoded = parse_checkpoint(encode_checkpoint(tensors, crc=crc))
    assert list(decoded) == list(tensors)
    for tag, value in tensors.items():
        if isinstance(value, str):
            assert decoded[tag] == value
        else:
            assert decoded[tag].dtype == value.dtype and decoded[tag].shape == value.shape
            assert torch.equal(decoded[tag].view(torch.uint8), value.view(torch.uint8)) if value.dim() \
                else torch.equal(decoded[tag], value)


def _record(tag: bytes, tensor: bytes) -> bytes:
    value = b"\x0a" + bytes([len(tag)]) + tag + b"\x12" + mindspore._varint(len(tensor)) + tensor
    return b"\x0a" + mindspore._varint(len(value)) + value


def test_packed_dims_mindspore1_scalar_and_split_records():
    content = np.arange(6, dtype=np.float32).tobytes()
    packed = b"\x0a\x02\x02\x03" + b"\x12\x07Float32" + b"\x1a\x18" + content  # dims [2, 3] packed
    scalar_1x = b"\x08\x00" + b"\x12\x05Int32" + b"\x1a\x04" + (7).to_bytes(4, "little")  # dims [0]
    # One (4,) float32 tensor written as two records with the same tag and full dims.
    half = b"\x08\x04" + b"\x12\x07Float32" + b"\x1a\x08"
    data = (_record(b"a", packed) + _record(b"global_step", scalar_1x)
            + _record(b"s", half + np.float32([1, 2]).tobytes()) + _record(b"s", half + np.float32([3, 4]).tobytes()))
    decoded = parse_checkpoint(data)
    assert torch.equal(decoded["a"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert decoded["global_step"].shape == () and int(decoded["global_step"]) == 7
    assert torch.equal(decoded["s"], torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_large_tensors_are_split_like_mindspore(monkeypatch):
    monkeypatch.setattr(mindspore, "SLICE_BYTES", 40)
    value = torch.arange(7 * 3, dtype=torch.float32).reshape(7, 3)  # 84 bytes -> 3 records: rows 3, 2, 2
    data = encode_checkpoint({"w": value})
    assert data.count(b"\x0a\x01w") == 3
    assert torch.equal(parse_checkpoint(data)["w"], value)


def test_zero_size_tensors_are_not_written():
    assert parse_checkpoint(encode_checkpoint({"empty": torch.zeros(0, 3), "x": torch.ones(1)})).keys() == {"x"}


def test_duplicate_tag_that_is_not_a_split_is_refused():
    data = encode_checkpoint({"a": torch.ones(2)}) + encode_checkpoint({"b": torch.ones(2)}) + \
        encode_checkpoint({"a": torch.ones(2)})
    with pytest.raises(DgcnetError, match="appears twice"):
        parse_checkpoint(data)


def test_forged_sizes_fail_before_allocating():
    # dims claim 2**40 float32 values, the content has 4 bytes: refused from the sizes alone.
    tensor = b"\x08" + mindspore._varint(1 << 40) + b"\x12\x07Float32" + b"\x1a\x04\x00\x00\x00\x00"
    with pytest.raises(DgcnetError, match="needs 4398046511104 bytes, the file holds 4"):
        parse_checkpoint(_record(b"big", tensor))
    # A record length of 2**60 in a 20-byte file.
    with pytest.raises(DgcnetError, match="runs past the end"):
        parse_checkpoint(b"\x0a" + mindspore._varint(1 << 60) + b"\x0a\x01x" + bytes(8))
    with pytest.raises(DgcnetError, match="empty"):
        parse_checkpoint(b"")
    # Product of dims that overflows 64 bits.
    tensor = b"".join(b"\x08" + mindspore._varint((1 << 63) - 1) for _ in range(3)) + b"\x12\x04Int8\x1a\x00"
    with pytest.raises(DgcnetError, match="impossibly large"):
        parse_checkpoint(_record(b"huge", tensor))


def test_crc_is_the_zlib_crc32_of_the_records(ms_reference):
    plain = (ms_reference / "ms_subset.ckpt").read_bytes()
    with_crc = (ms_reference / "ms_subset_crc.ckpt").read_bytes()
    assert with_crc == plain + b"crc_num" + zlib.crc32(plain).to_bytes(10, "big")
