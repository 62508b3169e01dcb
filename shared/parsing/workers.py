"""Threads the engine lends its own C-level work to: hashing large pieces and inflating gzip.

``hashlib`` and the inflater (``shared/parsing/inflate.py``) release the GIL on large buffers, so
on two cores MD5, SHA-512 and decompression can run beside the parsing thread. Every use keeps
order and bounds the pieces in flight (two per hash object); the pool has a thread for each task
that can be pending at once. No I/O happens here: this is compute only, and the pool is shared
by every stream of a process.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from shared.parsing import native

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                native.share_malloc_arena()
                _pool = ThreadPoolExecutor(max_workers=5, thread_name_prefix="engine")
    return _pool


# Below this a hand-over costs more than the hashing it would move.
BACKGROUND_MIN_BYTES = 256 * 1024


class HashInBackground:
    """A hash object updated on a worker thread, large pieces in order, at most ``DEPTH`` pending.

    Two pending pieces let the faster of two hashes (and the caller) run ahead while the slower
    one catches up, instead of leaving a core idle at every piece.
    """

    DEPTH = 2
    __slots__ = ("_hash", "_pending")

    def __init__(self, hash_object: Any) -> None:
        self._hash = hash_object
        self._pending: deque[Future[None]] = deque()

    def update(self, data: bytes | memoryview) -> None:
        pending = self._pending
        if len(data) < BACKGROUND_MIN_BYTES:
            while pending:
                pending.popleft().result()
            self._hash.update(data)
            return
        if len(pending) >= self.DEPTH:
            pending.popleft().result()
        # Tasks of one hash object run one after another in submission order: each waits for
        # its predecessor inside the worker, so the order holds whichever thread takes it.
        previous = pending[-1] if pending else None
        pending.append(pool().submit(self._update_after, previous, data))

    def _update_after(self, previous: Future[None] | None, data: bytes | memoryview) -> None:
        if previous is not None:
            previous.result()
        self._hash.update(data)

    def result(self) -> Any:
        """The hash object, every piece applied."""
        while self._pending:
            self._pending.popleft().result()
        return self._hash
