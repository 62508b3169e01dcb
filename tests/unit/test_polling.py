"""The one polling loop: returns the first truthy value, says what it waited for when it gives up."""

from __future__ import annotations

import itertools
import time

import pytest

from shared.runtime.polling import StillWaiting, poll_until


def test_returns_the_first_value_that_holds() -> None:
    counter = itertools.count()
    assert poll_until(lambda: n if (n := next(counter)) >= 3 else None, timeout=5, interval=0.01, what="three") == 3


def test_a_zero_is_a_value_but_false_and_none_are_not_yet() -> None:
    answers = iter([None, False, 0])
    assert poll_until(lambda: next(answers), timeout=5, interval=0.01, what="zero") == 0


def test_gives_up_after_the_timeout_with_what_it_waited_for_and_the_last_value() -> None:
    started = time.monotonic()
    with pytest.raises(StillWaiting, match=r"the queue to drain: not within 0.3 s \(last value False\)\nctx"):
        poll_until(lambda: False, timeout=0.3, interval=0.05, what="the queue to drain", describe=lambda: "ctx")
    assert 0.3 <= time.monotonic() - started < 2


def test_named_exceptions_are_not_yet_and_others_end_the_wait_at_once() -> None:
    calls = itertools.count()

    def flaky() -> str | None:
        if next(calls) < 2:
            raise ConnectionError("restarting")
        return "up"

    assert poll_until(flaky, timeout=5, interval=0.01, what="up", retry_on=(ConnectionError,)) == "up"
    with pytest.raises(StillWaiting, match="last error ConnectionError"):
        poll_until(
            lambda: (_ for _ in ()).throw(ConnectionError("down")),
            timeout=0.2,
            interval=0.05,
            what="down",
            retry_on=(ConnectionError,),
        )
    with pytest.raises(KeyError):
        poll_until(lambda: {}["missing"], timeout=5, interval=0.01, what="a bug")
