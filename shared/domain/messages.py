"""Message contracts between the stages.

Every message is a versioned pydantic model, JSON on the wire. A consumer rejects a schema version
it does not know instead of guessing. Residues travel as JSON strings: the parser has validated
them against the alphabet, so they are plain ASCII and need no escaping.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from types import GenericAlias
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from shared.domain.record_schema import PART, RECORD, Part, Record, Schema

_ColumnsT = TypeVar("_ColumnsT", bound="_Columns")

SCHEMA_VERSION = 1  # bump together with the Literal below and teach consumers the old one


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    routing_key: ClassVar[str]
    # Fields added after a message type first shipped: left out while they hold their default, so
    # that a consumer of the previous version (which forbids unknown fields) still reads what it
    # could read before -- a rolling upgrade may run parsers of one version beside persisters of
    # the other. The shard fields of a whole parse's batches are such fields.
    added_fields: ClassVar[frozenset[str]] = frozenset()

    schema_version: Literal[1] = 1

    def to_bytes(self) -> bytes:
        # Straight to bytes: model_dump_json() would build a str first, a second copy of a batch.
        cls = type(self)
        fields = cls.model_fields
        exclude = {name for name in cls.added_fields if getattr(self, name) == fields[name].default}
        return cls.__pydantic_serializer__.to_json(self, exclude=exclude or None)


class _Columns(BaseModel):
    """A table sent column by column: one list per field, the i-th items forming row i.

    Bulk data goes columnar because validating and encoding a few lists is two orders of magnitude
    cheaper than a model per row (measured: ~30 ms against ~200 ms for 20,000 records). The fields
    are not written here: each table's model is derived from its row type in ``shared/domain/record_schema``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    row_schema: ClassVar[Schema]

    @model_validator(mode="after")
    def _same_lengths(self) -> Self:
        lengths = {len(v) for v in self.__dict__.values() if v is not None}
        if len(lengths) > 1:
            raise ValueError(f"columns of unequal length: {sorted(lengths)}")
        return self

    def __len__(self) -> int:
        return len(next(iter(self.__dict__.values())))  # the first column is never an added one

    def column(self, name: str) -> list[Any]:
        """The column's values; an added column that the sender left out is all None."""
        values = self.__dict__[name]
        return [None] * len(self) if values is None else values

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[Any, ...]]) -> Self:
        """Transpose rows (of the schema's row type) into columns, without validating them again."""
        names = cls.row_schema.fields
        columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in names]
        return cls.model_construct(None, **dict(zip(names, columns, strict=True)))


class _PartColumns(_Columns):
    row_schema = PART

    def rows(self) -> Iterator[Part]:
        return map(Part._make, zip(*(self.column(name) for name in PART.fields), strict=True))


class _RecordColumns(_Columns):
    row_schema = RECORD

    def rows(self) -> Iterator[Record]:
        return map(Record._make, zip(*(self.column(name) for name in RECORD.fields), strict=True))


def _columns_model(name: str, base: type[_ColumnsT], doc: str) -> type[_ColumnsT]:
    schema = base.row_schema
    fields: dict[str, Any] = {
        f: (GenericAlias(list, (schema.python_types[f],)) | None, None)
        if schema.columns[f].added
        else (GenericAlias(list, (schema.python_types[f],)), ...)
        for f in schema.fields
    }
    return create_model(name, __base__=base, __doc__=doc, **fields)


if TYPE_CHECKING:  # mypy sees the base classes; pydantic validates the derived models
    SequenceParts = _PartColumns
    RecordColumns = _RecordColumns
else:
    SequenceParts = _columns_model(
        "SequenceParts", _PartColumns, "Ordered slices of long records' residues (case kept, whitespace removed)."
    )
    RecordColumns = _columns_model(
        "RecordColumns",
        _RecordColumns,
        "Records whose sequence has ended, sent in the batch that carries their last part.",
    )


class SequenceBatch(Message):
    """A bounded slice of one parsed file, numbered so that a persister can tell a replay."""

    routing_key: ClassVar[str] = "persist"
    added_fields: ClassVar[frozenset[str]] = frozenset({"shard", "source_bytes"})

    kind: Literal["sequence_batch"] = "sequence_batch"
    upload_id: uuid.UUID
    generation: int
    # Batches are numbered within their shard (0 for a generation parsed whole: see ShardRequested).
    shard: int = 0
    batch_no: int
    source_offset: int = Field(description="bytes of the source consumed once this batch is parsed")
    # In a parse in shards, offsets of shards parsed at once interleave: each batch says how many
    # bytes it adds instead (counted once, with the batch). None in a whole parse.
    source_bytes: int | None = None
    parts: SequenceParts
    records: RecordColumns

    @model_validator(mode="after")
    def _consecutive_records(self) -> Self:
        """A batch's records are consecutive: ``[records_from, records_through)`` then names them
        exactly, and the assembler may load that window at once (see shared/postgres/uploads.py).
        The parser cuts batches so (services/parser/batching.py); anything else is refused."""
        ordinals = self.records.column("ordinal")
        if ordinals and ordinals != list(range(ordinals[0], ordinals[0] + len(ordinals))):
            raise ValueError("the batch's record ordinals are not consecutive")
        return self

    @property
    def records_from(self) -> int | None:
        """The batch's first record ordinal; None for a batch of parts only."""
        ordinals = self.records.column("ordinal")
        return int(ordinals[0]) if ordinals else None

    @property
    def records_through(self) -> int | None:
        """Records of the generation complete once this batch is stored (ordinals below this);
        None for a batch of parts only. Batches are cut in ordinal order (services/parser/batching.py)."""
        ordinals = self.records.column("ordinal")
        return int(ordinals[-1]) + 1 if ordinals else None


class ParseCompleted(Message):
    """The parser has published every batch of a generation, or of one of its shards (then the
    counts are the shard's); the persister uses it to detect the end."""

    routing_key: ClassVar[str] = "persist"
    added_fields: ClassVar[frozenset[str]] = frozenset({"shard", "shard_count"})

    kind: Literal["parse_completed"] = "parse_completed"
    upload_id: uuid.UUID
    generation: int
    shard: int = 0
    shard_count: int = 1
    batch_count: int
    record_count: int
    source_bytes: int
    format: str
    # The whole object's digests (hex), as read; None from a parser that did not compute them.
    source_md5: str | None = None
    source_sha256: str | None = None


class ShardRequested(Message):
    """Parse one shard of a generation that is parsed in shards (a large FASTA): any parser may.

    It travels on the parse queue, beside the bucket notifications, so that a shard whose parser
    dies is redelivered like any notification. It names the shard only: where it starts and what
    it holds are read from the plan in the store, which the parser that made the plan wrote.
    """

    routing_key: ClassVar[str] = "parse"

    kind: Literal["parse_shard"] = "parse_shard"
    upload_id: uuid.UUID
    generation: int
    shard: int


class AssembleRequested(Message):
    """A generation's first batch is committed (the assembler starts following it), or its last
    one is (the result can be finished). Repeats are harmless: the assembler ignores them."""

    routing_key: ClassVar[str] = "assemble"

    upload_id: uuid.UUID
    generation: int


# The persist queue carries two kinds, told apart by their ``kind`` field (``shared/domain/stages.py`` decodes it).
PersistMessage = Annotated[SequenceBatch | ParseCompleted, Field(discriminator="kind")]
