"""MD5 and SHA-256 of the whole source object, computed as the parser reads it.

A user checks what arrived against what they sent (``source.md5``, ``source.sha256`` in the
status and the result). The hashing runs on a thread of its own -- ``hashlib`` releases the GIL on
large buffers -- so that it overlaps with parsing instead of adding to it; at most ``depth``
chunks wait for it (bounded memory: they are the chunks the parser already holds).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from types import TracebackType


class SourceDigests:
    def __init__(self, depth: int = 4) -> None:
        self._md5 = hashlib.md5()
        self._sha256 = hashlib.sha256()
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="source-digests", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._md5.update(chunk)
            self._sha256.update(chunk)

    def feed(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def finish(self) -> tuple[str, str]:
        """(MD5, SHA-256) in hex, once every chunk fed is hashed."""
        self._chunks.put(None)
        self._thread.join()
        return self._md5.hexdigest(), self._sha256.hexdigest()

    def abandon(self) -> None:
        """The parse stopped: end the thread without waiting for a result."""
        self._chunks.put(None)

    def __enter__(self) -> SourceDigests:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """A read that ends in an exception, whichever, abandons the digests."""
        if exc_type is not None:
            self.abandon()
