"""Wait until something holds, with one deadline and one message: the one polling loop.

The tests, the benchmarks and the CLI all wait on the same kinds of thing (an upload reaching a
state, a process consuming its queue, a queue draining), and a hand-written deadline loop is easy
to get subtly wrong: a check after the deadline that is never made, a failure that does not say
what it was waiting for. ``poll_until`` is built on tenacity's ``Retrying``, the retry library the
project already uses, so its stop and wait rules are tenacity's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

T = TypeVar("T")


class StillWaiting(AssertionError):
    """The condition did not hold in time. An ``AssertionError``, so that a test that waits fails
    (rather than errors) with the message saying what it waited for and the last value seen."""


def poll_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    retry_on: tuple[type[BaseException], ...] = (),
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` every ``interval`` seconds until it returns a value that is neither ``None``
    nor ``False``, and return that value; raise ``StillWaiting`` after ``timeout`` seconds.

    ``retry_on`` names exceptions that count as "not yet" (a server restarting); any other
    exception ends the wait at once. ``describe`` adds context to the failure (logs, the state
    seen last), and is called only then.
    """

    def not_yet(value: T | None) -> bool:
        return value is None or value is False

    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry=retry_if_result(not_yet) | retry_if_exception_type(retry_on),
        reraise=False,
    )
    try:
        value = retrying(probe)
    except RetryError as exc:
        last = exc.last_attempt
        seen = f"last error {last.exception()!r}" if last.failed else f"last value {last.result()!r}"
        extra = f"\n{describe()}" if describe is not None else ""
        raise StillWaiting(f"{what}: not within {timeout:g} s ({seen}){extra}") from None
    assert value is not None and value is not False
    return value
