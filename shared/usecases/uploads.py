"""The intake's use cases: register an upload, show its status, sign and list the parts of a multipart
upload, retry a failed one.

Each works over the ports ``IntakeUploads`` (the upload store), ``UploadTickets`` (the object
store's signed URLs and listings) and ``NotificationPublisher`` (the broker, for a retry's parse
message) and returns domain values; ``services/intake/api.py`` turns requests into
calls and the answers (or the ``Refused`` exceptions) into HTTP. An upload belongs to the owner of
the key that registered it: another owner's is refused as if it did not exist (``can_see``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.domain.access import KEY_NAME, Caller, can_see, owner_prefix
from shared.domain.events import replay_event
from shared.domain.listing import (
    DEFAULT_PAGE,
    IDEMPOTENCY_KEY,
    MAX_LABEL_FILTERS,
    MAX_NAME_PREFIX_BYTES,
    MAX_PAGE,
    Cursor,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidLabels,
    UploadFilter,
    check_labels,
    parse_label_filter,
    request_fingerprint,
)
from shared.domain.multipart import plan as multipart_plan
from shared.domain.ports import IntakeUploads, NotificationPublisher, UploadTickets
from shared.domain.uploads import (
    Mode,
    QuotaExceeded,
    Registration,
    RetryRefusal,
    State,
    Upload,
    quota_refusal,
    quotas_of,
    retry_refusal,
)
from shared.runtime.settings import Settings

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Intake:
    """What the intake's use cases work with: its settings and its ports (``events``: where a retry's
    parse message goes; None for an intake that may not publish, whose retries are refused)."""

    settings: Settings
    uploads: IntakeUploads
    store: UploadTickets
    events: NotificationPublisher | None = None


# --- refusals: each a code and a message safe to show the caller ---------------------------------


class Refused(Exception):
    """A request the use case refuses; ``code`` names why, the message is safe to show."""

    code = "refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UploadTooLarge(Refused):
    code = "upload_too_large"


class NoSuchUpload(Refused):
    """No such upload, or another owner's (the same answer: its existence is not disclosed)."""

    code = "no_such_upload"


class NotAwaitingParts(Refused):
    code = "not_awaiting_parts"


class NoSuchPart(Refused):
    code = "no_such_part"


class CannotRetry(Refused):
    """A retry refused (409): ``code`` is the ``RetryRefusal``; ``state`` the upload's state now."""

    def __init__(self, refusal: RetryRefusal, message: str, state: State) -> None:
        super().__init__(message)
        self.code = refusal.value
        self.state = state


class LabelsRefused(Refused):
    """Labels beyond their bounds (shared/domain/listing.py), at registration or in a change."""

    code = "invalid_labels"


class IdempotencyKeyConflict(Refused):
    """The owner's idempotency key was used for another request."""

    code = "idempotency_key_reused"


class InvalidIdempotencyKey(Refused):
    code = "invalid_idempotency_key"


class InvalidListing(Refused):
    """A listing's parameter that cannot be honoured (a cursor not handed out, an unknown state)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class UploadDeleted(Refused):
    """The upload is a tombstone (state ``deleted``): nothing of it may change any more."""

    code = "upload_deleted"


class NotAdmin(Refused):
    """Only an admin key may list another owner's uploads."""

    code = "admin_only"


# --- register an upload ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadWanted:
    """What a caller asks to upload (validated by the route: the name's length, the size's bounds)."""

    filename: str
    size: int
    declared_format: str | None
    alphabet: str
    circular: bool = False
    mode: Mode = Mode.STORE
    labels: Mapping[str, str] = field(default_factory=dict)
    # The client's Idempotency-Key: the same key and the same request register once.
    idempotency_key: str | None = None

    def fingerprint(self) -> str:
        """What the idempotency key stands for: every field of the request but the key itself."""
        request = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "idempotency_key"}
        return request_fingerprint({**request, "labels": dict(self.labels)})


@dataclass(frozen=True)
class MultipartLinks:
    """A multipart upload's id at the store, how it is cut, and the signed URLs to finish it."""

    upload_id: str
    part_size: int
    part_count: int
    complete_url: str
    abort_url: str
    list_parts_url: str


@dataclass(frozen=True)
class Ticket:
    """A registered upload: where its object goes, until when, and how to write it (one PUT, or multipart)."""

    upload_id: uuid.UUID
    bucket: str
    key: str
    expires_at: datetime
    upload_url: str | None  # one PUT of the whole file (None: multipart, or a replay of an upload past its ticket)
    multipart: MultipartLinks | None
    replayed: bool = False  # the upload an earlier request with the same idempotency key registered


def object_key(upload_id: uuid.UUID, filename: str, owner: str | None = None) -> str:
    """One key per upload, under its owner's prefix and its id; the name keeps only its last path component."""
    name = _UNSAFE.sub("", filename.replace("\\", "/")).rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        name = "upload"
    return f"{owner_prefix(owner) if owner else ''}{upload_id}/{name}"


def register_upload(intake: Intake, caller: Caller, wanted: UploadWanted) -> Ticket:
    """Register an upload of the caller's and sign how to write its object.

    Refused (``UploadTooLarge``) beyond GENOBASE_MAX_UPLOAD_BYTES, and (``QuotaExceeded``) beyond
    the owner's quotas; admin keys have none. Above the multipart threshold a multipart upload is
    started at the store first; if its registration then fails, it is aborted here: no row would
    ever let the watchdog find it.

    With an idempotency key the owner already used for the same request, the upload registered
    then comes back (``replayed``), with fresh signed URLs valid until its ticket's end, and
    nothing is counted again; for another request, ``IdempotencyKeyConflict``.
    """
    settings = intake.settings
    try:
        labels = check_labels(wanted.labels)
    except InvalidLabels as exc:
        raise LabelsRefused(str(exc)) from None
    idempotency_key = wanted.idempotency_key
    request_hash = None
    if idempotency_key is not None:
        if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise InvalidIdempotencyKey("an Idempotency-Key is 1 to 255 printable ASCII characters")
        request_hash = wanted.fingerprint()
        try:
            earlier = intake.uploads.registered_with(caller.name, idempotency_key, request_hash)
        except IdempotencyKeyReused:
            raise _key_reused() from None
        if earlier is not None:
            return _replayed_ticket(intake, earlier)
    if wanted.size > settings.max_upload_bytes:
        raise UploadTooLarge(f"uploads are limited to {settings.max_upload_bytes} bytes")
    upload_id = uuid.uuid4()
    key = object_key(upload_id, wanted.filename, caller.name)
    multipart = wanted.size > settings.multipart_threshold_bytes
    quotas = None if caller.admin else quotas_of(settings)
    # A validation's object holds the store's space until the watchdog removes it: it counts like any.
    stored = wanted.size
    if quotas is not None:
        # A first look, without the lock: a refused caller costs the store nothing (no multipart
        # upload started and aborted); the decision that counts is taken again in the registration.
        usage = intake.uploads.owner_usage(caller.name)
        refusal = None if usage is None else quota_refusal(usage, quotas, stored, multipart=multipart)
        if refusal is not None:
            raise QuotaExceeded(refusal)
    ttl = settings.multipart_ttl_seconds if multipart else settings.presign_ttl_seconds
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    bucket = settings.uploads_bucket
    store_upload_id = intake.store.start_multipart(bucket, key) if multipart else None
    registration = Registration(
        upload_id=upload_id,
        bucket=bucket,
        key=key,
        filename=wanted.filename,
        declared_format=wanted.declared_format,
        alphabet=wanted.alphabet,
        size=wanted.size,
        owner=caller.name,
        ticket_expires_at=expires_at,
        circular=wanted.circular,
        multipart_upload_id=store_upload_id,
        mode=wanted.mode,
        labels=labels,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    abort = store_upload_id is not None
    try:
        registered = intake.uploads.register(registration, quotas)
        abort = abort and registered.id != upload_id  # a concurrent request with the same key won
    except IdempotencyKeyReused:
        raise _key_reused() from None
    finally:
        if abort:  # no row holds it: nothing else would ever abort it
            with contextlib.suppress(Exception):
                intake.store.abort_multipart(bucket, key, store_upload_id or "")
    if registered.id != upload_id:
        return _replayed_ticket(intake, registered)
    if store_upload_id is None:
        url = intake.store.presign_put(bucket, key, ttl, wanted.size)
        return Ticket(upload_id, bucket, key, expires_at, upload_url=url, multipart=None)
    links = _multipart_links(intake, bucket, key, store_upload_id, wanted.size, ttl)
    return Ticket(upload_id, bucket, key, expires_at, upload_url=None, multipart=links)


def _key_reused() -> IdempotencyKeyConflict:
    return IdempotencyKeyConflict("this Idempotency-Key was used with another request")


def _multipart_links(
    intake: Intake, bucket: str, key: str, store_upload_id: str, size: int, ttl: int
) -> MultipartLinks:
    parts = multipart_plan(size, intake.settings.multipart_min_part_bytes)

    def sign(operation: str) -> str:
        return intake.store.presign_multipart(operation, bucket=bucket, key=key, upload_id=store_upload_id, ttl=ttl)

    return MultipartLinks(
        upload_id=store_upload_id,
        part_size=parts.part_size,
        part_count=parts.count,
        complete_url=sign("complete_multipart_upload"),
        abort_url=sign("abort_multipart_upload"),
        list_parts_url=sign("list_parts"),
    )


def _replayed_ticket(intake: Intake, upload: Upload) -> Ticket:
    """The ticket of an upload registered before under the same idempotency key: signed afresh,
    valid until the first ticket's end (never longer); no URL once the upload waits for no object."""
    now = datetime.now(UTC)
    expires_at = upload.ticket_expires_at or now
    ttl = max(int((expires_at - now).total_seconds()), 1)
    awaiting = upload.state is State.AWAITING_UPLOAD
    ticket = Ticket(upload.id, upload.bucket, upload.key, expires_at, upload_url=None, multipart=None, replayed=True)
    if not awaiting:
        return ticket
    size = upload.bytes_total or 0
    if upload.multipart_upload_id is None:
        return dataclasses.replace(ticket, upload_url=intake.store.presign_put(upload.bucket, upload.key, ttl, size))
    links = _multipart_links(intake, upload.bucket, upload.key, upload.multipart_upload_id, size, ttl)
    return dataclasses.replace(ticket, multipart=links)


# --- an upload's status ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultLink:
    """Where a done upload's result document is, and a signed URL to read it until ``expires_at``."""

    url: str
    expires_at: datetime
    bucket: str
    key: str
    size: int
    records: int
    sha256: str | None = None  # the document's SHA-256 (hex); None for one written before it was recorded


@dataclass(frozen=True)
class UploadView:
    """An upload as its owner sees it now: the row, and what follows from it at this moment."""

    upload: Upload
    fraction: float  # of the whole work, 0 to 1
    stalled: bool  # the current stage has not moved for longer than the stall time
    idle_seconds: float
    result: ResultLink | None
    collection_digest: str | None


def visible(caller: Caller, upload: Upload | None) -> Upload | None:
    """The upload if the caller may see it (its owner's keys and admin keys), else None."""
    return upload if upload is not None and can_see(caller, upload.owner) else None


def progress_fraction(upload: Upload) -> float:
    """Parsing and loading are the first 80 %, writing the result the last 20 %."""
    if upload.state is State.DONE:
        return 1.0
    loaded = upload.bytes_done / upload.bytes_total if upload.bytes_total else 0.0
    if upload.state is State.ASSEMBLING and upload.records_total:
        return 0.8 + 0.2 * min(upload.records_assembled / upload.records_total, 1.0)
    return round(0.8 * min(loaded, 1.0), 4)


def upload_view(intake: Intake, upload: Upload) -> UploadView:
    now = datetime.now(UTC)
    settings = intake.settings
    result = None
    if upload.state is State.DONE and upload.result_bucket and upload.result_key:
        ttl = settings.presign_ttl_seconds
        result = ResultLink(
            url=intake.store.presign_get(upload.result_bucket, upload.result_key, ttl),
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
            bucket=upload.result_bucket,
            key=upload.result_key,
            size=upload.result_size or 0,
            records=upload.result_records or 0,
            sha256=upload.result_sha256,
        )
    digest = intake.uploads.collection_digest(upload.id, upload.generation) if upload.state is State.DONE else None
    return UploadView(
        upload=upload,
        fraction=progress_fraction(upload),
        stalled=upload.stalled(now, timedelta(seconds=settings.stall_after_seconds)),
        idle_seconds=round(upload.idle(now).total_seconds(), 1),
        result=result,
        collection_digest=digest,
    )


def show_upload(intake: Intake, caller: Caller, upload_id: uuid.UUID) -> UploadView:
    upload = visible(caller, intake.uploads.get(upload_id))
    if upload is None:  # another owner's: as if it did not exist
        raise NoSuchUpload(f"no upload {upload_id}")
    return upload_view(intake, upload)


def find_upload(intake: Intake, caller: Caller, bucket: str, key: str) -> UploadView:
    """An upload by its object, e.g. one written straight to the bucket without registering."""
    upload = visible(caller, intake.uploads.find(bucket, key))
    if upload is None:
        raise NoSuchUpload(f"no upload for s3://{bucket}/{key}")
    return upload_view(intake, upload)


# --- the listing, and labels changed --------------------------------------------------------------


@dataclass(frozen=True)
class ListWanted:
    """A listing's parameters as the caller sent them (checked here: ``InvalidListing``)."""

    states: Sequence[str] = ()
    name_prefix: str | None = None
    labels: Sequence[str] = ()  # key=value, each must match
    created_after: datetime | None = None
    created_before: datetime | None = None
    owner: str | None = None  # an admin's: one owner's uploads only
    cursor: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class UploadPage:
    uploads: list[Upload]
    next_cursor: str | None  # None: this was the last page


def _aware(moment: datetime | None) -> datetime | None:
    """A time without a zone is UTC (the API's times are)."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def listing_filter(caller: Caller, wanted: ListWanted) -> UploadFilter:
    """What the caller may list: its own uploads; an admin, everyone's or one owner's."""
    if wanted.owner is not None and not KEY_NAME.match(wanted.owner):
        raise InvalidListing("invalid_owner", "an owner is a key name: lower-case letters, digits and '-'")
    if wanted.owner is not None and not caller.admin and wanted.owner != caller.name:
        raise NotAdmin("only an admin key may list another owner's uploads")
    owner = wanted.owner if caller.admin else caller.name
    try:
        states = frozenset(State(s) for s in wanted.states)
    except ValueError:
        raise InvalidListing("invalid_state", f"a state is one of: {', '.join(s.value for s in State)}") from None
    prefix = wanted.name_prefix or None
    if prefix is not None and (_UNSAFE.search(prefix) or len(prefix.encode("utf-8")) > MAX_NAME_PREFIX_BYTES):
        raise InvalidListing(
            "invalid_name", f"a name prefix is at most {MAX_NAME_PREFIX_BYTES} bytes, no control characters"
        )
    if len(wanted.labels) > MAX_LABEL_FILTERS:
        raise InvalidListing("invalid_label_filter", f"at most {MAX_LABEL_FILTERS} label filters")
    labels: dict[str, str] = {}
    for text in wanted.labels:
        try:
            key, value = parse_label_filter(text)
        except InvalidLabels as exc:
            raise InvalidListing("invalid_label_filter", str(exc)) from None
        if labels.get(key, value) != value:  # two values for one key: nothing can match
            raise InvalidListing("invalid_label_filter", f"label {key} is filtered on two values")
        labels[key] = value
    return UploadFilter(
        owner=owner,
        states=states,
        name_prefix=prefix,
        labels=labels,
        created_after=_aware(wanted.created_after),
        created_before=_aware(wanted.created_before),
    )


def list_uploads(intake: Intake, caller: Caller, wanted: ListWanted) -> UploadPage:
    """The caller's uploads (an admin's: everyone's, or ``owner``'s), newest first, one page of at
    most ``limit`` (clamped to 1..``MAX_PAGE``) after ``cursor``; the next page's cursor, if any."""
    query = listing_filter(caller, wanted)
    limit = min(max(wanted.limit if wanted.limit is not None else DEFAULT_PAGE, 1), MAX_PAGE)
    try:
        after = Cursor.decode(wanted.cursor) if wanted.cursor is not None else None
    except InvalidCursor as exc:
        raise InvalidListing("invalid_cursor", str(exc)) from None
    found = intake.uploads.list_uploads(query, after, limit + 1)
    page = found[:limit]
    more = len(found) > limit
    return UploadPage(page, Cursor(page[-1].created_at, page[-1].id).encode() if more else None)


def change_labels(
    intake: Intake, caller: Caller, upload_id: uuid.UUID, patch: Mapping[str, str | None] | None
) -> UploadView:
    """Merge-patch an upload's labels (RFC 7396: a key set to null is removed, ``labels: null``
    removes all); its owner's keys or an admin's. A result document already written keeps the
    labels it was written with."""
    if visible(caller, intake.uploads.get(upload_id)) is None:
        raise NoSuchUpload(f"no upload {upload_id}")
    try:
        upload = intake.uploads.merge_labels(upload_id, patch)
    except InvalidLabels as exc:
        raise LabelsRefused(str(exc)) from None
    if upload is None:
        raise NoSuchUpload(f"no upload {upload_id}")
    if upload.state is State.DELETED:
        raise UploadDeleted(f"upload {upload_id} is deleted: a tombstone holds no labels")
    return upload_view(intake, upload)


# --- the parts of a multipart upload ---------------------------------------------------------------


@dataclass(frozen=True)
class PartWanted:
    number: int  # 1-based
    md5: str  # base64, as Content-MD5


@dataclass(frozen=True)
class SignedPart:
    number: int
    size: int
    md5: str
    url: str


@dataclass(frozen=True)
class StoredPart:
    number: int
    etag: str
    size: int


def _awaiting_parts(intake: Intake, caller: Caller, upload_id: uuid.UUID) -> tuple[Upload, str]:
    """A multipart upload of the caller's that still waits for its parts, and its id at the store."""
    upload = visible(caller, intake.uploads.get(upload_id))
    if upload is None:
        raise NoSuchUpload(f"no upload {upload_id}")
    if upload.multipart_upload_id is None or upload.state is not State.AWAITING_UPLOAD:
        raise NotAwaitingParts(f"upload {upload_id} does not wait for parts ({upload.state})")
    return upload, upload.multipart_upload_id


def sign_parts(intake: Intake, caller: Caller, upload_id: uuid.UUID, wanted: Sequence[PartWanted]) -> list[SignedPart]:
    """Signed PUT URLs for parts of a multipart upload, each for its MD5 and its exact size, valid
    until the ticket ends (at least a minute)."""
    upload, store_upload_id = _awaiting_parts(intake, caller, upload_id)
    assert upload.bytes_total is not None
    parts = multipart_plan(upload.bytes_total, intake.settings.multipart_min_part_bytes)
    now = datetime.now(UTC)
    ttl = int(max((upload.ticket_expires_at or now) - now, timedelta(seconds=60)).total_seconds())
    signed = []
    for part in wanted:
        if part.number > parts.count:
            raise NoSuchPart(f"this upload has {parts.count} parts")
        size = parts.length(part.number)
        url = intake.store.presign_part(upload.bucket, upload.key, store_upload_id, part.number, part.md5, size, ttl)
        signed.append(SignedPart(part.number, size, part.md5, url))
    return signed


def stored_parts(intake: Intake, caller: Caller, upload_id: uuid.UUID) -> list[StoredPart]:
    """The parts the store already has: a client that was interrupted sends only the others."""
    upload, store_upload_id = _awaiting_parts(intake, caller, upload_id)
    return [
        StoredPart(n, etag, size) for n, etag, size in intake.store.parts(upload.bucket, upload.key, store_upload_id)
    ]


# --- retry a failed upload -------------------------------------------------------------------------


def retry_upload(intake: Intake, caller: Caller, upload_id: uuid.UUID) -> Upload:
    """Drive a failed upload again, as a new generation of the object still in the store.

    Refused (``CannotRetry``, each a 409) unless the upload is ``failed`` and the store shows its
    object with the same etag (a listing: ``object_gone`` if none, ``object_changed`` if another
    object is there now -- that one's own event makes it a new generation). The new generation is
    committed first (``queued``; of two retries at once only one makes it), then its parse message
    is published with confirms. Should that publish fail, the upload waits in ``queued``, a live
    state: the watchdog re-issues its message once it counts as stalled, so nothing is lost; the
    caller is told the retry was accepted either way. Held to the owner's uploads in flight
    (``QuotaExceeded``).
    """
    upload = visible(caller, intake.uploads.get(upload_id))
    if upload is None:
        raise NoSuchUpload(f"no upload {upload_id}")
    refusal = retry_refusal(upload, upload.etag)  # the state first: no store call for a live upload
    if refusal is None:
        assert upload.etag is not None
        stored = intake.store.listed(upload.bucket, upload.key)
        refusal = retry_refusal(upload, stored.etag if stored is not None else None)
    if refusal is not None:
        raise _cannot_retry(refusal, upload)
    if intake.events is None:
        raise RuntimeError("this intake was given no publisher: it cannot retry")
    assert upload.etag is not None
    quotas = None if caller.admin else quotas_of(intake.settings)
    retried = intake.uploads.retry(upload.id, upload.etag, quotas)
    if retried is None:  # another retry (or a new object) got there first
        now = intake.uploads.get(upload.id) or upload
        raise _cannot_retry(RetryRefusal.NOT_FAILED, now)
    try:
        intake.events.publish_event(replay_event(retried))
    except Exception as exc:  # the route logs it; the watchdog re-issues the message
        raise RetryNotPublished(retried) from exc
    return retried


class RetryNotPublished(Exception):
    """The retry is committed (``upload``, queued), its parse message not published: the watchdog
    re-issues it once the upload counts as stalled."""

    def __init__(self, upload: Upload) -> None:
        super().__init__(f"upload {upload.id} generation {upload.generation}: parse message not published")
        self.upload = upload


def _cannot_retry(refusal: RetryRefusal, upload: Upload) -> CannotRetry:
    messages = {
        RetryRefusal.NOT_FAILED: f"only a failed upload can be retried; this one is {upload.state.value}",
        RetryRefusal.OBJECT_GONE: "the upload's object is no longer in the store: upload the file again",
        RetryRefusal.OBJECT_CHANGED: "another object was written under the upload's key since: "
        "it is processed as a new generation of its own",
    }
    return CannotRetry(refusal, messages[refusal], upload.state)


# --- delete an upload ------------------------------------------------------------------------------


def delete_upload(intake: Intake, caller: Caller, upload_id: uuid.UUID) -> UploadView:
    """End the caller's upload wherever it is, and remove what it holds.

    In one commit the upload becomes a tombstone (state ``deleted``) and its rows go -- records,
    parts, batches, shards, its sequence collection -- so that refget stops serving what no other
    upload holds and no late message of a stage can bring it back (each stage's move excludes
    ``deleted``). The store's part, which the intake's S3 users have no right to do, is the
    watchdog's: it aborts the multipart upload and removes the object and the result documents
    at its next sweep (``services/watchdog/handler.py:purge_deleted``). Deleting again answers the
    same; another owner's upload is ``NoSuchUpload``, as for any upload.
    """
    if visible(caller, intake.uploads.get(upload_id)) is None:
        raise NoSuchUpload(f"no upload {upload_id}")
    deleted = intake.uploads.delete(upload_id)
    if deleted is None:  # cannot happen (rows of uploads are never removed); answered as not found
        raise NoSuchUpload(f"no upload {upload_id}")
    return upload_view(intake, deleted)
