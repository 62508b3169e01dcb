"""The refget v2.0 slice rules, every status code the specification gives for them."""

from __future__ import annotations

import pytest

from services.refget.ranges import Refused, Slice, requested_slice

LINEAR, CIRCULAR = 230218, 5386


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("10", "10", Slice(10, 10, False)),
        ("10", "20", Slice(10, 20, False)),
        ("230208", None, Slice(230208, LINEAR, False)),
        (None, "5", Slice(0, 5, False)),
        ("230217", "230218", Slice(230217, LINEAR, False)),
        (None, None, Slice(0, LINEAR, False)),
        (None, "0", Slice(0, 0, False)),
    ],
)
def test_start_and_end(start: str | None, end: str | None, expected: Slice) -> None:
    assert requested_slice(LINEAR, False, start, end, None) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=10-19", Slice(10, 20, True)),
        ("bytes=10-999999", Slice(10, LINEAR, True)),  # cut at the end, as HTTP does
        ("bytes=0-0", Slice(0, 1, True)),
        ("bytes=230217-230217", Slice(230217, LINEAR, True)),
        ("bytes=0-" + "9" * 5000, Slice(0, LINEAR, True)),  # thousands of digits: to the end, no error
    ],
)
def test_range_headers(header: str, expected: Slice) -> None:
    assert requested_slice(LINEAR, False, None, None, header) == expected


def test_circular_sequences_wrap_across_the_origin() -> None:
    wrapped = requested_slice(CIRCULAR, True, "5374", "5", None)
    assert wrapped == Slice(5374, 5, False, wraps=True) and wrapped.size_in(CIRCULAR) == 17


@pytest.mark.parametrize(
    ("length", "circular", "start", "end", "header", "status"),
    [
        (LINEAR, False, "abc", "20", None, 400),
        (LINEAR, False, "-10", "-29", None, 400),
        (LINEAR, False, "abc", None, None, 400),
        (LINEAR, False, "1", "2", "bytes=1-2", 400),  # both forms
        (CIRCULAR, True, "67", "5387", None, 416),
        (CIRCULAR, True, "5386", "5375", None, 416),
        (CIRCULAR, True, "5386", "5386", None, 416),
        (CIRCULAR, True, "5386", "5", None, 416),
        (LINEAR, False, "220218", "671", None, 416),  # start after end, not circular
        (LINEAR, False, None, None, "units=20-30", 400),
        (LINEAR, False, None, None, "bytes=ab-19", 400),
        (LINEAR, False, None, None, "bytes=-10--19", 400),
        (LINEAR, False, None, None, "bytes=10--19", 400),
        (LINEAR, False, None, None, "bytes=-10-", 400),
        (LINEAR, False, None, None, "bytes==10-19", 400),
        (CIRCULAR, True, None, None, "bytes=5200-19", 416),
        (CIRCULAR, True, None, None, "bytes=5387-5391", 416),
        (CIRCULAR, True, None, None, "bytes=5386-5387", 416),
        (LINEAR, False, "9" * 5000, None, None, 416),  # thousands of digits: past the end, not a 500
        (LINEAR, False, None, None, "bytes=" + "9" * 5000 + "-" + "9" * 5001, 416),
    ],
)
def test_refusals(
    length: int, circular: bool, start: str | None, end: str | None, header: str | None, status: int
) -> None:
    with pytest.raises(Refused) as refused:
        requested_slice(length, circular, start, end, header)
    assert refused.value.status == status


def test_a_posted_collection_over_the_limit_is_refused_unparsed() -> None:
    """The refget service's one body (POST /comparison) is bounded by bytes before any parsing."""
    from fastapi.testclient import TestClient

    from services.refget.api import create_app
    from shared.runtime.settings import Settings

    client = TestClient(create_app(Settings(seqcol_max_post_bytes=1000, refget_public=True)))
    response = client.post("/comparison/x", content=b'{"names": [' + b'"a",' * 1000 + b'"a"]}')
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"
    huge = client.post("/comparison/x", content=b"{}", headers={"content-length": "9" * 5000})
    assert huge.status_code == 413  # a Content-Length of thousands of digits: refused, not a 500
