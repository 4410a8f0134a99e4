"""Process-wide malloc settings for the CPU paths: keeping large freed blocks for reuse, and
backing the heap with transparent huge pages.

Nothing in the library switches them on by itself: the command line does, for eval, predict and
demo (and records it), and the training loaders keep freed blocks in their own worker processes.
"""
from __future__ import annotations

from pathlib import Path

# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = -1  # as a M_TRIM_THRESHOLD value: never return the heap's top to the system
MADV_HUGEPAGE = 14  # madvise advice (linux/mman.h)
HUGE_PAGE = 2 * 2**20
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
_reserved = False  # use_huge_pages has reserved its region in this process


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep large freed blocks for reuse instead of unmapping them.

    Library callers opt in by calling it.

    By default every allocation above 32 MiB is a fresh mmap, and the first touch of each of its
    pages is a page fault. A CPU forward at full resolution allocates many such temporaries, and
    faulting their pages in cost about a quarter of the fast path's time for dgcnet_r101 at
    512x1024 on a 2-core machine. Afterwards the process keeps its peak memory instead of returning
    it to the system (the heap never shrinks). Returns False, changing nothing, where the C
    library has no ``mallopt``.
    """
    try:  # the process's own symbols: the C library is already loaded, nothing to search for
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError, TypeError):  # no ctypes, no glibc, or Windows
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


def use_huge_pages(reserve: int | None = None) -> bool:
    """Grow the heap by ``reserve`` bytes of address space (default: a quarter of the physical
    memory, at most 8 GiB), ask the kernel for 2 MiB transparent huge pages there, and give it
    back to malloc, which serves the next allocations from it. Nothing is touched: a page
    becomes memory when a tensor first writes it.

    Call it once, after ``keep_freed_memory`` (which keeps the region in the heap) and before the
    model loads, so that weights and feature maps land there. The convolutions stream weights
    and feature maps far larger than the TLB covers with 4 KiB pages: on a 2-core VM dgcnet_r101
    at 512x1024 took about 8% less time in bf16 and in fp32 (``benchmarks/huge_pages.py``).

    Returns False, changing nothing, where the kernel has no transparent huge pages or they are
    switched off; True without reserving where they are on for all memory already, or where an
    earlier call reserved.
    """
    global _reserved
    if _reserved:
        return True
    try:
        setting = THP_SETTING.read_text()
    except OSError:  # not Linux, or no transparent huge pages
        return False
    if "[always]" in setting:
        return True
    if "[madvise]" not in setting:
        return False
    try:
        import ctypes
        import os

        libc = ctypes.CDLL(None, use_errno=True)
        malloc, free, madvise = libc.malloc, libc.free, libc.madvise
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ImportError, OSError, AttributeError, ValueError):
        return False
    malloc.argtypes, malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
    free.argtypes, free.restype = (ctypes.c_void_p,), None
    madvise.argtypes, madvise.restype = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_int
    size = reserve if reserve is not None else min(physical // 4, 8 * 2**30)
    block = malloc(size)
    if not block:
        return False
    start = -(-block // HUGE_PAGE) * HUGE_PAGE  # whole huge pages inside the block
    length = (block + size - start) // HUGE_PAGE * HUGE_PAGE
    _reserved = length > 0 and madvise(start, length, MADV_HUGEPAGE) == 0
    free(block)  # back to malloc, not to the system: keep_freed_memory made the heap never shrink
    return _reserved


def loader_worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of the training loaders: the worker process (its own, so nothing else is
    affected) keeps its freed memory, and the crops it builds for every sample reuse pages instead
    of faulting in fresh ones: about a third of a worker's augmentation time on a 2-core VM
    (`dgcnet benchmark --mode data`)."""
    keep_freed_memory()


def use_fast_heap(device_type: str) -> str:
    """For a run on ``device_type``: keep freed blocks and use huge pages when it is the CPU
    (process-wide, so only callers that own the process call this, before loading the model);
    returns the heap setting to record."""
    if device_type != "cpu" or not keep_freed_memory():
        return "default"
    return "keep freed blocks, huge pages" if use_huge_pages() else "keep freed blocks"
