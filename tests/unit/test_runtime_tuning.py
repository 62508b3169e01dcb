"""The bulk stages' collector schedule and allocator thresholds (shared/runtime/tuning.py)."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.runtime.tuning import GC_THRESHOLDS, relax_gc


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
    from shared.runtime.tuning import keep_freed_buffers
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


# The rarer schedule rests on the bulk stages making no cycles that hold a batch. The likeliest
# place for one is a failing handler: an exception's traceback holds the frames that hold the body.
# A persister configured as the service is (its logging included) fails on one batch twenty times;
# prints how many frames in cyclic garbage still hold the body.
_FAILURE_CYCLES = textwrap.dedent(
    """
    import gc, uuid
    import psycopg
    import shared.rabbitmq.broker as broker
    from services.persister.handler import PersisterDeps, give_up, handle_persist
    from shared.runtime.logs import configure_logging
    from shared.runtime.settings import get_settings
    from shared.domain.stages import PERSIST
    from tests.builders import record, sequence_batch
    from tests.unit.fakes import FakePublisher, FakeUploads

    class Unreachable(FakeUploads):
        def store_batch(self, batch):
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    configure_logging("persister", "INFO", json=True)
    broker.time.sleep = lambda seconds: None  # the retry backoff
    deps = PersisterDeps(Unreachable(), FakePublisher())
    consumer = broker.Consumer(
        get_settings(), PERSIST, lambda m: handle_persist(m, deps), lambda m, why: give_up(m, why, deps)
    )
    body = sequence_batch(uuid.uuid4(), 1, 0, [record(0, residues="ACGT" * 1000)]).to_bytes()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    outcomes = {consumer._handle(body, previous=0, from_pipeline=True) for _ in range(20)}
    assert outcomes == {"requeue"}, outcomes
    gc.collect()
    print(sum(1 for o in gc.garbage if type(o).__name__ == "frame" and body in o.f_locals.values()))
    """
)


def test_a_failing_handler_leaves_no_cycle_holding_the_batch() -> None:
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", _FAILURE_CYCLES], capture_output=True, text=True, check=True, cwd=root)
    assert run.stdout.split() == ["0"], run.stdout + run.stderr[-2000:]
