from __future__ import annotations

import importlib
import importlib.machinery
import random
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


# Each module with a C path: the attribute holding its compiled module (None where it was not
# built, and the module takes its Python path) and the compiled module's name.
COMPILED: dict[str, tuple[str, str]] = {
    "shared.parsing.native": ("accelerator", "shared.parsing._native"),
    "shared.domain.seqcol": ("_native", "shared.parsing._native"),
    "services.parser.batching": ("accelerator", "services.parser._batch_rows"),
    "shared.postgres.binary_copy": ("accelerator", "shared.postgres._copy_rows"),
}


def require_native(module: ModuleType) -> ModuleType:
    """The compiled module ``module`` uses for its C path, failing the test where it was not built
    or where ``module`` does not use it: a test comparing the C path with the Python one must not
    pass by comparing Python with Python. Call it before the test switches to the Python path."""
    attribute, compiled_name = COMPILED[module.__name__]
    try:
        compiled: ModuleType = importlib.import_module(compiled_name)
    except ImportError as exc:
        pytest.fail(f"{compiled_name} was not built (a C compiler is required; OpenSSL headers for _native): {exc}")
    if not isinstance(compiled.__loader__, importlib.machinery.ExtensionFileLoader):
        pytest.fail(f"{compiled_name} is not a compiled extension: {compiled.__loader__!r}")
    if getattr(module, attribute) is not compiled:
        pytest.fail(
            f"{module.__name__}.{attribute} is {getattr(module, attribute)!r}, not the compiled {compiled_name}"
        )
    return compiled


def native_module() -> ModuleType:
    """``shared.parsing.native`` with its C accelerator (``require_native``): a test of the C loops
    must not pass by running the Python ones."""
    from shared.parsing import native

    require_native(native)
    return native


def parse_failure(data: bytes, chunk: int, filename: str, **kwargs: Any) -> tuple[str, int | None, int | None]:
    """The code, line and column of the ParseError that ``data`` must raise."""
    with pytest.raises(ParseError) as caught:
        events_of(data, chunk, filename, **kwargs)
    return caught.value.code.value, caught.value.line, caught.value.column


def random_fasta(rng: random.Random, records: int) -> bytes:
    out = []
    for i in range(records):
        if i and rng.random() < 0.1:
            out.append(b"; a comment > not a header\n")
        out.append(b">seq%d %s\n" % (i, b"desc" * rng.randrange(3)))
        length = rng.choice([0, 1, 5, 60, 61, 200, 1000, 5000])
        residues = bytes(rng.choice(b"ACGTN") for _ in range(length))
        width = rng.choice([60, 70, 1_000_000])
        eol = b"\r\n" if rng.random() < 0.05 else b"\n"
        out.extend(residues[j : j + width] + eol for j in range(0, length, width))
        if rng.random() < 0.05:
            out.append(b"\n")  # a blank line inside a record
    return b"".join(out)
