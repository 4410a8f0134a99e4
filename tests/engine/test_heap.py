"""Keeping large freed blocks: glibc's malloc serves them from the heap afterwards."""
import ctypes
import subprocess
import sys

import pytest
import torch

from dgcnet.engine import heap
from dgcnet.models import build_model
from dgcnet.models.fast import optimize_for_inference

MMAPPED_BYTES_AFTER_64_MIB = """
import ctypes, sys, torch
from dgcnet.engine.heap import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_memory()
before = libc.mallinfo2().hblkhd
tensor = torch.ones(16 * 2**20)  # 64 MiB
print(libc.mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_keep_freed_memory_serves_large_tensors_from_the_heap():
    def mmapped(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", MMAPPED_BYTES_AFTER_64_MIB, mode], capture_output=True,
                              text=True, check=True)
        return int(done.stdout.split()[-1])

    assert mmapped("default") >= 64 * 2**20  # glibc maps large blocks fresh...
    assert mmapped("keep") < 2**20           # ...unless told to keep them in the heap


def test_the_fast_path_changes_no_malloc_setting(monkeypatch):
    """Building the fast inference copy leaves the process's malloc alone; only an explicit call changes it."""
    def refuse(*args, **kwargs):
        raise AssertionError("a process-wide malloc setting was changed")

    monkeypatch.setattr(ctypes, "CDLL", refuse)
    monkeypatch.setattr(heap, "keep_freed_memory", refuse)
    fast = optimize_for_inference(build_model("dgcnet_r18"))
    assert fast(torch.zeros(1, 3, 33, 33)).shape == (1, 19, 5, 5)


HUGE_PAGES_UNDER_A_TENSOR = """
import sys, torch
from dgcnet.engine.heap import keep_freed_memory, use_huge_pages

if sys.argv[1] == "huge":
    assert keep_freed_memory() and use_huge_pages(256 * 2**20)
tensor = torch.ones(16 * 2**20)  # 64 MiB
address = tensor.data_ptr() + tensor.nbytes // 2  # its middle: the reserved region starts at a 2 MiB boundary
eligible = None
for line in open("/proc/self/smaps"):
    fields = line.split()
    if "-" in fields[0] and len(fields) >= 5:
        start, end = (int(v, 16) for v in fields[0].split("-"))
        inside = start <= address < end
    elif inside and fields[0] == "THPeligible:":
        eligible = int(fields[1])
print(eligible)
"""


def _thp_mode() -> str:
    try:
        return heap.THP_SETTING.read_text()
    except OSError:
        return ""


@pytest.mark.skipif("[madvise]" not in _thp_mode(), reason="transparent huge pages on request (madvise)")
def test_huge_pages_back_the_tensors_allocated_afterwards():
    def eligible(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", HUGE_PAGES_UNDER_A_TENSOR, mode], capture_output=True,
                              text=True, check=True)
        return int(done.stdout.split()[-1])

    assert eligible("default") == 0  # 4 KiB pages unless asked...
    assert eligible("huge") == 1     # ...and 2 MiB pages in the region reserved and advised


def test_huge_pages_are_skipped_where_the_kernel_has_none(monkeypatch, tmp_path):
    monkeypatch.setattr(heap, "_reserved", False)  # whatever an earlier test in this process did
    monkeypatch.setattr(heap, "THP_SETTING", tmp_path / "missing")
    assert heap.use_huge_pages() is False
    setting = tmp_path / "enabled"
    setting.write_text("always madvise [never]\n")
    monkeypatch.setattr(heap, "THP_SETTING", setting)
    assert heap.use_huge_pages() is False


def test_huge_pages_are_reserved_once_per_process(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("reserved again")

    monkeypatch.setattr(heap, "_reserved", True)
    monkeypatch.setattr(ctypes, "CDLL", refuse)
    assert heap.use_huge_pages() is True  # eval after the demo's training, or twice in one process
