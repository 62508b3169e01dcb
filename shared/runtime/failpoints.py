"""Failpoints: named places where the fault tests make a service die on purpose.

``GENOBASE_FAILPOINT=persister.after_commit:3`` makes the process SIGKILL itself the third time it
passes that point -- no cleanup, no acknowledgement, exactly what a crash there would leave. It
lets the tests hit a precise moment (between a commit and its ack) that killing from outside can
only hit by luck. Unset, as everywhere outside those tests, a check is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_name, _, _count = os.environ.get("GENOBASE_FAILPOINT", "").partition(":")
_remaining: dict[str, int] = {_name: int(_count or 1)} if _name else {}


def failpoint(point: str) -> None:
    if point in _remaining:
        _remaining[point] -= 1
        if _remaining[point] <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
