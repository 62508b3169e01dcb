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
