"""What each handler and use case needs from the outside world, as narrow interfaces (``typing.Protocol``).

The handlers in ``services/*/handler.py`` and the intake's use cases (``shared/usecases/``) depend
on these, never on an adapter: the services' wiring plugs in the real ones (``shared/postgres``,
``shared/s3``, ``shared/rabbitmq``), and the unit tests (``tests/unit/fakes.py``) in-memory ones
that keep the same rules (``tests/contract/`` holds both to the same behaviour).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from shared.domain.listing import Cursor, UploadFilter
from shared.domain.messages import Message, ParseCompleted, SequenceBatch
from shared.domain.reconcile import ListedObject
from shared.domain.record_schema import ResultPiece
from shared.domain.seqcol import Collection, SortedArrays
from shared.domain.uploads import (
    Claim,
    CommittedBatch,
    Failure,
    NameCounts,
    ObjectCreated,
    OwnerUsage,
    PersistOutcome,
    Quotas,
    Registration,
    ResultLocation,
    Shard,
    ShardToParse,
    Upload,
    Validation,
)

# --- the upload store, one interface per stage -------------------------------------------------


class Failing(Protocol):
    def fail(self, upload_id: uuid.UUID, generation: int | None, failure: Failure) -> bool:
        """Fail that generation (no-op when it was replaced or is done); True if it was failed now."""
        ...


class ParseUploads(Failing, Protocol):
    def claim(self, event: ObjectCreated, confirmed: bool) -> Claim:
        """``confirmed``: the store showed the event's object (a HEAD) just before. An event at the
        key of a deleted upload changes nothing but asks for its purge again (``ClaimAction.DELETED``)."""

    def parsing(self, upload_id: uuid.UUID, generation: int) -> bool:
        """Whether the generation is still being parsed (not deleted, failed or replaced meanwhile):
        a parse asks between batches and stops when it is not."""
        ...

    def find(self, bucket: str, key: str) -> Upload | None: ...

    def generation_lock(self, upload_id: uuid.UUID, stage: str) -> AbstractContextManager[bool]:
        """One worker per upload and stage: yields False when another holds it."""
        ...

    def start_parsing(self, upload_id: uuid.UUID, generation: int) -> bool: ...

    def save_shard_plan(
        self, upload_id: uuid.UUID, generation: int, shards: list[Shard], source_md5: str, source_sha256: str
    ) -> list[Shard] | None:
        """Record the shards once; returns the plan in force (an earlier parser's, if it saved one),
        or None if the generation is no longer parsing."""
        ...

    def shard_plan(self, upload_id: uuid.UUID, generation: int) -> list[Shard]:
        """The generation's shards in order; empty if it was not split."""
        ...

    def shard_to_parse(self, upload_id: uuid.UUID, generation: int, number: int) -> ShardToParse | None:
        """The upload, the shard and the plan's shard count, if its generation is still parsing
        (without reading the plan: a generation may have many shards, each asks once)."""
        ...

    def owner_usage(self, owner: str) -> OwnerUsage | None:
        """The owner's uploads as the quotas count them; None for an owner with an admin key."""
        ...

    def draw_inflation(self, upload_id: uuid.UUID, generation: int, upto: int, quota: int) -> bool:
        """Let the generation inflate up to ``upto`` bytes of gzip content if its owner's uploads
        together stay within ``quota``; False: no room, nothing drawn."""
        ...

    def settle_inflation(self, upload_id: uuid.UUID, generation: int, inflated: int) -> None:
        """The parse ended having inflated ``inflated`` bytes: what it drew beyond that goes back."""
        ...

    def finish_validation(self, upload_id: uuid.UUID, generation: int, validation: Validation) -> bool:
        """A validated generation (``Mode.VALIDATE``, still parsing) is done with its report; False if
        it was replaced or ended meanwhile."""
        ...


class PersistUploads(Failing, Protocol):
    def store_batch(self, batch: SequenceBatch) -> PersistOutcome: ...

    def record_parse_completed(self, done: ParseCompleted) -> PersistOutcome: ...

    def reset(self) -> None:
        """Drop the sessions after a failure: the retry starts clean."""
        ...


class AssemblyUploads(Failing, Protocol):
    def assembling(self, upload_id: uuid.UUID, generation: int) -> Upload | None:
        """The generation, if the assembler may work on it now (its parse may still be going on)."""
        ...

    def generation_lock(self, upload_id: uuid.UUID, stage: str) -> AbstractContextManager[bool]: ...

    def start_assembly(self, upload_id: uuid.UUID, generation: int) -> None: ...

    def shard_plan(self, upload_id: uuid.UUID, generation: int) -> list[Shard]:
        """The generation's shards in order; empty if it is parsed whole. Saved before any of its
        batches, so it is complete whenever a batch is committed."""
        ...

    def committed_batches(
        self, upload_id: uuid.UUID, generation: int, from_shard: int, from_batch: int
    ) -> tuple[Upload | None, list[CommittedBatch]]:
        """The upload now (None: no longer to be assembled) and its committed batches from
        ``(from_shard, from_batch)`` on, in order; read in that order, so that when the upload says
        every batch is committed, the list holds them all."""
        ...

    def result_pieces(
        self, upload_id: uuid.UUID, first: int, end: int, *, one_batch: bool
    ) -> Generator[ResultPiece, None, None]:
        """The records with ordinals in ``[first, end)`` and their parts in order, streamed
        (``close`` ends the stream early). ``one_batch``: the records are those of one batch,
        bounded by its bytes, and may be read at once; otherwise they are streamed one by one."""
        ...

    def name_counts(self, upload_id: uuid.UUID) -> NameCounts:
        """Safe to call from another thread while ``result_pieces`` streams."""
        ...

    def sorted_arrays(self, upload_id: uuid.UUID) -> SortedArrays:
        """The sequence collection's sorted arrays, digested (shared/domain/seqcol.py): needs every record
        stored; safe beside ``result_pieces`` too."""
        ...

    def record_assembly_progress(self, upload_id: uuid.UUID, generation: int, records: int) -> None: ...

    def finish_assembly(
        self,
        upload_id: uuid.UUID,
        generation: int,
        result: ResultLocation,
        counts: NameCounts,
        collection: Collection,
    ) -> bool:
        """Done, in one commit; False if the generation may no longer finish. For a deleted upload,
        its purge is asked for again in the same commit: the document just written is removed."""
        ...

    def reopen_purge(self, upload_id: uuid.UUID) -> bool:
        """Ask again for the purge of a deleted upload (a result was written after it); False if
        the upload is not deleted."""
        ...

    def reset(self) -> None: ...


class MultipartAborter(Protocol):
    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> bool:
        """Abort a multipart upload (its parts are deleted); False if the store no longer has it."""
        ...


class SweepUploads(Protocol):
    def pick_up_stalled(self, after: timedelta, reissue: Callable[[Upload], None]) -> list[Upload]: ...

    def remove_validated_objects(self, remove: Callable[[Upload], None]) -> list[Upload]:
        """Run ``remove`` for each ended validation whose object is still in the store, and record
        that it is gone; an upload whose ``remove`` raised is left for the next sweep."""
        ...

    def expire_tickets(self, grace: timedelta) -> list[Upload]: ...

    def revoke_tickets(self) -> list[Upload]:
        """End the registered uploads still waiting for their object whose owner's keys are revoked."""
        ...

    def purges_owed(self, limit: int = 100) -> list[Upload]:
        """Deleted uploads whose store part is to be done (again), the oldest request first."""
        ...

    def mark_purged(self, upload_id: uuid.UUID, requested_at: datetime) -> bool:
        """The purge asked for at ``requested_at`` is done; False (nothing changes) if another was
        asked for since: the next sweep does that one."""
        ...


class ReconcileUploads(Protocol):
    """What the reconciler reads of the uploads (``services/watchdog/reconcile.py``); it writes nothing:
    the parser's claim does, from the event the reconciler publishes."""

    def awaiting_objects(self, bucket: str, after: uuid.UUID | None, limit: int) -> list[Upload]:
        """At most ``limit`` registered uploads in ``bucket`` still awaiting their object (state
        ``awaiting_upload``, no etag), by id, all after ``after``: one page of a rotation."""
        ...

    def known_objects(self, bucket: str, keys: Sequence[str]) -> dict[str, Upload]:
        """The uploads of those keys in ``bucket`` that exist, by key (one query for a listing page)."""
        ...


class IntakeUploads(Protocol):
    """What the intake's use cases read and write of the uploads (``shared/usecases/uploads.py``)."""

    def owner_usage(self, owner: str) -> OwnerUsage | None:
        """The owner's uploads as the quotas count them; None for an owner with an admin key."""
        ...

    def register(self, registration: Registration, quotas: Quotas | None = None) -> Upload:
        """Write the registration (state ``awaiting_upload``). With ``quotas``, only if the owner's
        quotas leave room for it, decided under the owner's lock: ``QuotaExceeded`` if not, and
        nothing is written. With an idempotency key the owner already registered: that upload
        (another id than the registration's), quotas unasked, or ``IdempotencyKeyReused`` if its
        request differs; race-safe (one upload for two concurrent requests)."""
        ...

    def registered_with(self, owner: str, idempotency_key: str, request_hash: str) -> Upload | None:
        """The owner's upload registered under the key; ``IdempotencyKeyReused`` if from another request."""
        ...

    def list_uploads(self, query: UploadFilter, after: Cursor | None, limit: int) -> list[Upload]:
        """At most ``limit`` uploads matching ``query``, newest first by ``(created_at, id)``, all
        strictly before ``after``; each page in time independent of where it starts."""
        ...

    def merge_labels(self, upload_id: uuid.UUID, patch: Mapping[str, str | None] | None) -> Upload | None:
        """The upload with its labels merge-patched (``shared/domain/listing.py:merge_labels``,
        ``InvalidLabels`` beyond the bounds and nothing written); None if there is no such upload."""
        ...

    def get(self, upload_id: uuid.UUID) -> Upload | None: ...

    def find(self, bucket: str, key: str) -> Upload | None: ...

    def retry(self, upload_id: uuid.UUID, etag: str, quotas: Quotas | None = None) -> Upload | None:
        """A failed upload whose object has ``etag`` started again as a new generation (``RETRY``),
        in state ``queued``; None if it is no longer failed with that etag. With ``quotas``, only if
        the owner has room for one more upload in flight (``QuotaExceeded`` if not)."""
        ...

    def collection_digest(self, upload_id: uuid.UUID, generation: int) -> str | None:
        """The generation's sequence collection digest, once its assembly stored the collection."""
        ...

    def delete(self, upload_id: uuid.UUID) -> Upload | None:
        """Make the upload a tombstone (state ``deleted``) and remove its rows -- records, parts,
        batches, shards, collection -- in one commit, under its row lock, and ask for its purge;
        a deleted upload is returned as it is. None: no such upload."""
        ...


# --- the object store ---------------------------------------------------------------------------


class UploadTickets(MultipartAborter, Protocol):
    """What the intake asks of the object store: signed URLs for a client's writes and reads.

    Nothing passes through the intake: the client sends its bytes to the store itself."""

    def presign_put(self, bucket: str, key: str, ttl: int, size: int) -> str:
        """A PUT URL for exactly ``size`` bytes (size and content type are signed)."""
        ...

    def start_multipart(self, bucket: str, key: str) -> str:
        """A new multipart upload of ``key``; returns the store's id of it."""
        ...

    def presign_part(self, bucket: str, key: str, upload_id: str, number: int, md5: str, size: int, ttl: int) -> str:
        """A PUT URL for one part, its MD5 (base64) and its length signed."""
        ...

    def presign_multipart(self, operation: str, bucket: str, key: str, upload_id: str, ttl: int) -> str:
        """A URL to ``complete_multipart_upload``, ``abort_multipart_upload`` or ``list_parts``."""
        ...

    def parts(self, bucket: str, key: str, upload_id: str) -> list[tuple[int, str, int]]:
        """(number, etag, size) of every part the store has of the multipart upload."""
        ...

    def presign_get(self, bucket: str, key: str, ttl: int) -> str:
        """A GET URL for a result document."""
        ...

    def listed(self, bucket: str, key: str) -> ObjectStat | None:
        """The object as a listing shows it (etag and size; no unsigned attributes), or None if the
        store has no such object. The intake's S3 user reads no object, so it looks by listing."""
        ...


class ObjectLister(Protocol):
    """The reconciler's side of the object store: listings only (``s3:ListBucket``), never a read
    of an object's content."""

    def list_page(self, bucket: str, start_after: str, limit: int) -> tuple[list[ListedObject], bool]:
        """At most ``limit`` objects whose keys sort after ``start_after``, in key order, and whether
        more follow (one ListObjectsV2 request)."""
        ...

    def listed_object(self, bucket: str, key: str) -> ListedObject | None:
        """The object at exactly ``key`` as a listing shows it, or None (one request)."""
        ...


class ObjectChanged(Exception):
    """The object was overwritten (or deleted) while being read: this generation is obsolete."""


@dataclass(frozen=True)
class ObjectStat:
    """What the store shows of an object now: its etag (unquoted) and size.

    ``unsigned_attributes``: what the object carries that no ticket signs (user metadata, tags, a
    Content-Type other than the ticket's, caching or encoding headers), by header name. A client
    may add those headers to a presigned PUT and the store keeps them; the parser refuses such an
    object of a registered upload (``shared/s3/store.py`` says which headers count).
    """

    etag: str
    size: int
    unsigned_attributes: tuple[str, ...] = ()


class ObjectReader(Protocol):
    def stat(self, bucket: str, key: str) -> ObjectStat | None:
        """The object as the store shows it now, or None when there is no such object."""
        ...

    def iter_ranges(
        self, bucket: str, key: str, size: int, etag: str, range_bytes: int, start: int = 0
    ) -> Iterator[bytes]:
        """Bytes ``[start, size)`` of the object in order, every range pinned to ``etag``
        (``ObjectChanged`` if it was replaced)."""
        ...

    def exists(self, bucket: str, key: str) -> bool: ...


class ResultUpload(Protocol):
    size: int

    def write(self, data: bytes) -> None: ...


class ObjectRemover(MultipartAborter, Protocol):
    """The watchdog's side of the object store: the purge of a deleted upload, a validated upload's
    object, an ended ticket's multipart upload (the watchdog's S3 user alone may delete:
    ``shared/s3/users.py``)."""

    def remove(self, bucket: str, keys: Sequence[str]) -> None:
        """Delete the objects; one already gone is no error."""
        ...

    def abort_stale_multipart(self, bucket: str, key: str) -> int:
        """Abort every unfinished multipart upload of exactly ``key``; returns how many."""
        ...


class ResultWriter(Protocol):
    def abort_stale_multipart(self, bucket: str, key: str) -> int: ...

    def multipart_writer(
        self, bucket: str, key: str, part_bytes: int, content_type: str
    ) -> AbstractContextManager[ResultUpload]: ...


# --- the broker -----------------------------------------------------------------------------------


class Publisher(Protocol):
    def publish(self, message: Message) -> None:
        """Persistent, confirmed by the broker before it returns (or before ``flush`` returns)."""
        ...


class PipelinedPublisher(Publisher, Protocol):
    def flush(self) -> None:
        """Return once every published message is confirmed; raise the first failure."""
        ...


class NotificationPublisher(Protocol):
    def publish_event(self, body: bytes) -> None:
        """A bucket notification body onto the events exchange, as the object store would send it
        (persistent, confirmed by the broker before it returns)."""
        ...


class EventPublisher(Publisher, NotificationPublisher, Protocol):
    """The watchdog's: notifications and assembly requests."""
