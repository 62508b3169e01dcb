"""The intake's use cases: register an upload, show its status, sign and list the parts of a multipart upload.

Each works over the ports ``IntakeUploads`` (the upload store) and ``UploadTickets`` (the object
store's signed URLs) and returns domain values; ``services/intake/api.py`` turns requests into
calls and the answers (or the ``Refused`` exceptions) into HTTP. An upload belongs to the owner of
the key that registered it: another owner's is refused as if it did not exist (``can_see``).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.domain.access import Caller, can_see, owner_prefix
from shared.domain.multipart import plan as multipart_plan
from shared.domain.ports import IntakeUploads, UploadTickets
from shared.domain.uploads import QuotaExceeded, Registration, State, Upload, quota_refusal, quotas_of
from shared.runtime.settings import Settings

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Intake:
    """What the intake's use cases work with: its settings and its two ports."""

    settings: Settings
    uploads: IntakeUploads
    store: UploadTickets


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


# --- register an upload ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadWanted:
    """What a caller asks to upload (validated by the route: the name's length, the size's bounds)."""

    filename: str
    size: int
    declared_format: str | None
    alphabet: str
    circular: bool = False


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
    upload_url: str | None  # one PUT of the whole file (None: multipart)
    multipart: MultipartLinks | None


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
    """
    settings = intake.settings
    if wanted.size > settings.max_upload_bytes:
        raise UploadTooLarge(f"uploads are limited to {settings.max_upload_bytes} bytes")
    upload_id = uuid.uuid4()
    key = object_key(upload_id, wanted.filename, caller.name)
    multipart = wanted.size > settings.multipart_threshold_bytes
    quotas = None if caller.admin else quotas_of(settings)
    if quotas is not None:
        # A first look, without the lock: a refused caller costs the store nothing (no multipart
        # upload started and aborted); the decision that counts is taken again in the registration.
        usage = intake.uploads.owner_usage(caller.name)
        refusal = None if usage is None else quota_refusal(usage, quotas, wanted.size, multipart=multipart)
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
    )
    try:
        intake.uploads.register(registration, quotas)
    except BaseException:
        if store_upload_id is not None:  # no row: nothing else would ever abort it
            with contextlib.suppress(Exception):
                intake.store.abort_multipart(bucket, key, store_upload_id)
        raise
    if store_upload_id is None:
        url = intake.store.presign_put(bucket, key, ttl, wanted.size)
        return Ticket(upload_id, bucket, key, expires_at, upload_url=url, multipart=None)
    parts = multipart_plan(wanted.size, settings.multipart_min_part_bytes)

    def sign(operation: str) -> str:
        return intake.store.presign_multipart(operation, bucket=bucket, key=key, upload_id=store_upload_id, ttl=ttl)

    links = MultipartLinks(
        upload_id=store_upload_id,
        part_size=parts.part_size,
        part_count=parts.count,
        complete_url=sign("complete_multipart_upload"),
        abort_url=sign("abort_multipart_upload"),
        list_parts_url=sign("list_parts"),
    )
    return Ticket(upload_id, bucket, key, expires_at, upload_url=None, multipart=links)


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
