"""Which of an object's attributes no ticket signs: the pure rule behind ``ObjectStat``."""

from __future__ import annotations

from shared.s3.store import KEPT_UNSIGNED_HEADERS, UPLOAD_CONTENT_TYPE, unsigned_attributes


def test_an_object_as_a_ticket_wrote_it_carries_nothing_unsigned() -> None:
    headers = {"content-type": UPLOAD_CONTENT_TYPE, "content-length": "8", "etag": '"e"', "x-rgw-object-type": "Normal"}
    assert unsigned_attributes(headers) == ()


def test_every_kept_unsigned_header_is_named() -> None:
    headers = {"content-type": "text/html", "x-amz-meta-b": "1", "x-amz-meta-a": "2"}
    headers |= {name: "x" for name in KEPT_UNSIGNED_HEADERS}
    found = unsigned_attributes(headers)
    assert found[:2] == ("x-amz-meta-a", "x-amz-meta-b")
    assert set(found) == {"x-amz-meta-a", "x-amz-meta-b", "content-type", *KEPT_UNSIGNED_HEADERS}


def test_an_empty_header_counts_for_nothing() -> None:
    assert unsigned_attributes({"cache-control": "", "content-type": UPLOAD_CONTENT_TYPE}) == ()
