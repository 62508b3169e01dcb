"""The engine's hot loops in C (``_native.c``), where the build compiled them; None elsewhere.

The pure-Python paths give the same events; tests set ``accelerator`` to None to check that.
"""

from __future__ import annotations

from types import ModuleType

accelerator: ModuleType | None
try:
    from shared.parsing import _native

    accelerator = _native
except ImportError:  # pragma: no cover - depends on the build
    accelerator = None


def share_malloc_arena() -> None:
    """Let threads started from now on share malloc's main arena (glibc; see ``_native.c``).

    A process whose threads pass megabyte buffers around (the parser: range prefetch, inflating,
    hashing, publishing) keeps tens of MiB more resident with one arena per thread. Call it at
    start-up, before any thread is started.
    """
    if accelerator is not None:
        accelerator.share_malloc_arena()
