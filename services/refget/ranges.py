"""Which residues a refget v2.0 sequence request asks for, or which status code refuses it.

Pure: the rules of the specification's "GET /sequence/{id}" (query ``start``/``end``, zero-based,
end exclusive; or one ``Range: bytes=first-last`` header, inclusive), each refusal with its code:

* 400: a parameter that is not a non-negative integer, a malformed Range header, or both forms;
* 416: a start at or past the end of the sequence, an end past it, or a start after the end on
  a sequence that is not circular (this server supports circular sequences);
* a Range past the end is cut at the end (206), as HTTP does; a Range whose first byte is past
  the end, or whose first byte is after its last, is 416.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
_INTEGER = re.compile(r"\d+")
# Past every sequence: a longer run of digits is read as this, never handed whole to int() (which
# refuses thousands of digits with an error, and is slow before that).
_BEYOND = 10**19


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= 19 else _BEYOND


@dataclass(frozen=True)
class Slice:
    """``[start, end)``; ``wraps``: a circular sequence read from ``start`` to its end, then ``[0, end)``."""

    start: int
    end: int
    partial: bool  # asked with a Range header: answered 206
    wraps: bool = False

    def size_in(self, length: int) -> int:
        return (length - self.start) + self.end if self.wraps else self.end - self.start


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _integer(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not _INTEGER.fullmatch(value):
        raise Refused(400, "bad_request", f"{name} must be a non-negative integer")
    return _number(value)


def requested_slice(length: int, circular: bool, start: str | None, end: str | None, range_header: str | None) -> Slice:
    """The slice a request asks for, given the sequence's length and whether it is circular."""
    if range_header is not None:
        if start is not None or end is not None:
            raise Refused(400, "bad_request", "use either start/end or a Range header, not both")
        match = _RANGE.fullmatch(range_header.strip())
        if match is None:
            raise Refused(400, "bad_request", "the Range header must be 'bytes=first-last'")
        first, last = _number(match.group(1)), _number(match.group(2))
        if first > last or first >= length:
            raise Refused(416, "range_not_satisfiable", f"the sequence has {length} residues")
        return Slice(first, min(last + 1, length), partial=True)
    begin, finish = _integer("start", start), _integer("end", end)
    begin = 0 if begin is None else begin
    finish = length if finish is None else finish
    if finish > length or (begin >= length and length > 0):
        raise Refused(416, "range_not_satisfiable", f"the sequence has {length} residues")
    if begin > finish:
        if not circular:
            raise Refused(416, "range_not_satisfiable", "start is after end on a sequence that is not circular")
        return Slice(begin, finish, partial=False, wraps=True)
    return Slice(begin, finish, partial=False)
