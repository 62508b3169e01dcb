"""The bulk stages' collector schedule and allocator thresholds (shared/runtime_tuning.py)."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterator

import pytest

from shared.runtime_tuning import GC_THRESHOLDS, relax_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_gc")
def test_relaxed_schedule_freezes_what_start_up_allocated() -> None:
    relax_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restored_gc")
def test_cycles_made_after_it_are_still_collected() -> None:
    relax_gc()

    class Node:
        def __init__(self) -> None:
            self.me = self

    ref = weakref.ref(Node())
    assert ref() is not None  # only a cycle holds it
    gc.collect()
    assert ref() is None


# A persister's step: a few batch-sized buffers alive at once (a body, its decoded columns, the
# COPY buffer), then all freed. Under glibc's sliding thresholds the heap's free top then exceeds
# the trim threshold and is handed back, so every step faults its pages in again. Prints the page
# faults taken; in a process of its own, because the thresholds are process-wide.
_FAULTS = textwrap.dedent(
    """
    import resource, sys
    from shared.runtime_tuning import keep_freed_buffers
    if sys.argv[1] == "tuned":
        assert keep_freed_buffers()
    size = 6 * 1024 * 1024
    for step in range(40):
        if step == 4:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        buffers = [bytes([step]) * size for _ in range(3)]  # written in full
        del buffers
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str) -> int:
    run = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    return int(run.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_freed_buffers_are_reused_without_faulting_pages_in_again() -> None:
    pages = 36 * 3 * 6 * 1024 * 1024 // 4096  # 36 steps, each faulting its three buffers in afresh
    default, tuned = _faults("default"), _faults("tuned")
    assert default > pages // 2, f"the defaults took {default} page faults: the step no longer shows the cost"
    assert tuned < pages // 50, f"{tuned} page faults with the thresholds set"
