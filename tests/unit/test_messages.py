from __future__ import annotations

import functools
import uuid
from pathlib import Path

import orjson
import pytest
from pydantic import ConfigDict, ValidationError, create_model

from shared.domain.messages import (
    AssembleRequested,
    ParseCompleted,
    RecordColumns,
    SequenceBatch,
    SequenceParts,
    ShardRequested,
)
from shared.domain.record_schema import PART, RECORD
from shared.domain.stages import ASSEMBLE, PARSE, PERSIST, InvalidMessage
from tests.builders import record

decode_persist_message = functools.partial(PERSIST.decode, from_pipeline=True)

UID = uuid.UUID(int=7)


def batch() -> SequenceBatch:
    return SequenceBatch(
        upload_id=UID,
        generation=2,
        batch_no=3,
        source_offset=100,
        parts=SequenceParts(ordinal=[0, 1], part_no=[0, 0], residues=["ACGT", "GG"]),
        records=RecordColumns.from_rows(
            [
                record(
                    0, gene_name="a x", seq_id="a", description="x", length=4, residues="ACGT",
                    attributes={"organism": "human"},
                )
            ]
        ),
    )  # fmt: skip


def test_round_trip_and_discrimination() -> None:
    original = batch()
    assert decode_persist_message(original.to_bytes()) == original
    done = ParseCompleted(upload_id=UID, generation=2, batch_count=4, record_count=9, source_bytes=10, format="fasta")
    assert decode_persist_message(done.to_bytes()) == done
    assert AssembleRequested.model_validate_json(AssembleRequested(upload_id=UID, generation=1).to_bytes())


def test_fields_added_later_are_sent_only_when_they_say_something() -> None:
    """A whole parse's messages read as before for a consumer of the previous version (one that
    forbids the shard fields); a shard's carry them, and every form round-trips."""
    whole = orjson.loads(batch().to_bytes())
    assert "shard" not in whole and "source_bytes" not in whole and whole["kind"] == "sequence_batch"
    previous = create_model(
        "PreviousSequenceBatch",
        __config__=ConfigDict(extra="forbid"),
        **{
            name: (field.annotation, field)
            for name, field in SequenceBatch.model_fields.items()
            if name not in SequenceBatch.added_fields
        },
    )
    previous.model_validate_json(batch().to_bytes())  # does not raise
    sharded = batch().model_copy(update={"shard": 2, "source_bytes": 64})
    body = orjson.loads(sharded.to_bytes())
    assert (body["shard"], body["source_bytes"]) == (2, 64)
    assert decode_persist_message(sharded.to_bytes()) == sharded
    done = ParseCompleted(
        upload_id=UID, generation=2, shard=1, shard_count=3, batch_count=4, record_count=9, source_bytes=10,
        format="fasta",
    )  # fmt: skip
    assert decode_persist_message(done.to_bytes()) == done
    plain = ParseCompleted(upload_id=UID, generation=2, batch_count=4, record_count=9, source_bytes=10, format="f")
    assert "shard" not in orjson.loads(plain.to_bytes()) and "shard_count" not in orjson.loads(plain.to_bytes())


def test_a_column_added_later_may_be_left_out_by_a_previous_parser() -> None:
    """A batch from a parser that does not send ``pair_digest`` (an added column) is still read:
    its records hold None there, and the store computes the digest itself."""
    body = orjson.loads(batch().to_bytes())
    assert body["records"].pop("pair_digest") == [None]
    old = decode_persist_message(orjson.dumps(body))
    assert isinstance(old, SequenceBatch)
    assert old.records.column("pair_digest") == [None] and next(old.records.rows()).pair_digest is None
    assert [n for n in RECORD.fields if RECORD.columns[n].added] == ["pair_digest"]
    body["records"]["pair_digest"] = ["a", "b"]  # present, it must be as long as the others
    with pytest.raises(InvalidMessage):
        decode_persist_message(orjson.dumps(body))


def test_columns_must_have_equal_lengths() -> None:
    with pytest.raises(ValidationError):
        SequenceParts(ordinal=[0, 1], part_no=[0], residues=["A", "C"])


def test_a_batch_names_its_records_as_one_consecutive_range() -> None:
    """``[records_from, records_through)`` are exactly the batch's records: the assembler may load
    that window at once only because a batch whose ordinals skip or go back is refused on arrival."""
    rows = [record(i, length=1, residues="A") for i in (5, 6, 7)]
    good = batch().model_copy(update={"records": RecordColumns.from_rows(rows)})
    decoded = decode_persist_message(good.to_bytes())
    assert isinstance(decoded, SequenceBatch) and (decoded.records_from, decoded.records_through) == (5, 8)
    parts_only = batch().model_copy(update={"records": RecordColumns.from_rows([])})
    assert (parts_only.records_from, parts_only.records_through) == (None, None)
    assert decode_persist_message(parts_only.to_bytes()) == parts_only
    for ordinals in ([5, 7, 8], [5, 6, 5], [7, 6, 5], [5, 6, 1_000_000]):
        hostile = batch().model_copy(
            update={"records": RecordColumns.from_rows([record(i, length=1, residues="A") for i in ordinals])}
        )
        with pytest.raises(InvalidMessage, match="not consecutive"):
            decode_persist_message(hostile.to_bytes())


def test_unknown_schema_version_is_rejected() -> None:
    body = batch().to_bytes().replace(b'"schema_version":1', b'"schema_version":2')
    with pytest.raises(InvalidMessage):
        decode_persist_message(body)


def test_unknown_fields_are_rejected() -> None:
    body = AssembleRequested(upload_id=UID, generation=1).to_bytes()[:-1] + b',"extra":1}'
    with pytest.raises(InvalidMessage):
        ASSEMBLE.decode(body, from_pipeline=True)


def test_column_models_are_derived_from_the_row_types() -> None:
    assert tuple(RecordColumns.model_fields) == RECORD.fields
    assert tuple(SequenceParts.model_fields) == PART.fields
    with pytest.raises(ValidationError):  # element types come from the definition too
        RecordColumns.model_validate({**batch().records.model_dump(), "length": ["four"]})


def test_rows_round_trip_through_columns() -> None:
    rows = [record(0, residues="AC"), record(1, part_count=2, attributes={"a": "b"})]
    assert list(RecordColumns.from_rows(rows).rows()) == rows
    assert len(RecordColumns.from_rows([])) == 0


def test_a_shard_request_decodes_only_from_the_pipeline_exchange() -> None:
    request = ShardRequested(upload_id=UID, generation=2, shard=3)
    assert PARSE.decode(request.to_bytes(), from_pipeline=True) == request
    with pytest.raises(InvalidMessage, match="pipeline exchange"):
        PARSE.decode(request.to_bytes(), from_pipeline=False)
    notification = (Path(__file__).parents[1] / "fixtures" / "events" / "rgw-put.json").read_bytes()
    assert PARSE.decode(notification, from_pipeline=False) == PARSE.decode(notification, from_pipeline=True)
