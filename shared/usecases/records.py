"""Reading a done upload back: its result document by a fresh signed link, its records page by page.

What the intake's records routes do, apart from HTTP (``services/intake/records.py``) and from the
store (``RecordReads``, ``shared/domain/read_ports.py``):

* who sees what: an upload's owner and admins (``visible``); another owner's upload is
  ``NoSuchUpload``, as one that does not exist;
* only a ``done`` upload's records are served, those of its current generation: the records of an
  upload still being persisted, or of a failed one, are a part of a file that would read as a
  whole (``RecordsNotReady``); a page begun at one generation is never continued at another
  (``RecordsChanged``, also when the upload is processed again while a page streams);
* a page is a keyset on the record's ordinal; its cursor, opaque to clients, carries the
  generation and the next ordinal;
* memory is bounded by bytes, not by the page's count: the page's records are sized first (one
  small query), then read in groups of ``RECORD_GROUP_BYTES`` and a long record's residues
  ``READ_PARTS`` parts at a time, each read on a session of its own, when the client has taken
  what came before. A page of 1,000 chromosomes streams in a few MiB.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.access import Caller
from shared.domain.read_ports import RecordReads
from shared.domain.reads import READ_PARTS, RecordsChanged, RecordSize, record_groups
from shared.domain.record_schema import DOCUMENT_FIELDS, QUALITY_KEY, RECORD_KEYS, SEQUENCE_KEY, Record
from shared.domain.uploads import State, Upload
from shared.usecases.uploads import Intake, NoSuchUpload, Refused, ResultLink, visible

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_NAME_PREFIX_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CURSOR = re.compile(r"v1\.(\d{1,10})\.(\d{1,19})")


# --- refusals ------------------------------------------------------------------------------------------


class ResultNotReady(Refused):
    """The upload has no result document (yet, or any more): it is not done."""

    code = "result_not_ready"


class RecordsNotReady(Refused):
    """The upload's records are not all there to read: it is not done."""

    code = "records_not_ready"


class RecordsMoved(Refused):
    """The upload was processed again since the cursor was given: its records may differ."""

    code = "records_changed"


class BadCursor(Refused):
    code = "invalid_cursor"


class BadLimit(Refused):
    code = "invalid_limit"


class UnknownField(Refused):
    code = "unknown_field"


class BadNamePrefix(Refused):
    code = "invalid_name"


class NoSuchRecord(Refused):
    code = "no_such_record"


# --- the result document --------------------------------------------------------------------------------


def result_link(intake: Intake, caller: Caller, upload_id: uuid.UUID) -> ResultLink:
    """A fresh signed link to a done upload's result document (signed by the store's user that
    may only read results), valid for ``GENOBASE_PRESIGN_TTL_SECONDS``."""
    upload = _visible_upload(intake, caller, upload_id)
    if upload.state is not State.DONE or not upload.result_bucket or not upload.result_key:
        raise ResultNotReady(f"upload {upload_id} has no result: it is {upload.state.value}")
    ttl = intake.settings.presign_ttl_seconds
    return ResultLink(
        url=intake.store.presign_get(upload.result_bucket, upload.result_key, ttl),
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        bucket=upload.result_bucket,
        key=upload.result_key,
        size=upload.result_size or 0,
        records=upload.result_records or 0,
        sha256=upload.result_sha256,
    )


# --- the records ----------------------------------------------------------------------------------------


def choose_fields(raw: str | None) -> tuple[str, ...]:
    """The record keys to show, in the records' own order (``RECORD_KEYS``); all without ``raw``."""
    if raw is None:
        return RECORD_KEYS
    wanted = {name.strip() for name in raw.split(",")}
    unknown = sorted(name for name in wanted if name not in RECORD_KEYS)
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise UnknownField(f"unknown field {shown}; the fields are {', '.join(RECORD_KEYS)}")
    return tuple(key for key in RECORD_KEYS if key in wanted)


def encode_cursor(generation: int, first: int) -> str:
    return base64.urlsafe_b64encode(f"v1.{generation}.{first}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[int, int]:
    """``(generation, first ordinal)`` of a cursor this service gave; ``BadCursor`` otherwise."""
    try:
        text = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    found = _CURSOR.fullmatch(text) if len(raw) <= 64 else None
    if found is None or encode_cursor(int(found.group(1)), int(found.group(2))) != raw:
        raise BadCursor("not a cursor this service gave: pass next_cursor from a previous page as it is")
    return int(found.group(1)), int(found.group(2))


@dataclass(frozen=True)
class RecordOut:
    """One record as shown: ``fields`` (the keys before the sequence, in order), then, when shown,
    ``sequence`` (its residues as stored, a piece at a time, read when iterated) and ``quality``
    (None also for a record without qualities, whose key is then left out)."""

    fields: dict[str, Any]
    sequence: Iterator[bytes] | None
    quality: str | None


@dataclass(frozen=True)
class RecordsPage:
    """A page of records, read as ``records`` is iterated, and the cursor of the next page (None
    on the last). Iterating raises ``RecordsChanged`` if the upload is processed again meanwhile."""

    upload_id: uuid.UUID
    generation: int
    records: Iterator[RecordOut]
    next_cursor: str | None


def records_page(
    intake: Intake,
    reads: RecordReads,
    caller: Caller,
    upload_id: uuid.UUID,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    name_prefix: str | None = None,
    fields: tuple[str, ...] = RECORD_KEYS,
) -> RecordsPage:
    """One page of a done upload's records in file order: up to ``limit``, from ``cursor`` on,
    those whose ``id`` starts with ``name_prefix``. Refusals come before anything is read."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadLimit(f"limit is 1 to {MAX_LIMIT}")
    if name_prefix is not None and (
        _CONTROL.search(name_prefix) or len(name_prefix.encode("utf-8")) > MAX_NAME_PREFIX_BYTES
    ):
        raise BadNamePrefix(f"a name prefix is at most {MAX_NAME_PREFIX_BYTES} bytes, without control characters")
    position = decode_cursor(cursor) if cursor is not None else None
    upload = _done_upload(intake, caller, upload_id)
    first = 0
    if position is not None:
        generation, first = position
        if generation != upload.generation:
            raise RecordsMoved(f"upload {upload_id} was processed again since this cursor was given: start again")
    return _page(reads, upload, first, limit, name_prefix, fields)[0]


def one_record(
    intake: Intake, reads: RecordReads, caller: Caller, upload_id: uuid.UUID, ordinal: int, fields: tuple[str, ...]
) -> RecordOut:
    """The record at ``ordinal`` (0-based, in file order) of a done upload; ``NoSuchRecord`` past the end."""
    upload = _done_upload(intake, caller, upload_id)
    page, sizes = _page(reads, upload, ordinal, 1, None, fields)
    if not sizes or sizes[0].ordinal != ordinal:
        raise NoSuchRecord(f"upload {upload_id} has no record {ordinal}")
    return next(page.records)


# --- helpers ----------------------------------------------------------------------------------------------


def _visible_upload(intake: Intake, caller: Caller, upload_id: uuid.UUID) -> Upload:
    upload = visible(caller, intake.uploads.get(upload_id))
    if upload is None:  # another owner's: as if it did not exist
        raise NoSuchUpload(f"no upload {upload_id}")
    return upload


def _done_upload(intake: Intake, caller: Caller, upload_id: uuid.UUID) -> Upload:
    upload = _visible_upload(intake, caller, upload_id)
    if upload.state is not State.DONE:
        raise RecordsNotReady(f"upload {upload_id} is {upload.state.value}: its records are served once it is done")
    return upload


def _page(
    reads: RecordReads, upload: Upload, first: int, limit: int, name_prefix: str | None, fields: tuple[str, ...]
) -> tuple[RecordsPage, list[RecordSize]]:
    """The page from ordinal ``first`` on: its records sized now (one more, to know whether a page
    follows), read as the page is iterated."""
    residues, quality = SEQUENCE_KEY in fields, QUALITY_KEY in fields
    try:
        sizes = reads.record_sizes(
            upload.id, upload.generation, first, limit + 1, name_prefix, residues=residues, quality=quality
        )
    except RecordsChanged:
        raise RecordsMoved(f"upload {upload.id} is being processed again: try again once it is done") from None
    following = sizes[limit] if len(sizes) > limit else None
    page = RecordsPage(
        upload_id=upload.id,
        generation=upload.generation,
        records=_read(reads, upload, sizes[:limit], fields),
        next_cursor=None if following is None else encode_cursor(upload.generation, following.ordinal),
    )
    return page, sizes[:limit]


def _read(reads: RecordReads, upload: Upload, sizes: list[RecordSize], fields: tuple[str, ...]) -> Iterator[RecordOut]:
    """The page's records, a group read when the client has taken the group before."""
    shown = [(i, key, optional) for i, key, optional in DOCUMENT_FIELDS if key in fields]
    residues, quality = SEQUENCE_KEY in fields, QUALITY_KEY in fields
    for group in record_groups(sizes):
        records = reads.read_records(
            upload.id, upload.generation, [s.ordinal for s in group], residues=residues, quality=quality
        )
        for record in records:
            values = {key: record[i] for i, key, optional in shown if not optional or record[i] is not None}
            sequence = _residues(reads, upload, record) if residues else None
            yield RecordOut(values, sequence, record.quality if quality else None)


def _residues(reads: RecordReads, upload: Upload, record: Record) -> Iterator[bytes]:
    if record.part_count == 0:
        if record.residues:
            yield record.residues.encode("ascii")
        return
    for first in range(0, record.part_count, READ_PARTS):
        last = min(first + READ_PARTS, record.part_count) - 1
        yield from reads.read_parts(upload.id, upload.generation, record.ordinal, first, last)
