"""The source object's digests: equal to hashlib's, and their thread ended when a read fails."""

from __future__ import annotations

import hashlib

import pytest

from services.parser.source_digests import SourceDigests
from shared.parsing.errors import ParseError, ParseErrorCode


def test_source_digests_match_hashlib_and_end_their_thread_when_the_read_fails() -> None:
    with SourceDigests() as digests:
        digests.feed(b"AC")
        digests.feed(b"GT")
    assert digests.finish() == (hashlib.md5(b"ACGT").hexdigest(), hashlib.sha256(b"ACGT").hexdigest())
    failed = SourceDigests()
    with pytest.raises(ParseError), failed:
        failed.feed(b"AC")
        raise ParseError(ParseErrorCode.INVALID_CHARACTER, "bad", 1, 1)
    failed._thread.join(5)
    assert not failed._thread.is_alive()  # abandoned: nothing waits for its result
