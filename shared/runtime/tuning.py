"""How the bulk stages' processes use the garbage collector and the allocator.

Both defaults suit a process of many small, long-lived objects; the parser, the persister and the
assembler instead pass megabyte message bodies and columns through, and build short-lived rows by
the million. Each setting below was measured on the 1 GiB benchmark FASTA (``bench/pipeline.py``).
"""

from __future__ import annotations

import ctypes
import gc
import platform

# Net container allocations between young collections (CPython's default: 700). The older
# generations keep CPython's schedule (after 10 collections of the one below): a cycle that
# outlives a young collection -- an exception's frames holding a batch body -- is found within
# ~5 M allocations, and rarer full collections measured no faster.
GC_THRESHOLDS = (50_000, 10, 10)

# glibc's mallopt parameters (malloc.h) and the values the bulk stages set.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's own ceiling for its sliding threshold
TRIM_THRESHOLD = 128 * 1024 * 1024


def relax_gc() -> None:
    """Collect cycles rarely, and never traverse what start-up allocated again.

    Under the default schedule (a young collection every 700 allocations, survivors promoted) the
    collector kept traversing the parser's pending rows and the start-up objects behind them: 17 %
    of the parser's CPU in a 1 GiB FASTA run (``perf``: ``gc_collect_main``, ``visit_decref``,
    ``visit_reachable``), and 9.3 against 7.1 s of CPU for the same parse, batching and encoding
    measured alone. What these stages allocate in bulk -- records, rows, columns, message bodies --
    holds no cycles, so reference counting frees it the moment it is dropped; the collector is only
    there for the rare cycle, which a rarer schedule finds just the same. (A failing handler is the
    likeliest maker of one -- a traceback holds the frames that hold the body -- and with the
    services' logging it makes none: ``tests/unit/test_runtime_tuning.py``.) A young generation of
    50,000 objects holds a few MiB at most.

    Call it once the process is wired (modules imported, clients built), just before it starts
    consuming: ``gc.freeze`` moves every object alive at that point to a generation that
    collections skip (they live as long as the process).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def keep_freed_buffers() -> bool:
    """Let glibc reuse freed message-sized buffers instead of returning them to the kernel.

    glibc serves a large allocation with a fresh ``mmap`` until its sliding threshold has grown
    past that size, and trims the heap's free top beyond twice that threshold: either way the next
    batch body (up to a few MiB) is faulted in page by page again. The persister took ~480,000 page
    faults per GiB and 1.4 s of system time; with these fixed thresholds, ~12,000 and 0.7 s, and its
    CPU fell from 5.2 to 4.2-4.6 s (peak RSS unchanged: 113-119 MiB). Allocations of 32 MiB and more
    still get their own mapping, and a heap keeps at most 128 MiB free at its top.

    Returns whether it applied (only on glibc; elsewhere the allocator keeps its defaults).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
