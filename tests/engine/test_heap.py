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
