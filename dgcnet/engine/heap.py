"""Process-wide malloc settings for the CPU paths: keeping large freed blocks for reuse.

Nothing in the library switches them on by itself: the command line does, for eval, predict and
demo (and records it), and the training loaders do in their own worker processes.
"""
from __future__ import annotations

# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep large freed blocks for reuse instead of unmapping them.

    Library callers opt in by calling it.

    By default every allocation above 32 MiB is a fresh mmap, and the first touch of each of its
    pages is a page fault. A CPU forward at full resolution allocates many such temporaries, and
    faulting their pages in cost about a quarter of the fast path's time for dgcnet_r101 at
    512x1024 on a 2-core machine. Afterwards the process keeps its peak memory instead of returning
    it to the system. Returns False, changing nothing, where the C library has no ``mallopt``.
    """
    try:  # the process's own symbols: the C library is already loaded, nothing to search for
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError, TypeError):  # no ctypes, no glibc, or Windows
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def loader_worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of the training loaders: the worker process (its own, so nothing else is
    affected) keeps its freed memory, and the crops it builds for every sample reuse pages instead
    of faulting in fresh ones: about a third of a worker's augmentation time on a 2-core VM
    (`dgcnet benchmark --mode data`)."""
    keep_freed_memory()


def use_fast_heap(device_type: str) -> str:
    """For a run on ``device_type``: keep freed blocks when it is the CPU (process-wide, so only
    callers that own the process call this); returns the heap setting to record."""
    if device_type == "cpu" and keep_freed_memory():
        return "keep freed blocks"
    return "default"
