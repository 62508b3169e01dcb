"""Writes the result document as a stream of bytes, one record part at a time.

The document keeps the original system's record fields (``line_number``, ``gene_name``,
``sequence``) and adds Genobase's; which fields, under which keys and in which order, comes from
``shared/domain/record_schema.py``. ``sequence`` comes after them in each record so that its parts can be
written as they arrive from the database: nothing, not even one chromosome, is held whole. A
FASTQ record's ``quality`` follows its sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from shared.domain.record_schema import DOCUMENT_FIELDS, QUALITY_KEY, SEQUENCE_KEY, Record, ResultPiece

FLUSH_BYTES = 1024 * 1024


def _needs_escaping(data: bytes) -> bool:
    return b'"' in data or b"\\" in data


_QUALITY = Record._fields.index("quality")
_PART_COUNT = Record._fields.index("part_count")
_OPEN_SEQUENCE = b"," + orjson.dumps(SEQUENCE_KEY) + b':"'
_QUALITY_AFTER_SEQUENCE = b'",' + orjson.dumps(QUALITY_KEY) + b":"


def _compile_fields(whole: bool) -> Callable[..., dict[str, Any]]:
    """``record -> {document key: value}`` for the fields before the sequence, built from the schema;
    ``whole``: ``(record, sequence) ->`` the whole record's, its sequence and quality included.

    Hot (once per record): compiled to a dict display, which is twice as fast as building the dict
    in a loop; optional fields are added only when they hold a value.
    """
    required = ", ".join(f"{key!r}: r[{i}]" for i, key, optional in DOCUMENT_FIELDS if not optional)
    lines = ["def fields_of(r, sequence=None):", f"    fields = {{{required}}}"]
    for i, key, optional in DOCUMENT_FIELDS:
        if optional:
            lines += [f"    if r[{i}] is not None:", f"        fields[{key!r}] = r[{i}]"]
    if whole:
        lines += [
            f"    fields[{SEQUENCE_KEY!r}] = sequence",
            f"    if r[{_QUALITY}] is not None:",
            f"        fields[{QUALITY_KEY!r}] = r[{_QUALITY}]",
        ]
    lines.append("    return fields")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)
    return namespace["fields_of"]  # type: ignore[no-any-return]


_header = _compile_fields(whole=False)
_whole = _compile_fields(whole=True)


def _open_record(record: Record) -> bytes:
    """The record's fields up to the opening quote of its ``sequence`` (a record streamed in parts)."""
    return orjson.dumps(_header(record))[:-1] + _OPEN_SEQUENCE


def _close_record(record: Record) -> bytes:
    """End the streamed ``sequence`` string; a FASTQ record's ``quality`` follows it."""
    quality = record.quality
    if quality is None:
        return b'"}'
    return _QUALITY_AFTER_SEQUENCE + orjson.dumps(quality) + b"}"


def _whole_record(record: Record, residues: bytes | None) -> bytes:
    """A record whose residues are inline (shorter than one part: most records), in one piece:
    the same bytes as opening, sequence and closing written one after the other."""
    return orjson.dumps(_whole(record, residues.decode() if residues else ""))


class ResultDocument:
    """The result document of one upload; ``records_written`` tells progress while it streams."""

    def __init__(self, provenance: dict[str, Any], escape_residues: bool = True) -> None:
        self._provenance = provenance
        # Nucleotide and protein residues never contain '"' or '\\': no need to look for them.
        self._escape = escape_residues
        self.records_written = 0

    def pieces(
        self, rows: Iterable[ResultPiece], trailer: Callable[[], dict[str, Any]] | None = None
    ) -> Iterator[bytes]:
        """Yield the document in pieces of about ``FLUSH_BYTES``.

        ``rows`` are the records with their parts in order, as the upload store reads them back;
        ``trailer`` gives fields known only once the records are written, placed after them.
        """
        escape = self._escape
        head = orjson.dumps(self._provenance)
        pieces: list[bytes] = [head[:-1], b',"records":[']
        separator = b"\n"  # before the first record; ",\n" between records
        size = 0
        current: Record | None = None  # the record being streamed part by part
        current_ordinal = -1
        for record, _part, residues in rows:
            if record[0] != current_ordinal:  # a new record (ordinals are >= 0)
                if current is not None:
                    closing = _close_record(current)
                    pieces.append(closing)
                    size += len(closing)
                    current = None
                pieces.append(separator)
                separator = b",\n"
                current_ordinal = record[0]
                self.records_written += 1
                if record[_PART_COUNT] == 0:  # inline: the record's only piece
                    whole = _whole_record(record, residues)
                    pieces.append(whole)
                    size += len(whole)
                    if size >= FLUSH_BYTES:
                        yield b"".join(pieces)
                        pieces.clear()
                        size = 0
                    continue
                current = record
                opening = _open_record(record)
                pieces.append(opening)
                size += len(opening)
            if residues:
                pieces.append(
                    orjson.dumps(residues.decode())[1:-1] if escape and _needs_escaping(residues) else residues
                )
                size += len(residues)
            if size >= FLUSH_BYTES:
                yield b"".join(pieces)
                pieces.clear()
                size = 0
        if current is not None:
            pieces.append(_close_record(current))
        pieces.append(b"\n]")
        if trailer is not None:
            pieces.append(b"," + orjson.dumps(trailer())[1:-1])
        pieces.append(b"}\n")
        yield b"".join(pieces)
