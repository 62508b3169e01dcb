from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

import pytest

from shared.parsing.alphabet import get_alphabet
from shared.parsing.engine import Limits, SequenceStream
from shared.parsing.errors import ParseError
from shared.parsing.records import Event, RecordEnd, RecordStart, Residues, WholeRecord


def collect(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Fold the event stream back into whole records (fine in tests: the inputs are small)."""
    records: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, WholeRecord):
            fields = event._asdict()
            fields["sequence"] = fields.pop("data")
            if fields["quality"] is None:
                del fields["quality"]
            fields["length"] = len(event.data)
            records.append(fields)
        elif isinstance(event, RecordStart):
            records.append({**event._asdict(), "sequence": b""})
        elif isinstance(event, Residues):
            assert records[-1]["ordinal"] == event.ordinal
            records[-1]["sequence"] += event.data
        else:
            assert isinstance(event, RecordEnd)
            records[-1].update(event._asdict())
    return records


def events_of(
    data: bytes,
    chunk: int | None = None,
    filename: str | None = None,
    alphabet: str = "nucleotide",
    limits: Limits | None = None,
    fmt: str | None = None,
) -> list[Event]:
    """The engine's events for ``data`` fed in pieces of ``chunk`` bytes (all at once by default)."""
    stream = SequenceStream(get_alphabet(alphabet), filename, fmt, limits)
    size = chunk or max(len(data), 1)
    events: list[Event] = []
    for i in range(0, len(data), size):
        events.extend(stream.feed(data[i : i + size]))
    events.extend(stream.finish())
    return events


def parse(
    data: bytes,
    chunk: int | None = None,
    filename: str | None = None,
    alphabet: str = "nucleotide",
    limits: Limits | None = None,
    fmt: str | None = None,
) -> list[dict[str, Any]]:
    return collect(events_of(data, chunk, filename, alphabet, limits, fmt))


def parse_split_at(data: bytes, cut: int, **kwargs: Any) -> list[dict[str, Any]]:
    stream = SequenceStream(get_alphabet(kwargs.get("alphabet", "nucleotide")), kwargs.get("filename"))
    events = [*stream.feed(data[:cut]), *stream.feed(data[cut:]), *stream.finish()]
    return collect(events)


def native_module() -> ModuleType:
    """``shared.parsing.native`` with its C accelerator, failing the test where it was not built:
    a test of the C loops must not pass by running the Python ones."""
    from shared.parsing import native

    if native.accelerator is None:
        pytest.fail("the C accelerator was not built (a compiler and OpenSSL headers are required)")
    return native


def parse_failure(data: bytes, chunk: int, filename: str, **kwargs: Any) -> tuple[str, int | None, int | None]:
    """The code, line and column of the ParseError that ``data`` must raise."""
    with pytest.raises(ParseError) as caught:
        events_of(data, chunk, filename, **kwargs)
    return caught.value.code.value, caught.value.line, caught.value.column
