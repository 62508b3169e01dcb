"""The upload, as the pipeline understands it: states, the moves between them, claims and failures.

This is the domain model. It does no I/O and knows no SQL: the Postgres adapter
(``shared/postgres/``) takes its state sets from the ``Transition`` constants below and its column
lists from ``Upload``'s fields, and the handlers' unit tests run the same rules against fakes.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict

from shared.parsing.errors import ParseErrorCode, bounded


class State(StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"  # registered, the user has not written the object yet
    QUEUED = "queued"  # the object exists; the parser owes it a read
    PARSING = "parsing"
    PERSISTING = "persisting"  # every batch published; some not committed yet
    ASSEMBLING = "assembling"  # every batch committed; the result document is being written
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"  # registered, but no object came within the ticket's lifetime and grace
    REVOKED = "revoked"  # its owner's keys were revoked: the ticket ended, or the object that came is not processed
    # Deleted through the API: a tombstone with no data (no rows, no object, no result). Nothing
    # brings it back: every other move's sources leave it out.
    DELETED = "deleted"


ALL_STATES = frozenset(State)
TERMINAL = frozenset({State.DONE, State.FAILED, State.EXPIRED, State.REVOKED, State.DELETED})
# States in which some stage owes the upload work (awaiting_upload waits for the user instead).
LIVE = frozenset({State.QUEUED, State.PARSING, State.PERSISTING, State.ASSEMBLING})


@dataclass(frozen=True)
class Transition:
    """A named move of the state machine: from any of ``sources`` to ``target``.

    ``target`` None keeps the state (a counter moves, the stage goes on). The adapter applies a
    transition with ``WHERE state = ANY(sources)``, so a message for an upload in any other state
    changes nothing: that is what makes a late or repeated message harmless.
    """

    name: str
    sources: frozenset[State]
    target: State | None

    def allows(self, state: State) -> bool:
        return state in self.sources

    def apply(self, state: State) -> State:
        """The state after this move from ``state`` (which it must allow)."""
        if state not in self.sources:
            raise ValueError(f"{self.name} does not apply to an upload in state {state}")
        return self.target or state


# An object event with a new etag: a new generation from whatever the upload was doing (an
# expired ticket's object that still came, late, is processed like any other) -- but a deleted
# upload stays deleted: an object written at its key afterwards is removed (``decide_claim``).
NEW_GENERATION = Transition("new_generation", ALL_STATES - {State.DELETED}, State.QUEUED)
START_PARSING = Transition("start_parsing", frozenset({State.QUEUED, State.PARSING}), State.PARSING)
# A large FASTA is parsed in shards (services/parser): the plan is written, and each shard parsed,
# only while the generation is parsing; the last shard's end recorded finishes the parse.
PLAN_SHARDS = Transition("plan_shards", frozenset({State.PARSING}), None)
PARSE_SHARD = Transition("parse_shard", frozenset({State.PARSING}), None)
# A batch committed (or the parse's end recorded): the upload must still be live.
STORE_BATCH = Transition("store_batch", LIVE, None)
FINISH_PARSING = Transition("finish_parsing", frozenset({State.QUEUED, State.PARSING}), State.PERSISTING)
# The last batch committed: the result may be finished (again, on a replay: the assembler ignores repeats).
START_ASSEMBLY = Transition("start_assembly", LIVE, State.ASSEMBLING)
# The assembler follows a generation from its first committed batch: it writes the records of the
# committed prefix of batches while the parse and the persister go on, and finishes (FINISH) once
# the upload is ``assembling``, every batch committed.
ASSEMBLE = Transition("assemble", frozenset({State.PARSING, State.PERSISTING, State.ASSEMBLING}), None)
RECORD_ASSEMBLY_PROGRESS = Transition("record_assembly_progress", ASSEMBLE.sources, None)
FINISH = Transition("finish", frozenset({State.ASSEMBLING}), State.DONE)
# A failure is recorded once: the first reason stands (a finished upload cannot fail any more).
FAIL = Transition("fail", ALL_STATES - TERMINAL, State.FAILED)
# ``genobase dead-letters --replay``: the same generation once more, from its object.
REQUEUE = Transition("requeue", frozenset({State.FAILED}), State.QUEUED)
# ``POST /uploads/{id}/retry``: a failed upload whose object is still in the store (same etag), driven
# again as a NEW generation (unlike ``REQUEUE``), so that every late message of the failed one --
# a batch, a shard request, an assembly request -- names a generation that no longer exists and is
# ignored. Only from ``failed``: two retries at once make one generation; the second is refused.
RETRY = Transition("retry", frozenset({State.FAILED}), State.QUEUED)
# A validation (``Mode.VALIDATE``): the parser parsed the object whole, stored no rows, and records
# its report; the upload is done without a result document.
FINISH_VALIDATION = Transition("finish_validation", frozenset({State.PARSING}), State.DONE)
# The watchdog re-issues a live stage's message; a stalled ``persisting`` lost a batch, so the
# re-parse must be accepted again (the persister skips the batches it has).
PICK_UP_STALLED = Transition("pick_up_stalled", LIVE, None)
RETRY_LOST_BATCH = Transition("retry_lost_batch", frozenset({State.PERSISTING}), State.PARSING)
# The watchdog ends a registered upload whose ticket is over (see ``ticket_expired``).
EXPIRE = Transition("expire", frozenset({State.AWAITING_UPLOAD}), State.EXPIRED)
# Revoking an owner's keys stops its outstanding tickets: the watchdog ends each registered upload
# still waiting for its object (and aborts its multipart upload), and an object that arrives for a
# revoked owner -- through a presigned URL still within its lifetime -- is recorded as a generation
# of its own that is never parsed (``decide_claim``: wherever it would have started one).
REVOKE_TICKET = Transition("revoke_ticket", frozenset({State.AWAITING_UPLOAD}), State.REVOKED)
REFUSE_OBJECT = Transition("refuse_object", NEW_GENERATION.sources, State.REVOKED)
# ``DELETE /uploads/{id}``: from anywhere, once. The rows go in the same commit; the store's part
# (the object, a multipart upload, the result documents) is the watchdog's purge, which a late
# object or result reopens (``PostgresUploads.reopen_purge``).
DELETE = Transition("delete", ALL_STATES - {State.DELETED}, State.DELETED)

TRANSITIONS: tuple[Transition, ...] = (
    NEW_GENERATION,
    START_PARSING,
    PLAN_SHARDS,
    PARSE_SHARD,
    STORE_BATCH,
    FINISH_PARSING,
    START_ASSEMBLY,
    ASSEMBLE,
    RECORD_ASSEMBLY_PROGRESS,
    FINISH,
    FAIL,
    REQUEUE,
    RETRY,
    FINISH_VALIDATION,
    PICK_UP_STALLED,
    RETRY_LOST_BATCH,
    EXPIRE,
    REVOKE_TICKET,
    REFUSE_OBJECT,
    DELETE,
)


def next_states(state: State) -> frozenset[State]:
    """Every state an upload in ``state`` can move to (the state diagram, derived from the moves)."""
    return frozenset(t.target or state for t in TRANSITIONS if t.allows(state))


class Mode(StrEnum):
    """What an upload is for, chosen at registration (an object written straight to the bucket is
    always ``store``)."""

    STORE = "store"  # parse, store the rows, write the result document
    # Parse with the same engine and limits, report what was found (``Validation``) or the first
    # error with its line and column; store no rows and no result; the object is removed afterwards.
    VALIDATE = "validate"


@dataclass(frozen=True)
class Validation:
    """What the parse of a validated upload found (stored on the upload as ``validation``).

    ``collection_digest``: the GA4GH seqcol digest of the records (its inherent attributes, names
    and sequences, streamed as the records go by: bounded memory); the same digest the upload would
    have had if it had been stored.
    """

    records: int
    format: str
    bytes: int
    source_md5: str
    source_sha256: str
    collection_digest: str

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Validation:
        return cls(**{f.name: value[f.name] for f in fields(cls)})


class RetryRefusal(StrEnum):
    """Why ``POST /uploads/{id}/retry`` refuses (each a 409)."""

    NOT_FAILED = "not_failed"  # only a failed upload is retried; the current state is named
    OBJECT_GONE = "object_gone"  # the object is no longer in the store
    # The store holds another object under the key: its own event starts a new generation.
    OBJECT_CHANGED = "object_changed"


def retry_refusal(upload: Upload, stored_etag: str | None) -> RetryRefusal | None:
    """Whether a failed upload may be retried, given the etag the store shows for its key now (None:
    no object). A different etag is a different object: its own event makes it a new generation
    through the normal event path, so a retry would only race it."""
    if not RETRY.allows(upload.state) or upload.etag is None:
        return RetryRefusal.NOT_FAILED
    if stored_etag is None:
        return RetryRefusal.OBJECT_GONE
    if stored_etag != upload.etag:
        return RetryRefusal.OBJECT_CHANGED
    return None


class PipelineErrorCode(StrEnum):
    """Failures that are not the input's fault (the engine's are ``ParseErrorCode``)."""

    OBJECT_DELETED = "object_deleted"
    PARSE_STALLED = "parse_stalled"  # the parse made no progress for GENOBASE_PARSE_STALL_SECONDS
    PROCESSING_FAILED = "processing_failed"  # the parse stage's message was dead-lettered
    PERSIST_FAILED = "persist_failed"
    ASSEMBLE_FAILED = "assemble_failed"
    OWNER_REVOKED = "owner_revoked"  # the upload's owner has no valid key any more (state ``revoked``)
    # The owner's uploads together inflated more gzip content than GENOBASE_QUOTA_INFLATED_BYTES.
    INFLATION_QUOTA_EXCEEDED = "inflation_quota_exceeded"
    # The object of a registered upload carries what its ticket did not sign (ObjectStat).
    UNSIGNED_HEADERS = "unsigned_headers"
    # An object written with an owner's own S3 keys while the owner is over a quota (direct_write_refusal).
    QUOTA_EXCEEDED = "quota_exceeded"


# Every code an upload can fail with: the engine's and the pipeline's, each defined once.
ErrorCode = ParseErrorCode | PipelineErrorCode
ERROR_CODES: tuple[str, ...] = tuple(c.value for c in (*ParseErrorCode, *PipelineErrorCode))


def error_code(value: str) -> ErrorCode:
    """The code of a stored failure."""
    try:
        return ParseErrorCode(value)
    except ValueError:
        return PipelineErrorCode(value)


def new_error_id() -> str:
    """A short id that ties a failure shown to a user to the log lines with its detail."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Failure:
    """Why a generation failed, and where in the input when the input is at fault.

    The message is stored and served on every status poll: it is safe to show (never an
    exception's raw text) and cut to 1 KiB whatever made it; the detail is logged under ``error_id``.
    """

    code: ErrorCode
    message: str
    line: int | None = None
    column: int | None = None
    error_id: str = field(default_factory=new_error_id)

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", bounded(self.message))


class ObjectCreated(BaseModel):
    """A new object in a bucket, whichever object store announced it (``shared/domain/events.py``)."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    size: int
    etag: str
    sequencer: str | None = None
    event_time: datetime | None = None


# Marks the fields of ``Upload`` that belong to one generation: a new generation resets each to
# its default (the adapter builds its reset from this, so a new field cannot be forgotten there).
_PER_GENERATION = "per_generation"


def _per_generation(default: Any = None) -> Any:
    return field(default=default, metadata={_PER_GENERATION: True})


@dataclass(frozen=True)
class Upload:
    """One object key and what the pipeline did with its current generation.

    The fields are the ``uploads`` table's columns; ``from_row`` takes a row by column name.
    """

    id: uuid.UUID
    bucket: str
    key: str
    filename: str
    registered: bool
    declared_format: str | None
    alphabet: str
    state: State
    generation: int
    etag: str | None
    created_at: datetime
    updated_at: datetime
    sequencer: str | None = None
    event_time: datetime | None = None
    bytes_total: int | None = None
    owner: str | None = None  # the key name it belongs to (shared/domain/access.py)
    ticket_expires_at: datetime | None = None  # when the presigned URL stops working (registered only)
    circular: bool = False  # declared at registration: its sequences are circular (refget)
    multipart_upload_id: str | None = None  # registered above the multipart threshold: the store's id
    mode: str = "store"  # ``Mode``: chosen at registration
    # What the owner says the upload is (sample, run, project): shared/domain/listing.py bounds them.
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    # --- one generation's work: reset when the object is replaced
    format: str | None = _per_generation()
    bytes_done: int = _per_generation(0)
    records_done: int = _per_generation(0)
    records_total: int | None = _per_generation()
    batches_done: int = _per_generation(0)
    batches_total: int | None = _per_generation()
    records_assembled: int = _per_generation(0)
    source_md5: str | None = _per_generation()  # of the whole object, as the parser read it
    source_sha256: str | None = _per_generation()
    duplicate_names: int | None = _per_generation()
    empty_sequences: int | None = _per_generation()
    error_code: str | None = _per_generation()
    error_message: str | None = _per_generation()
    error_line: int | None = _per_generation()
    error_column: int | None = _per_generation()
    error_id: str | None = _per_generation()
    result_bucket: str | None = _per_generation()
    result_key: str | None = _per_generation()
    result_size: int | None = _per_generation()
    result_records: int | None = _per_generation()
    result_sha256: str | None = _per_generation()  # of the result document, as the assembler wrote it
    parsing_started_at: datetime | None = _per_generation()
    parsed_at: datetime | None = _per_generation()
    assembly_started_at: datetime | None = _per_generation()
    finished_at: datetime | None = _per_generation()
    pickups: int = _per_generation(0)
    picked_up_at: datetime | None = _per_generation()
    # gzip content inflated by the parse so far, drawn from the owner's quota ahead of use (see
    # ``PostgresUploads.draw_inflation``, shared/postgres/uploads.py); the owner's total is the sum
    # over its uploads.
    inflated_bytes: int = _per_generation(0)
    # A validated generation's report (``Validation.to_json``), and when its object was removed.
    validation: dict[str, Any] | None = _per_generation()
    object_removed_at: datetime | None = _per_generation()

    # --- a deleted upload (state ``deleted``): when it was deleted, when its purge (the store's part)
    # was last asked for -- by the delete, or by an object or a result that arrived afterwards -- and
    # when a purge last finished; purged once ``purged_at`` is set.
    deleted_at: datetime | None = None
    purge_requested_at: datetime | None = None
    purged_at: datetime | None = None

    @property
    def validates(self) -> bool:
        return self.mode == Mode.VALIDATE.value

    @property
    def report(self) -> Validation | None:
        return Validation.from_json(self.validation) if self.validation is not None else None

    def idle(self, now: datetime) -> timedelta:
        """How long a live stage has not moved (zero once the upload waits for nobody but the user)."""
        return max(now - self.updated_at, timedelta(0)) if self.state in LIVE else timedelta(0)

    def stalled(self, now: datetime, after: timedelta) -> bool:
        """A live stage that has not moved for ``after`` (the watchdog will issue its message again)."""
        return self.idle(now) > after

    def ticket_expired(self, now: datetime, grace: timedelta) -> bool:
        """A registered upload whose ticket ended more than ``grace`` ago with no object written.

        The grace covers a PUT that started just before the URL's end and is still sending.
        """
        return (
            EXPIRE.allows(self.state)
            and self.etag is None
            and self.ticket_expires_at is not None
            and now > self.ticket_expires_at + grace
        )

    @property
    def failure(self) -> Failure | None:
        """Why the upload failed or was refused (``revoked`` carries its code too)."""
        if self.state not in (State.FAILED, State.REVOKED):
            return None
        return Failure(
            error_code(self.error_code or PipelineErrorCode.PROCESSING_FAILED),
            self.error_message or "",
            self.error_line,
            self.error_column,
            self.error_id or "",
        )

    @property
    def complete(self) -> bool:
        """Every batch of the generation is committed (the parse's end says how many there are)."""
        return self.batches_total is not None and self.batches_done >= self.batches_total

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Upload:
        values = {k: v for k, v in row.items() if k in UPLOAD_FIELDS}
        values["state"] = State(values["state"])
        return cls(**values)


UPLOAD_FIELDS = frozenset(f.name for f in fields(Upload))
# Each per-generation field with the value a new generation starts from.
GENERATION_RESET: Mapping[str, Any] = {f.name: f.default for f in fields(Upload) if f.metadata.get(_PER_GENERATION)}


class ClaimAction(StrEnum):
    PARSE = "parse"  # a new generation (or a redelivery of one not yet parsed): parse it
    DUPLICATE = "duplicate"  # this etag was already taken further: nothing to do
    STALE = "stale"  # an older object than the one already known: nothing to do
    # The upload changed between the look and the lock, so that the event would now start a
    # generation the store was not asked about: look again (HEAD) before anything changes.
    UNCONFIRMED = "unconfirmed"
    REVOKED = "revoked"  # a new object of a revoked owner: recorded as ``revoked``, never parsed
    DELETED = "deleted"  # an object at the key of a deleted upload: not processed, removed by the purge


class ClaimDecision(StrEnum):
    """What an object-created event means for the upload of its key; each maps to a ``ClaimAction``."""

    CREATE = "create"  # nobody registered the key: a new upload, generation 1
    NEW_GENERATION = "new_generation"  # a new etag on a known key (or the registered upload's first)
    RESUME = "resume"  # the same etag, not parsed yet (a redelivery, a watchdog re-issue)
    DUPLICATE = "duplicate"
    STALE = "stale"
    UNCONFIRMED = "unconfirmed"
    # What would have been CREATE or NEW_GENERATION, for an owner whose keys are revoked: the object
    # becomes a generation of its own, in state ``revoked`` (``REFUSE_OBJECT``), and is not parsed.
    REFUSE_OBJECT = "refuse_object"
    # The key's upload was deleted: whatever the event (a late one, or an object written at the key
    # again), the upload stays deleted and its purge is asked for again, which removes the object.
    DELETED = "deleted"

    @property
    def action(self) -> ClaimAction:
        if self is ClaimDecision.DELETED:
            return ClaimAction.DELETED
        if self is ClaimDecision.REFUSE_OBJECT:
            return ClaimAction.REVOKED
        if self is ClaimDecision.DUPLICATE:
            return ClaimAction.DUPLICATE
        if self is ClaimDecision.STALE:
            return ClaimAction.STALE
        if self is ClaimDecision.UNCONFIRMED:
            return ClaimAction.UNCONFIRMED
        return ClaimAction.PARSE


def decide_claim(upload: Upload | None, event: ObjectCreated, *, owner_revoked: bool = False) -> ClaimDecision:
    """Decide what an event means, keyed on bucket + key + etag, from the upload as it is now.

    ``owner_revoked``: the owner of the key (the upload's, or for a new key the owner its prefix
    names) holds keys and every one is revoked. An object that arrives then is not processed; one
    that arrived before (a redelivery of a claimed generation, ``RESUME``) still is.
    """
    if upload is None:
        return ClaimDecision.REFUSE_OBJECT if owner_revoked else ClaimDecision.CREATE
    if upload.state is State.DELETED:
        return ClaimDecision.DELETED
    if upload.etag == event.etag:
        return ClaimDecision.RESUME if START_PARSING.allows(upload.state) else ClaimDecision.DUPLICATE
    if upload.etag is not None and _is_older(event, upload):
        return ClaimDecision.STALE
    return ClaimDecision.REFUSE_OBJECT if owner_revoked else ClaimDecision.NEW_GENERATION


# --- an owner's quotas at registration ------------------------------------------------------

# Registrations are counted over this window (GENOBASE_QUOTA_REGISTRATIONS_PER_MINUTE).
RATE_WINDOW = timedelta(minutes=1)
# How long a client refused for uploads in flight or open multipart uploads is told to wait: one of
# its uploads must end first, which a retry a little later can find.
BUSY_RETRY_AFTER = timedelta(seconds=30)


@dataclass(frozen=True)
class Quotas:
    """What one owner may hold and do (``GENOBASE_QUOTA_*``); admin keys are not limited."""

    stored_bytes: int
    uploads_in_flight: int
    open_multipart_uploads: int
    registrations_per_minute: int


@dataclass(frozen=True)
class OwnerUsage:
    """An owner's uploads as the quotas count them, read under the owner's registration lock.

    ``stored_bytes``: the sizes of its uploads that hold an object (any state with an etag) or wait
    for one (``awaiting_upload``: the declared size is reserved). ``in_flight``: uploads awaiting
    their object or owed work by a stage. ``open_multipart_uploads``: multipart uploads still
    waiting for their parts. ``registrations``: registrations within ``RATE_WINDOW``, the oldest
    ``oldest_registration_age`` ago.
    """

    stored_bytes: int
    in_flight: int
    open_multipart_uploads: int
    registrations: int
    oldest_registration_age: timedelta | None


class QuotaCode(StrEnum):
    STORAGE = "storage_quota_exceeded"  # 413: waiting does not help
    IN_FLIGHT = "too_many_uploads_in_flight"  # 429
    MULTIPART = "too_many_multipart_uploads"  # 429
    RATE = "registration_rate_exceeded"  # 429


@dataclass(frozen=True)
class QuotaRefusal:
    code: QuotaCode
    message: str  # safe to show: the owner's own counts and limits
    retry_after: timedelta | None  # None: a retry cannot succeed by waiting (HTTP 413)


class QuotaSettings(Protocol):
    """Where the quotas are set (``shared/runtime/settings.py``: ``GENOBASE_QUOTA_*``)."""

    quota_stored_bytes: int
    quota_uploads_in_flight: int
    quota_open_multipart_uploads: int
    quota_registrations_per_minute: int


def quotas_of(settings: QuotaSettings) -> Quotas:
    return Quotas(
        stored_bytes=settings.quota_stored_bytes,
        uploads_in_flight=settings.quota_uploads_in_flight,
        open_multipart_uploads=settings.quota_open_multipart_uploads,
        registrations_per_minute=settings.quota_registrations_per_minute,
    )


def direct_write_refusal(usage: OwnerUsage, quotas: Quotas) -> QuotaRefusal | None:
    """Whether an object an owner wrote with its own S3 keys (no registration) is refused.

    ``usage`` already counts the object's own upload. Such writes are not registered, so neither
    the registration rate nor the multipart count applies; the uploads in flight and the stored
    bytes do, as for a registration.
    """
    if usage.in_flight > quotas.uploads_in_flight:
        return QuotaRefusal(
            QuotaCode.IN_FLIGHT, f"at most {quotas.uploads_in_flight} uploads being processed", BUSY_RETRY_AFTER
        )
    if usage.stored_bytes > quotas.stored_bytes:
        return QuotaRefusal(
            QuotaCode.STORAGE,
            f"the owner's stored bytes would be {usage.stored_bytes}; the quota is {quotas.stored_bytes}",
            None,
        )
    return None


def quota_refusal(usage: OwnerUsage, quotas: Quotas, size: int, *, multipart: bool) -> QuotaRefusal | None:
    """Whether one more registration of ``size`` bytes (a multipart one or not) is refused, and why."""
    if usage.registrations >= quotas.registrations_per_minute:
        age = usage.oldest_registration_age or timedelta(0)
        return QuotaRefusal(
            QuotaCode.RATE,
            f"at most {quotas.registrations_per_minute} registrations a minute",
            max(RATE_WINDOW - age, timedelta(seconds=1)),
        )
    if usage.in_flight >= quotas.uploads_in_flight:
        return QuotaRefusal(
            QuotaCode.IN_FLIGHT,
            f"at most {quotas.uploads_in_flight} uploads waiting for their file or being processed",
            BUSY_RETRY_AFTER,
        )
    if multipart and usage.open_multipart_uploads >= quotas.open_multipart_uploads:
        return QuotaRefusal(
            QuotaCode.MULTIPART,
            f"at most {quotas.open_multipart_uploads} multipart uploads waiting for their parts",
            BUSY_RETRY_AFTER,
        )
    if usage.stored_bytes + size > quotas.stored_bytes:
        return QuotaRefusal(
            QuotaCode.STORAGE,
            f"this upload would bring the owner's stored bytes to {usage.stored_bytes + size}; "
            f"the quota is {quotas.stored_bytes}",
            None,
        )
    return None


def retry_quota_refusal(usage: OwnerUsage, quotas: Quotas) -> QuotaRefusal | None:
    """Whether a retry is refused: it puts an upload back in flight (its bytes are counted already,
    and it is no registration), so only the uploads in flight apply."""
    if usage.in_flight >= quotas.uploads_in_flight:
        return QuotaRefusal(
            QuotaCode.IN_FLIGHT,
            f"at most {quotas.uploads_in_flight} uploads waiting for their file or being processed",
            BUSY_RETRY_AFTER,
        )
    return None


class QuotaExceeded(Exception):
    """A registration the owner's quotas refuse (nothing was written)."""

    def __init__(self, refusal: QuotaRefusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(frozen=True)
class Registration:
    """What the intake registers before the client writes its object: the row of an upload in
    ``awaiting_upload``, under the key its ticket signs.

    ``size``: the declared size (None for an upload not registered through the intake's API);
    ``multipart_upload_id``: the store's id of the multipart upload started for it, if any.
    """

    upload_id: uuid.UUID
    bucket: str
    key: str
    filename: str
    declared_format: str | None
    alphabet: str
    size: int | None
    owner: str | None = None
    ticket_expires_at: datetime | None = None
    circular: bool = False
    multipart_upload_id: str | None = None
    mode: Mode = Mode.STORE
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    # The owner's idempotency key (``Idempotency-Key``) and its request's fingerprint, if it sent one:
    # the same key registers once (shared/domain/listing.py).
    idempotency_key: str | None = None
    request_hash: str | None = None


# How far ahead of our clock an event's time may be. Beyond it the event is dated by its arrival:
# a forged or skewed time far in the future would otherwise make every later genuine event stale.
EVENT_CLOCK_SKEW = timedelta(minutes=5)


def trusted_event_time(event: ObjectCreated, now: datetime) -> ObjectCreated:
    """The event, with an event time from too far in the future replaced by ``now``."""
    if event.event_time is not None and event.event_time > now + EVENT_CLOCK_SKEW:
        return event.model_copy(update={"event_time": now})
    return event


def needs_object_check(decision: ClaimDecision) -> bool:
    """Whether the store must first confirm the event's object: anything that creates a generation.

    A new generation deletes the previous one's rows and result, so it starts only for an object
    the store shows with the event's etag; a forged or outdated event then changes nothing. A
    refused object replaces the generation too (in state ``revoked``): the same check applies.
    """
    return decision in (ClaimDecision.CREATE, ClaimDecision.NEW_GENERATION, ClaimDecision.REFUSE_OBJECT)


def decide_locked_claim(
    upload: Upload | None, event: ObjectCreated, confirmed: bool, *, owner_revoked: bool = False
) -> ClaimDecision:
    """``decide_claim`` again under the key's lock, where ``confirmed`` says whether the store showed
    the event's object before: a generation is never started on an event it was not asked about."""
    decision = decide_claim(upload, event, owner_revoked=owner_revoked)
    if needs_object_check(decision) and not confirmed:
        return ClaimDecision.UNCONFIRMED
    return decision


def _is_older(event: ObjectCreated, upload: Upload) -> bool:
    return event.event_time is not None and upload.event_time is not None and event.event_time < upload.event_time


@dataclass(frozen=True)
class Claim:
    action: ClaimAction
    upload: Upload


@dataclass(frozen=True)
class Shard:
    """One part of a generation's object that a parser parses on its own (a large FASTA): bytes
    ``[start, end)`` of the object, whose content begins with the record numbered
    ``first_ordinal`` on ``first_line``.

    Plain: the bytes are the content (``skip`` 0, ``content_bytes`` their length). bgzip: the
    bytes are whole blocks; their inflated content starts ``skip`` bytes before the shard's first
    record, and the shard is the ``content_bytes`` from there.
    """

    number: int
    start: int
    end: int
    first_ordinal: int
    first_line: int
    records: int
    bgzf: bool = False
    skip: int = 0
    content_bytes: int = 0


@dataclass(frozen=True)
class ShardToParse:
    """A shard a parser is asked for, with its upload, while its generation is still parsing; and how
    many shards the plan has (the shard's ``ParseCompleted`` names it)."""

    upload: Upload
    shard: Shard
    shard_count: int


@dataclass(frozen=True)
class PersistOutcome:
    stored: bool  # False: a replay of a committed batch, or a batch of a dead generation
    ready_to_assemble: bool
    # The generation's first batch was just committed: the assembler may start following it.
    first_batch: bool = False


class CommittedBatch(NamedTuple):
    """A committed batch as the assembler walks them: its number and the records it holds,
    ``[records_from, records_through)`` (both None for a batch of parts only; ``records_from`` also
    None for a batch stored before it was recorded)."""

    shard: int
    batch_no: int
    records_from: int | None
    records_through: int | None

    def holds_window(self, done: int) -> bool:
        """Whether the window from ``done`` (where the batch before it ended) to this batch's end
        holds this batch's records and no others, so that it is bounded by the batch's bytes and
        may be read at once. Not so for a batch that starts elsewhere: one recorded before
        ``records_from`` was, or one whose numbers are wrong (the persister's checks make that
        impossible for what a parser sends, but the window is streamed rather than trusted)."""
        return self.records_through is not None and self.records_from == done


@dataclass(frozen=True)
class NameCounts:
    """Duplicate names (kept, and reported) and empty sequences of a generation's records."""

    duplicate_names: int
    empty_sequences: int


@dataclass(frozen=True)
class ResultLocation:
    bucket: str
    key: str
    size: int
    records: int
    sha256: str | None = None  # the document's, hex; computed as it was written


def result_key(upload: Upload) -> str:
    return f"{upload.id}/generation-{upload.generation}.json"


def result_keys(upload: Upload) -> list[str]:
    """The keys every generation of the upload may have written its result document under (a new
    generation does not remove the previous one's): what the purge of a deleted upload removes."""
    return [f"{upload.id}/generation-{generation}.json" for generation in range(1, upload.generation + 1)]


def unprintable(text: str) -> bool:
    """Whether ``text`` holds a character a terminal or a page may act on instead of showing:
    Unicode's "other" categories (C0 and C1 controls, format characters such as the bidirectional
    overrides, surrogates, private use, unassigned) and the line and paragraph separators. A file
    name or a label is shown to people; none belongs in one."""
    return any(_unprintable_character(character) for character in text)


def _unprintable_character(character: str) -> bool:
    # C*: controls, format, surrogates, private use, unassigned; Zl/Zp: the line and paragraph
    # separators, which end a line where a reader expects none.
    category = unicodedata.category(character)
    return category[0] == "C" or category in ("Zl", "Zp")


def filename_of_key(key: str) -> str:
    """The file name an upload written straight to the bucket is shown under: the key's last
    segment, each unprintable character (see ``unprintable``) replaced by U+FFFD. The key itself
    is kept as the store has it; only what people read is made safe."""
    name = key.rsplit("/", 1)[-1]
    return "".join("\ufffd" if _unprintable_character(c) else c for c in name)
