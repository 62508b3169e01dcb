from __future__ import annotations

import uuid

import orjson

from services.assembler.document import ResultDocument
from services.intake.api import object_key, progress_fraction
from shared.record_schema import Record, ResultPiece
from shared.uploads import State
from tests.builders import record
from tests.unit.fakes import make_upload


def document(rows: list[ResultPiece], provenance: dict[str, object] | None = None) -> list[bytes]:
    return list(ResultDocument(provenance or {"record_count": 0}).pieces(rows))


def piece(r: Record, part_no: int, residues: bytes) -> ResultPiece:
    return ResultPiece(r, part_no, residues)


def test_document_is_valid_json_and_streams_parts() -> None:
    quoted = record(0, line_number=1, gene_name='quote "x"', seq_id="quote", description='"x"', length=4,
                    attributes={"organism": "human"})  # fmt: skip
    big = record(2, line_number=4, gene_name="big", seq_id="big", length=2_000_000, part_count=2)
    read = record(4, line_number=10, gene_name="read", seq_id="read", length=2, quality='I"')
    rows = [
        piece(quoted, 0, b"ACGT"),
        piece(record(1, line_number=3, gene_name="empty", seq_id="empty"), 0, b""),
        piece(big, 0, b"A" * 1_000_000),
        piece(big, 1, b"C" * 1_000_000),
        piece(record(3, line_number=9, gene_name="any", seq_id="any", length=3), 0, b'a"\\'),
        piece(read, 0, b"AC"),
    ]
    pieces = document(rows, {"upload_id": "u", "record_count": 4})
    assert len(pieces) > 1  # streamed, not built whole
    doc = orjson.loads(b"".join(pieces))
    assert doc["record_count"] == 4
    assert [r["sequence"][:4] for r in doc["records"]] == ["ACGT", "", "AAAA", 'a"\\', "AC"]
    assert doc["records"][4]["quality"] == 'I"'
    assert "quality" not in doc["records"][0]
    assert doc["records"][0]["attributes"] == {"organism": "human"}
    assert "attributes" not in doc["records"][1]
    assert doc["records"][2]["sequence"] == "A" * 1_000_000 + "C" * 1_000_000
    assert doc["records"][0]["gene_name"] == 'quote "x"'
    assert list(doc["records"][0]) == [
        "ordinal", "line_number", "gene_name", "id", "description", "length", "md5", "refget", "attributes",
        "sequence",
    ]  # fmt: skip
    assert list(doc["records"][4])[-2:] == ["sequence", "quality"]


def test_empty_document() -> None:
    assert orjson.loads(b"".join(document([]))) == {"record_count": 0, "records": []}


def test_document_flushes_by_the_bytes_of_the_headers_too() -> None:
    """Many short records with long headers: the pieces stay near the flush size (issue: 200 bytes per record)."""
    rows = [piece(record(i, gene_name="h" * 5000, seq_id=f"r{i}", length=1), 0, b"A") for i in range(2000)]
    sizes = [len(p) for p in document(rows)]
    assert len(sizes) > 5 and max(sizes) < 1024 * 1024 + 20_000


def test_object_key_keeps_only_the_name() -> None:
    uid = uuid.UUID(int=1)
    assert object_key(uid, "../../etc/passwd") == f"{uid}/passwd"
    assert object_key(uid, "C:\\data\\my reads ü.fa") == f"{uid}/my reads ü.fa"
    assert object_key(uid, "..") == f"{uid}/upload"
    assert object_key(uid, "a\x00b\n.fa") == f"{uid}/ab.fa"


def test_progress_fraction() -> None:
    assert progress_fraction(make_upload()) == 0.4
    assert progress_fraction(make_upload(state=State.ASSEMBLING, records_total=10, records_assembled=5)) == 0.9
    assert progress_fraction(make_upload(state=State.DONE)) == 1.0
    assert progress_fraction(make_upload(bytes_total=None)) == 0.0
