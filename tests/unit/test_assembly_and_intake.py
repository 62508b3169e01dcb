from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from services.intake.api import object_key, progress_fraction
from shared.assembly import assemble_json
from shared.db import State, Upload


def test_document_is_valid_json_and_streams_parts() -> None:
    rows = [
        (0, 1, 'quote "x"', "quote", '"x"', 4, "m0", "r0", None, {"organism": "human"}, 0, b"ACGT"),
        (1, 3, "empty", "empty", "", 0, "m1", "r1", None, None, 0, b""),
        (2, 4, "big", "big", "", 2_000_000, "m2", "r2", None, None, 0, b"A" * 1_000_000),
        (2, 4, "big", "big", "", 2_000_000, "m2", "r2", None, None, 1, b"C" * 1_000_000),
        (3, 9, "any", "any", "", 3, "m3", "r3", None, None, 0, b'a"\\'),
        (4, 10, "read", "read", "", 2, "m4", "r4", b'I"', None, 0, b"AC"),
    ]
    pieces = list(assemble_json({"upload_id": "u", "record_count": 4}, rows))
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


def test_empty_document() -> None:
    assert orjson.loads(b"".join(assemble_json({"record_count": 0}, []))) == {"record_count": 0, "records": []}


def test_object_key_keeps_only_the_name() -> None:
    uid = uuid.UUID(int=1)
    assert object_key(uid, "../../etc/passwd") == f"{uid}/passwd"
    assert object_key(uid, "C:\\data\\my reads ü.fa") == f"{uid}/my reads ü.fa"
    assert object_key(uid, "..") == f"{uid}/upload"
    assert object_key(uid, "a\x00b\n.fa") == f"{uid}/ab.fa"


def _upload(**changes: object) -> Upload:
    now = datetime.now(UTC)
    values: dict[str, object] = dict(
        id=uuid.UUID(int=1), bucket="b", key="k", filename="f", registered=True, declared_format=None,
        alphabet="nucleotide", state=State.PARSING, generation=1, etag="e", format=None, bytes_total=1000,
        bytes_done=500, records_done=0, records_total=None, batches_done=0, batches_total=None,
        records_assembled=0, duplicate_names=None, error_code=None, error_message=None, error_line=None,
        error_column=None, result_bucket=None, result_key=None, result_size=None, result_records=None,
        created_at=now, updated_at=now,
    )  # fmt: skip
    values.update(changes)
    return Upload(**values)  # type: ignore[arg-type]


def test_progress_fraction() -> None:
    assert progress_fraction(_upload()) == 0.4
    assert progress_fraction(_upload(state=State.ASSEMBLING, records_total=10, records_assembled=5)) == 0.9
    assert progress_fraction(_upload(state=State.DONE)) == 1.0
    assert progress_fraction(_upload(bytes_total=None)) == 0.0
