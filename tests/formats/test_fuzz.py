"""Malformed files give DgcnetError (never another exception, a crash or a huge allocation)."""
import tracemalloc
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dgcnet.errors import DgcnetError
from dgcnet.formats.convert import read_weights
from dgcnet.formats.mindspore import encode_checkpoint, parse_checkpoint
from dgcnet.formats.convert import write_weights
from dgcnet.models import default_info

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SAMPLE = {"net.a.weight": torch.randn(4, 3), "net.a.bn.gamma": torch.ones(4), "global_step": torch.tensor([5])}
CKPT = encode_checkpoint(SAMPLE, crc=False)
CKPT_CRC = encode_checkpoint(SAMPLE, crc=True)


def _decode_or_error(data: bytes) -> None:
    tracemalloc.start()
    try:
        parse_checkpoint(data)
    except DgcnetError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 4 * len(data) + 64 * 1024


@SETTINGS
@given(st.binary(max_size=300))
def test_ckpt_garbage(data):
    _decode_or_error(data)


@SETTINGS
@given(st.integers(0, len(CKPT_CRC)), st.booleans())
def test_ckpt_truncated(cut, crc):
    data = CKPT_CRC if crc else CKPT
    _decode_or_error(data[:min(cut, len(data))])


@SETTINGS
@given(st.data())
def test_ckpt_mutated(data):
    blob = bytearray(CKPT)
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    _decode_or_error(bytes(blob))


@SETTINGS
@given(st.data())
def test_ckpt_forged_varints(data):
    """Replace a byte with a long varint (lengths and dims up to 2**63)."""
    position = data.draw(st.integers(0, len(CKPT) - 1))
    value = data.draw(st.integers(0, (1 << 63) - 1))
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    _decode_or_error(CKPT[:position] + bytes(out) + CKPT[position + 1:])


@pytest.fixture(scope="module")
def safetensors_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("st") / "w.safetensors"
    write_weights({"layer3.0.conv1.weight": torch.randn(3, 2)}, path, "safetensors",
                  info=default_info("dgcnet_r18"))
    return path.read_bytes()


def _read_file_or_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzzed.bin"
    path.write_bytes(data)
    try:
        read_weights(path)
    except DgcnetError as error:
        assert "\n" not in str(error)


@SETTINGS
@given(st.data())
def test_safetensors_truncated_mutated_and_forged(tmp_path, safetensors_bytes, data):
    blob = bytearray(safetensors_bytes[:data.draw(st.integers(0, len(safetensors_bytes)))])
    if blob and data.draw(st.booleans()):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    if len(blob) >= 8 and data.draw(st.booleans()):  # forged header length
        blob[:8] = data.draw(st.integers(0, (1 << 64) - 1)).to_bytes(8, "little")
    _read_file_or_error(tmp_path, bytes(blob))


@SETTINGS
@given(st.binary(max_size=200))
def test_any_garbage_file(tmp_path, data):
    _read_file_or_error(tmp_path, data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_torch_file_truncated_or_mutated(tmp_path, data):
    path = tmp_path / "w.pth"
    torch.save({"a.weight": torch.randn(3)}, path)
    blob = bytearray(path.read_bytes())
    blob = blob[:data.draw(st.integers(0, len(blob)))]
    if blob and data.draw(st.booleans()):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    _read_file_or_error(tmp_path, bytes(blob))
