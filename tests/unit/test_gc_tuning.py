"""The bulk stages' collector schedule (shared/gc_tuning.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from shared.gc_tuning import THRESHOLDS, relax_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_gc")
def test_relaxed_schedule_freezes_what_start_up_allocated() -> None:
    relax_gc()
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() > 0
    assert THRESHOLDS[0] > 700, "rarer than CPython's default young collection"


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
