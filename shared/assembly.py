"""Writes the result document as a stream of bytes, one record part at a time.

The document keeps the original system's record fields (``line_number``, ``gene_name``,
``sequence``) and adds Genobase's (``ordinal``, ``id``, ``description``, ``length``, ``md5``,
``refget``). ``sequence`` comes last in each record so that its parts can be written as they
arrive from the database: nothing, not even one chromosome, is held whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from shared.db import ResultRow

FLUSH_BYTES = 1024 * 1024


def _needs_escaping(data: bytes) -> bool:
    return b'"' in data or b"\\" in data


def _close_record(quality: bytes | None) -> bytes:
    """End the streamed ``sequence`` string; a FASTQ record's ``quality`` follows it."""
    if quality is None:
        return b'"}'
    return b'","quality":' + orjson.dumps(quality.decode("ascii")) + b"}"


class ResultDocument:
    """The result document of one upload; ``records_written`` tells progress while it streams."""

    def __init__(self, provenance: dict[str, Any], escape_residues: bool = True) -> None:
        self._provenance = provenance
        # Nucleotide and protein residues never contain '"' or '\\': no need to look for them.
        self._escape = escape_residues
        self.records_written = 0

    def pieces(self, rows: Iterable[ResultRow], trailer: Callable[[], dict[str, Any]] | None = None) -> Iterator[bytes]:
        """Yield the document in pieces of about ``FLUSH_BYTES``.

        ``rows`` are the records with their parts in order, as ``iter_result_rows`` gives them;
        ``trailer`` gives fields known only once the records are written, placed after them.
        """
        escape = self._escape
        head = orjson.dumps(self._provenance)
        pieces: list[bytes] = [head[:-1], b',"records":[']
        size = 0
        current = -1
        quality: bytes | None = None
        for (
            ordinal,
            line_number,
            gene_name,
            seq_id,
            description,
            length,
            md5,
            refget,
            qual,
            attributes,
            _part,
            residues,
        ) in rows:
            if ordinal != current:
                if current >= 0:
                    pieces.append(_close_record(quality))
                    pieces.append(b",\n")
                else:
                    pieces.append(b"\n")
                quality = qual
                current = ordinal
                self.records_written += 1
                fields = {
                    "ordinal": ordinal,
                    "line_number": line_number,
                    "gene_name": gene_name,
                    "id": seq_id,
                    "description": description,
                    "length": length,
                    "md5": md5,
                    "refget": refget,
                }
                if attributes is not None:
                    fields["attributes"] = attributes
                meta = orjson.dumps(fields)
                pieces.append(meta[:-1])
                pieces.append(b',"sequence":"')
                size += 200
            if residues:
                pieces.append(
                    orjson.dumps(residues.decode())[1:-1] if escape and _needs_escaping(residues) else residues
                )
                size += len(residues)
            if size >= FLUSH_BYTES:
                yield b"".join(pieces)
                pieces.clear()
                size = 0
        if current >= 0:
            pieces.append(_close_record(quality))
        pieces.append(b"\n]")
        if trailer is not None:
            pieces.append(b"," + orjson.dumps(trailer())[1:-1])
        pieces.append(b"}\n")
        yield b"".join(pieces)


def assemble_json(provenance: dict[str, Any], rows: Iterable[ResultRow]) -> Iterator[bytes]:
    """The whole document as a stream of byte pieces (see ``ResultDocument``)."""
    return ResultDocument(provenance).pieces(rows)
