"""In-memory stand-ins for the ports in ``shared/domain/ports.py``, for the handlers' and the routes' unit tests.

``FakeUploads`` keeps the domain's rules (``decide_claim`` and the transitions of
``shared/domain/uploads.py``) the way the Postgres adapter does, without SQL; the contract suite
(``tests/contract/``) runs the same checks on it and on the adapter against the real server, so
that the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.listing import Cursor, IdempotencyKeyReused, UploadFilter, merge_labels
from shared.domain.messages import Message, ParseCompleted, SequenceBatch
from shared.domain.ports import ObjectChanged, ObjectStat
from shared.domain.reconcile import ListedObject
from shared.domain.record_schema import Part, Record, ResultPiece
from shared.domain.seqcol import Collection, CollectionDigester, SortedArrays, pair_digest, sorted_arrays
from shared.domain.uploads import (
    ASSEMBLE,
    DELETE,
    EXPIRE,
    FAIL,
    FINISH,
    FINISH_PARSING,
    FINISH_VALIDATION,
    GENERATION_RESET,
    LIVE,
    NEW_GENERATION,
    PARSE_SHARD,
    PICK_UP_STALLED,
    PLAN_SHARDS,
    RATE_WINDOW,
    RECORD_ASSEMBLY_PROGRESS,
    REFUSE_OBJECT,
    REQUEUE,
    RETRY,
    RETRY_LOST_BATCH,
    REVOKE_TICKET,
    START_ASSEMBLY,
    START_PARSING,
    STORE_BATCH,
    Claim,
    ClaimDecision,
    CommittedBatch,
    Failure,
    NameCounts,
    ObjectCreated,
    OwnerUsage,
    PersistOutcome,
    PipelineErrorCode,
    QuotaExceeded,
    Quotas,
    Registration,
    ResultLocation,
    Shard,
    ShardToParse,
    State,
    Upload,
    Validation,
    decide_claim,
    decide_locked_claim,
    filename_of_key,
    needs_object_check,
    new_error_id,
    quota_refusal,
    retry_quota_refusal,
)


def make_upload(**changes: Any) -> Upload:
    now = datetime.now(UTC)
    values: dict[str, Any] = dict(
        id=uuid.UUID(int=1), bucket="b", key="k", filename="f", registered=True, declared_format=None,
        alphabet="nucleotide", state=State.PARSING, generation=1, etag="e", created_at=now, updated_at=now,
        bytes_total=1000, bytes_done=500,
    )  # fmt: skip
    values.update(changes)
    return Upload(**values)


class FakeUploads:
    """The upload store in a dict: one upload per key, its records, parts and committed batch numbers."""

    def __init__(self) -> None:
        self.uploads: dict[uuid.UUID, Upload] = {}
        self.records: dict[uuid.UUID, list[Record]] = {}
        self.parts: dict[uuid.UUID, list[Part]] = {}
        self.batches: dict[uuid.UUID, set[tuple[int, int, int]]] = {}  # (generation, shard, batch_no)
        # Each committed batch's (records_from, records_through), by (upload, generation, shard, batch_no).
        self.batch_records: dict[tuple[uuid.UUID, int, int, int], tuple[int | None, int | None]] = {}
        self.shards: dict[tuple[uuid.UUID, int], list[Shard]] = {}
        self.shards_parsed: dict[tuple[uuid.UUID, int, int], int] = {}  # batch count of each parsed shard
        self.locked: set[tuple[uuid.UUID, str]] = set()
        self.resets = 0
        self.windows: list[tuple[int, int]] = []  # the assembler's reads, [first, end) of ordinals
        self.streamed_windows = 0  # of them, those that no one batch's numbers bound
        self.fail_on_store: BaseException | None = None
        self.fail_on_register: BaseException | None = None  # the database away while registering
        self.collections: dict[tuple[uuid.UUID, int], Collection] = {}  # by (upload, generation)
        self.before_claim: Callable[[], None] | None = None  # runs between the look and the lock
        self.owners: set[str] = set()  # key names: an object under "<name>/" is that owner's
        self.revoked_owners: set[str] = set()  # of them, those whose keys are all revoked
        self.admins: set[str] = set()  # owners with an admin key (not held to the quotas)
        # (owner, idempotency key) -> (upload id, request fingerprint)
        self.idempotency: dict[tuple[str, str], tuple[uuid.UUID, str]] = {}

    # --- helpers for tests
    def add(self, upload: Upload) -> Upload:
        self.uploads[upload.id] = upload
        return upload

    def _set(self, upload: Upload, **changes: Any) -> Upload:
        updated = dataclasses.replace(upload, updated_at=datetime.now(UTC), **changes)
        self.uploads[upload.id] = updated
        return updated

    def _drop_rows(self, upload_id: uuid.UUID) -> None:
        self.records.pop(upload_id, None)
        self.parts.pop(upload_id, None)
        self.batches.pop(upload_id, None)
        for key in [k for k in self.shards if k[0] == upload_id]:
            del self.shards[key]
        for parsed in [k for k in self.shards_parsed if k[0] == upload_id]:
            del self.shards_parsed[parsed]
        for committed in [k for k in self.batch_records if k[0] == upload_id]:
            del self.batch_records[committed]
        for collection in [k for k in self.collections if k[0] == upload_id]:
            del self.collections[collection]

    def _live(self, upload_id: uuid.UUID, generation: int) -> Upload | None:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.generation != generation or not STORE_BATCH.allows(upload.state):
            return None
        return upload

    # --- ParseUploads
    def claim(self, event: ObjectCreated, confirmed: bool) -> Claim:
        current = self.find(event.bucket, event.key)
        if self.before_claim is not None:
            self.before_claim()
            current = self.find(event.bucket, event.key)
        first, slash, _ = event.key.partition("/")
        owner = current.owner if current is not None else (first if slash and first in self.owners else None)
        revoked = needs_object_check(decide_claim(current, event)) and owner in self.revoked_owners
        decision = decide_locked_claim(current, event, confirmed, owner_revoked=revoked)
        if decision is ClaimDecision.DELETED:
            assert current is not None
            self.reopen_purge(current.id)
            return Claim(decision.action, current)
        if decision is ClaimDecision.UNCONFIRMED:
            assert current is not None
            return Claim(decision.action, current)
        event_fields = dict(etag=event.etag, sequencer=event.sequencer, event_time=event.event_time)
        refused = decision is ClaimDecision.REFUSE_OBJECT
        refusal: dict[str, Any] = dict(
            error_code=PipelineErrorCode.OWNER_REVOKED.value, error_message="revoked", error_id=new_error_id(),
            finished_at=datetime.now(UTC),
        ) if refused else {}  # fmt: skip
        if current is None and decision in (ClaimDecision.CREATE, ClaimDecision.REFUSE_OBJECT):
            now = datetime.now(UTC)
            target = (REFUSE_OBJECT if refused else NEW_GENERATION).target
            created = make_upload(
                id=uuid.uuid4(), bucket=event.bucket, key=event.key, filename=filename_of_key(event.key),
                registered=False, state=target, generation=1, created_at=now, updated_at=now,
                bytes_total=event.size, bytes_done=0, owner=owner,
                **event_fields, **refusal,
            )  # fmt: skip
            return Claim(decision.action, self.add(created))
        assert current is not None
        if decision not in (ClaimDecision.NEW_GENERATION, ClaimDecision.REFUSE_OBJECT):
            return Claim(decision.action, current)
        self._drop_rows(current.id)
        move = REFUSE_OBJECT if refused else NEW_GENERATION
        fresh = self._set(
            current, **{**GENERATION_RESET, **refusal}, state=move.apply(current.state),
            generation=current.generation + 1, bytes_total=event.size, **event_fields,
        )  # fmt: skip
        return Claim(decision.action, fresh)

    def owner_usage(self, owner: str) -> OwnerUsage | None:
        if owner in self.admins:
            return None
        return self._usage(owner)

    def _usage(self, owner: str) -> OwnerUsage:
        now = datetime.now(UTC)
        mine = [u for u in self.uploads.values() if u.owner == owner]
        in_flight = {State.AWAITING_UPLOAD, *LIVE}
        recent = [u.created_at for u in mine if u.registered and u.created_at > now - RATE_WINDOW]
        return OwnerUsage(
            stored_bytes=sum(
                u.bytes_total or 0
                for u in mine
                if (u.state is State.AWAITING_UPLOAD or (u.etag and u.state is not State.DELETED))
                and u.object_removed_at is None
            ),
            in_flight=sum(u.state in in_flight for u in mine),
            open_multipart_uploads=sum(u.state is State.AWAITING_UPLOAD and bool(u.multipart_upload_id) for u in mine),
            registrations=len(recent),
            oldest_registration_age=now - min(recent) if recent else None,
        )

    # --- IntakeUploads
    def register(self, registration: Registration, quotas: Quotas | None = None) -> Upload:
        if self.fail_on_register is not None:
            raise self.fail_on_register
        r = registration
        if r.idempotency_key is not None and r.owner is not None:
            existing = self.registered_with(r.owner, r.idempotency_key, r.request_hash or "")
            if existing is not None:
                return existing
        if quotas is not None and r.owner is not None:
            multipart = r.multipart_upload_id is not None
            stored = 0 if r.mode.value == "validate" else r.size or 0
            refusal = quota_refusal(self._usage(r.owner), quotas, stored, multipart=multipart)
            if refusal is not None:
                raise QuotaExceeded(refusal)
        now = datetime.now(UTC)
        if r.idempotency_key is not None and r.owner is not None:
            self.idempotency[(r.owner, r.idempotency_key)] = (r.upload_id, r.request_hash or "")
        return self.add(
            make_upload(
                id=r.upload_id, bucket=r.bucket, key=r.key, filename=r.filename, registered=True,
                declared_format=r.declared_format, alphabet=r.alphabet, state=State.AWAITING_UPLOAD, generation=0,
                etag=None, created_at=now, updated_at=now, bytes_total=r.size, bytes_done=0, owner=r.owner,
                ticket_expires_at=r.ticket_expires_at, circular=r.circular, multipart_upload_id=r.multipart_upload_id,
                mode=r.mode.value,
                labels=dict(r.labels),
            )
        )  # fmt: skip

    def registered_with(self, owner: str, idempotency_key: str, request_hash: str) -> Upload | None:
        found = self.idempotency.get((owner, idempotency_key))
        if found is None or found[0] not in self.uploads:
            return None
        if found[1] != request_hash:
            raise IdempotencyKeyReused(idempotency_key)
        return self.uploads[found[0]]

    def list_uploads(self, query: UploadFilter, after: Cursor | None, limit: int) -> list[Upload]:
        shown = [
            u for u in self.uploads.values()
            if query.matches(u.owner, u.state, u.filename, u.labels, u.created_at)
            and (after is None or (u.created_at, u.id) < (after.created_at, after.id))
        ]  # fmt: skip
        return sorted(shown, key=lambda u: (u.created_at, u.id), reverse=True)[:limit]

    def merge_labels(self, upload_id: uuid.UUID, patch: Mapping[str, str | None] | None) -> Upload | None:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.state is State.DELETED:
            return upload
        updated = dataclasses.replace(upload, labels=merge_labels(upload.labels, patch))  # updated_at kept
        self.uploads[upload_id] = updated
        return updated

    def get(self, upload_id: uuid.UUID) -> Upload | None:
        return self.uploads.get(upload_id)

    def collection_digest(self, upload_id: uuid.UUID, generation: int) -> str | None:
        collection = self.collections.get((upload_id, generation))
        return collection.digest if collection else None

    def delete(self, upload_id: uuid.UUID) -> Upload | None:
        upload = self.uploads.get(upload_id)
        if upload is None or not DELETE.allows(upload.state):
            return upload
        self._drop_rows(upload_id)
        now = datetime.now(UTC)
        return self._set(
            upload, **GENERATION_RESET, state=DELETE.apply(upload.state), labels={}, deleted_at=now,
            purge_requested_at=now, purged_at=None,
        )  # fmt: skip

    def parsing(self, upload_id: uuid.UUID, generation: int) -> bool:
        upload = self.uploads.get(upload_id)
        return upload is not None and upload.generation == generation and PARSE_SHARD.allows(upload.state)

    def reopen_purge(self, upload_id: uuid.UUID) -> bool:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.state is not State.DELETED:
            return False
        # strictly later than the request it replaces, as the adapter's clock_timestamp()
        later = max(
            datetime.now(UTC),
            (upload.purge_requested_at or datetime.min.replace(tzinfo=UTC)) + timedelta(microseconds=1),
        )
        self.uploads[upload_id] = dataclasses.replace(upload, purge_requested_at=later, purged_at=None)
        return True

    def purges_owed(self, limit: int = 100) -> list[Upload]:
        owed = [u for u in self.uploads.values() if u.state is State.DELETED and u.purged_at is None]
        return sorted(owed, key=lambda u: u.purge_requested_at or u.updated_at)[:limit]

    def mark_purged(self, upload_id: uuid.UUID, requested_at: datetime) -> bool:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.state is not State.DELETED or upload.purged_at is not None:
            return False
        if upload.purge_requested_at != requested_at:
            return False
        self.uploads[upload_id] = dataclasses.replace(upload, purged_at=datetime.now(UTC))
        return True

    def in_flight(self, stall_after: timedelta) -> tuple[dict[str, int], int]:
        now = datetime.now(UTC)
        live = [u for u in self.uploads.values() if u.state in LIVE]
        states: dict[str, int] = {}
        for upload in live:
            states[upload.state.value] = states.get(upload.state.value, 0) + 1
        return states, sum(u.updated_at < now - stall_after for u in live)

    def draw_inflation(self, upload_id: uuid.UUID, generation: int, upto: int, quota: int) -> bool:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.generation != generation or upload.inflated_bytes >= upto:
            return True
        if upload.owner is not None and upload.owner not in self.admins:
            used = sum(u.inflated_bytes for u in self.uploads.values() if u.owner == upload.owner and u.id != upload_id)
            if used + upto > quota:
                return False
        self._set(upload, inflated_bytes=upto)
        return True

    def settle_inflation(self, upload_id: uuid.UUID, generation: int, inflated: int) -> None:
        upload = self.uploads.get(upload_id)
        if upload is not None and upload.generation == generation:
            self._set(upload, inflated_bytes=min(upload.inflated_bytes, inflated))

    def find(self, bucket: str, key: str) -> Upload | None:
        return next((u for u in self.uploads.values() if (u.bucket, u.key) == (bucket, key)), None)

    # --- ReconcileUploads: the reconciler's reads
    def awaiting_objects(self, bucket: str, after: uuid.UUID | None, limit: int) -> list[Upload]:
        waiting = sorted(
            (u for u in self.uploads.values() if u.bucket == bucket and u.registered and u.etag is None
             and u.state is State.AWAITING_UPLOAD and (after is None or u.id > after)),
            key=lambda u: u.id,
        )  # fmt: skip
        return waiting[:limit]

    def known_objects(self, bucket: str, keys: Sequence[str]) -> dict[str, Upload]:
        wanted = set(keys)
        return {u.key: u for u in self.uploads.values() if u.bucket == bucket and u.key in wanted}

    @contextmanager
    def generation_lock(self, upload_id: uuid.UUID, stage: str) -> Iterator[bool]:
        if (upload_id, stage) in self.locked:
            yield False
            return
        self.locked.add((upload_id, stage))
        try:
            yield True
        finally:
            self.locked.discard((upload_id, stage))

    def start_parsing(self, upload_id: uuid.UUID, generation: int) -> bool:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.generation != generation or not START_PARSING.allows(upload.state):
            return False
        self._set(upload, state=START_PARSING.apply(upload.state), parsing_started_at=datetime.now(UTC))
        return True

    def save_shard_plan(
        self, upload_id: uuid.UUID, generation: int, shards: list[Shard], source_md5: str, source_sha256: str
    ) -> list[Shard] | None:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.generation != generation or not PLAN_SHARDS.allows(upload.state):
            return None
        if (upload_id, generation) in self.shards:
            return self.shards[(upload_id, generation)]
        self.shards[(upload_id, generation)] = list(shards)
        self._set(upload, source_md5=source_md5, source_sha256=source_sha256)
        return list(shards)

    def shard_plan(self, upload_id: uuid.UUID, generation: int) -> list[Shard]:
        return list(self.shards.get((upload_id, generation), []))

    def shard_to_parse(self, upload_id: uuid.UUID, generation: int, number: int) -> ShardToParse | None:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.generation != generation or not PARSE_SHARD.allows(upload.state):
            return None
        plan = self.shards.get((upload_id, generation), [])
        found = [s for s in plan if s.number == number]
        return ShardToParse(upload, found[0], len(plan)) if found else None

    def fail(self, upload_id: uuid.UUID, generation: int | None, failure: Failure) -> bool:
        upload = self.uploads.get(upload_id)
        if upload is None or generation not in (None, upload.generation) or not FAIL.allows(upload.state):
            return False
        self._set(
            upload, state=FAIL.apply(upload.state), error_code=failure.code.value, error_message=failure.message,
            error_line=failure.line, error_column=failure.column, error_id=failure.error_id,
            finished_at=datetime.now(UTC),
        )  # fmt: skip
        self._drop_rows(upload_id)
        return True

    def requeue_failed(self, upload_id: uuid.UUID) -> Upload | None:
        upload = self.uploads.get(upload_id)
        if upload is None or not REQUEUE.allows(upload.state) or upload.etag is None:
            return None
        return self._set(
            upload, state=REQUEUE.apply(upload.state), error_code=None, error_message=None, error_line=None,
            error_column=None, error_id=None, finished_at=None,
        )  # fmt: skip

    def retry(self, upload_id: uuid.UUID, etag: str, quotas: Quotas | None = None) -> Upload | None:
        upload = self.uploads.get(upload_id)
        if upload is None or not RETRY.allows(upload.state) or upload.etag != etag:
            return None
        if quotas is not None and upload.owner is not None and upload.owner not in self.admins:
            refusal = retry_quota_refusal(self._usage(upload.owner), quotas)
            if refusal is not None:
                raise QuotaExceeded(refusal)
        self._drop_rows(upload_id)
        return self._set(upload, **GENERATION_RESET, state=RETRY.apply(upload.state), generation=upload.generation + 1)

    def finish_validation(self, upload_id: uuid.UUID, generation: int, validation: Validation) -> bool:
        upload = self.uploads.get(upload_id)
        if (
            upload is None
            or upload.generation != generation
            or not FINISH_VALIDATION.allows(upload.state)
            or not upload.validates
        ):
            return False
        now = datetime.now(UTC)
        self._set(
            upload, state=FINISH_VALIDATION.apply(upload.state), validation=validation.to_json(),
            format=validation.format, records_done=validation.records, records_total=validation.records,
            bytes_done=validation.bytes, source_md5=validation.source_md5, source_sha256=validation.source_sha256,
            parsed_at=now, finished_at=now,
        )  # fmt: skip
        return True

    # --- PersistUploads
    def store_batch(self, batch: SequenceBatch) -> PersistOutcome:
        if self.fail_on_store is not None:
            raise self.fail_on_store
        upload = self._live(batch.upload_id, batch.generation)
        if upload is None:
            return PersistOutcome(False, False)
        done = self.batches.setdefault(upload.id, set())
        if (batch.generation, batch.shard, batch.batch_no) in done:
            return PersistOutcome(False, upload.complete)
        done.add((batch.generation, batch.shard, batch.batch_no))
        self.batch_records[(upload.id, batch.generation, batch.shard, batch.batch_no)] = (
            batch.records_from,
            batch.records_through,
        )
        self.records.setdefault(upload.id, []).extend(batch.records.rows())
        self.parts.setdefault(upload.id, []).extend(batch.parts.rows())
        upload = self._set(
            upload, batches_done=upload.batches_done + 1, records_done=upload.records_done + len(batch.records),
            bytes_done=max(upload.bytes_done, batch.source_offset) if batch.source_bytes is None
            else min(upload.bytes_done + batch.source_bytes, upload.bytes_total or 1 << 62),
        )  # fmt: skip
        first = batch.shard == 0 and batch.batch_no == 0
        return PersistOutcome(True, self._assemble_if_complete(upload), first_batch=first)

    def record_parse_completed(self, done: ParseCompleted) -> PersistOutcome:
        upload = self._live(done.upload_id, done.generation)
        if upload is None:
            return PersistOutcome(False, False)
        state = FINISH_PARSING.apply(upload.state) if FINISH_PARSING.allows(upload.state) else upload.state
        if done.shard_count > 1:
            plan = self.shards.get((done.upload_id, done.generation), [])
            if len(plan) != done.shard_count:
                raise RuntimeError(f"the plan has {len(plan)} shards, the parser counted {done.shard_count}")
            self.shards_parsed[(done.upload_id, done.generation, done.shard)] = done.batch_count
            counts = [self.shards_parsed.get((done.upload_id, done.generation, s.number)) for s in plan]
            if None in counts:
                return PersistOutcome(True, False)
            upload = self._set(
                upload, batches_total=sum(c or 0 for c in counts), records_total=sum(s.records for s in plan),
                bytes_done=upload.bytes_total or 0, format=done.format, parsed_at=datetime.now(UTC), state=state,
            )  # fmt: skip
            return PersistOutcome(True, self._assemble_if_complete(upload))
        upload = self._set(
            upload, batches_total=done.batch_count, records_total=done.record_count, bytes_done=done.source_bytes,
            format=done.format, parsed_at=datetime.now(UTC), state=state,
            source_md5=done.source_md5, source_sha256=done.source_sha256,
        )  # fmt: skip
        return PersistOutcome(True, self._assemble_if_complete(upload))

    def _assemble_if_complete(self, upload: Upload) -> bool:
        if upload.complete:
            self._set(upload, state=START_ASSEMBLY.apply(upload.state), assembly_started_at=datetime.now(UTC))
        return upload.complete

    def reset(self) -> None:
        self.resets += 1
        self.locked.clear()  # closing the sessions ends their advisory locks

    # --- AssemblyUploads
    def assembling(self, upload_id: uuid.UUID, generation: int) -> Upload | None:
        upload = self.uploads.get(upload_id)
        ok = upload is not None and upload.generation == generation and ASSEMBLE.allows(upload.state)
        return upload if ok else None

    def start_assembly(self, upload_id: uuid.UUID, generation: int) -> None:
        upload = self.assembling(upload_id, generation)
        if upload is not None and upload.assembly_started_at is None:
            self._set(upload, assembly_started_at=datetime.now(UTC))

    def committed_batches(
        self, upload_id: uuid.UUID, generation: int, from_shard: int, from_batch: int
    ) -> tuple[Upload | None, list[CommittedBatch]]:
        upload = self.assembling(upload_id, generation)
        if upload is None:
            return None, []
        found = sorted(
            CommittedBatch(shard, no, *records) for (uid, gen, shard, no), records in self.batch_records.items()
            if uid == upload_id and gen == generation and (shard, no) >= (from_shard, from_batch)
        )  # fmt: skip
        return upload, found

    def result_pieces(
        self, upload_id: uuid.UUID, first: int, end: int, *, one_batch: bool
    ) -> Generator[ResultPiece, None, None]:
        self.windows.append((first, end))
        self.streamed_windows += 0 if one_batch else 1
        parts = sorted(self.parts.get(upload_id, []))
        for record in sorted(self.records.get(upload_id, [])):
            if not first <= record.ordinal < end:
                continue
            stored = record._replace(residues=None)
            if record.part_count == 0:
                yield ResultPiece(stored, 0, None if record.residues is None else record.residues.encode())
                continue
            for part in (p for p in parts if p.ordinal == record.ordinal):
                yield ResultPiece(stored, part.part_no, part.residues.encode())

    def name_counts(self, upload_id: uuid.UUID) -> NameCounts:
        records = self.records.get(upload_id, [])
        return NameCounts(len(records) - len({r.seq_id for r in records}), sum(1 for r in records if r.length == 0))

    def record_assembly_progress(self, upload_id: uuid.UUID, generation: int, records: int) -> None:
        upload = self.uploads[upload_id]
        if upload.generation == generation and RECORD_ASSEMBLY_PROGRESS.allows(upload.state):
            self._set(upload, records_assembled=records)

    @staticmethod
    def collection_of(records: list[Record]) -> Collection:
        """The collection of ``records`` digested in one go (what the assembler's must equal)."""
        digester = CollectionDigester()
        for r in sorted(records, key=lambda r: r.ordinal):
            digester.add(r.seq_id, r.length, r.refget)
        return digester.finish(
            sorted(pair_digest(r.seq_id, r.length) for r in records), sorted(r.refget for r in records)
        )

    def sorted_arrays(self, upload_id: uuid.UUID) -> SortedArrays:
        records = self.records.get(upload_id, [])
        return sorted_arrays(
            sorted(pair_digest(r.seq_id, r.length) for r in records), sorted(r.refget for r in records)
        )

    def finish_assembly(
        self,
        upload_id: uuid.UUID,
        generation: int,
        result: ResultLocation,
        counts: NameCounts,
        collection: Collection,
    ) -> bool:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.generation != generation or not FINISH.allows(upload.state):
            self.reopen_purge(upload_id)  # a no-op unless it was deleted
            return False
        self.collections[(upload_id, generation)] = collection
        self._set(
            upload, state=FINISH.apply(upload.state), result_bucket=result.bucket, result_key=result.key,
            result_size=result.size, result_sha256=result.sha256, result_records=result.records,
            records_assembled=result.records,
            duplicate_names=counts.duplicate_names, empty_sequences=counts.empty_sequences,
            finished_at=datetime.now(UTC),
        )  # fmt: skip
        return True

    # --- SweepUploads
    def pick_up_stalled(self, after: timedelta, reissue: Callable[[Upload], None]) -> list[Upload]:
        """All or nothing, as the adapter's one transaction: a failed reissue records no pick-up."""
        now = datetime.now(UTC)
        picked = []
        for upload in sorted(self.uploads.values(), key=lambda u: u.updated_at):
            due = upload.picked_up_at is None or upload.picked_up_at < now - after
            if PICK_UP_STALLED.allows(upload.state) and upload.etag and upload.updated_at < now - after and due:
                reissue(upload)
                state = RETRY_LOST_BATCH.apply(upload.state) if RETRY_LOST_BATCH.allows(upload.state) else upload.state
                picked.append(dataclasses.replace(upload, pickups=upload.pickups + 1, picked_up_at=now, state=state))
        self.uploads.update((upload.id, upload) for upload in picked)
        return picked

    def remove_validated_objects(self, remove: Callable[[Upload], None]) -> list[Upload]:
        """As the adapter: ``remove`` first, the removal recorded only if it returned."""
        removed = []
        for upload in sorted(self.uploads.values(), key=lambda u: u.updated_at):
            ended = upload.state in (State.DONE, State.FAILED)
            if upload.validates and ended and upload.etag and upload.object_removed_at is None:
                remove(upload)
                updated = dataclasses.replace(upload, object_removed_at=datetime.now(UTC))
                self.uploads[upload.id] = updated
                removed.append(updated)
        return removed

    def expire_tickets(self, grace: timedelta) -> list[Upload]:
        now = datetime.now(UTC)
        expired = []
        for upload in list(self.uploads.values()):
            if upload.ticket_expired(now, grace):
                updated = dataclasses.replace(upload, state=EXPIRE.apply(upload.state), updated_at=now)
                self.uploads[upload.id] = updated
                expired.append(updated)
        return expired

    def revoke_tickets(self) -> list[Upload]:
        revoked = []
        for upload in list(self.uploads.values()):
            if REVOKE_TICKET.allows(upload.state) and upload.owner in self.revoked_owners:
                ended = self._set(
                    upload, state=REVOKE_TICKET.apply(upload.state), error_code=PipelineErrorCode.OWNER_REVOKED.value,
                    error_message="revoked", error_id=new_error_id(), finished_at=datetime.now(UTC),
                )  # fmt: skip
                revoked.append(ended)
        return revoked


STORE = "https://store.test"  # where FakeObjects's signed URLs point


class FakeObjects:
    """Objects by bucket and key, each with an etag; ``on_read`` runs before each range is returned.

    Also the intake's side of the store: multipart uploads started and aborted, signed URLs."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.on_read: Callable[[int], None] | None = None
        self.multipart: set[tuple[str, str, str]] = set()  # (bucket, key, upload id) open
        self.aborted: list[str] = []  # the upload ids asked to be aborted, in order
        self._multipart_ids = itertools.count(1)
        self.stored_parts: dict[str, list[tuple[int, str, int]]] = {}  # (number, etag, size) by upload id
        self.unsigned: dict[tuple[str, str], tuple[str, ...]] = {}  # attributes no ticket signs
        self.written: dict[tuple[str, str], datetime] = {}  # when each object was put (a listing's LastModified)
        self.list_requests = 0

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> bool:
        self.aborted.append(upload_id)
        if (bucket, key, upload_id) not in self.multipart:
            return False
        self.multipart.remove((bucket, key, upload_id))
        return True

    # --- UploadTickets: signed URLs that say what they sign (a test reads them back)
    def presign_put(self, bucket: str, key: str, ttl: int, size: int) -> str:
        return f"{STORE}/{bucket}/{key}?put&size={size}&ttl={ttl}"

    def start_multipart(self, bucket: str, key: str) -> str:
        upload_id = f"m-{next(self._multipart_ids)}"
        self.multipart.add((bucket, key, upload_id))
        return upload_id

    def presign_part(self, bucket: str, key: str, upload_id: str, number: int, md5: str, size: int, ttl: int) -> str:
        return f"{STORE}/{bucket}/{key}?uploadId={upload_id}&partNumber={number}&md5={md5}&size={size}&ttl={ttl}"

    def presign_multipart(self, operation: str, bucket: str, key: str, upload_id: str, ttl: int) -> str:
        return f"{STORE}/{bucket}/{key}?{operation}&uploadId={upload_id}&ttl={ttl}"

    def parts(self, bucket: str, key: str, upload_id: str) -> list[tuple[int, str, int]]:
        return list(self.stored_parts.get(upload_id, []))

    def presign_get(self, bucket: str, key: str, ttl: int) -> str:
        return f"{STORE}/{bucket}/{key}?get&ttl={ttl}"

    def put(
        self, bucket: str, key: str, data: bytes, etag: str, unsigned_attributes: tuple[str, ...] = ()
    ) -> ObjectCreated:
        self.objects[(bucket, key)] = (data, etag)
        self.unsigned[(bucket, key)] = unsigned_attributes
        self.written[(bucket, key)] = datetime.now(UTC)
        return ObjectCreated(bucket=bucket, key=key, size=len(data), etag=etag, event_time=datetime.now(UTC))

    def stat(self, bucket: str, key: str) -> ObjectStat | None:
        found = self.objects.get((bucket, key))
        if found is None:
            return None
        return ObjectStat(found[1], len(found[0]), self.unsigned.get((bucket, key), ()))

    def exists(self, bucket: str, key: str) -> bool:
        return (bucket, key) in self.objects

    def listed(self, bucket: str, key: str) -> ObjectStat | None:
        found = self.objects.get((bucket, key))
        return None if found is None else ObjectStat(found[1], len(found[0]))

    # --- ObjectLister: the reconciler's listings (``written`` holds each object's write time)
    def _listed_object(self, bucket: str, key: str) -> ListedObject:
        data, etag = self.objects[(bucket, key)]
        return ListedObject(key, etag, len(data), self.written.get((bucket, key), datetime.now(UTC)))

    def list_page(self, bucket: str, start_after: str, limit: int) -> tuple[list[ListedObject], bool]:
        self.list_requests += 1
        keys = sorted(k for b, k in self.objects if b == bucket and k > start_after)
        return [self._listed_object(bucket, k) for k in keys[:limit]], len(keys) > limit

    def listed_object(self, bucket: str, key: str) -> ListedObject | None:
        self.list_requests += 1
        return self._listed_object(bucket, key) if (bucket, key) in self.objects else None

    # --- ObjectRemover: the watchdog's purge
    def remove(self, bucket: str, keys: Sequence[str]) -> None:
        for key in keys:
            self.objects.pop((bucket, key), None)
            self.unsigned.pop((bucket, key), None)

    def abort_stale_multipart(self, bucket: str, key: str) -> int:
        stale = [m for m in self.multipart if m[:2] == (bucket, key)]
        for found in stale:
            self.multipart.remove(found)
            self.aborted.append(found[2])
        return len(stale)

    def iter_ranges(
        self, bucket: str, key: str, size: int, etag: str, range_bytes: int, start: int = 0
    ) -> Iterator[bytes]:
        for number, first in enumerate(range(start, size, range_bytes)):
            if self.on_read is not None:
                self.on_read(number)
            data, current = self.objects.get((bucket, key), (b"", None))
            if current != etag:
                raise ObjectChanged(f"{bucket}/{key} no longer has etag {etag}")
            yield data[first : min(first + range_bytes, size)]


class _Upload:
    def __init__(self, sink: FakeResults, key: tuple[str, str]) -> None:
        self._sink = sink
        self._key = key
        self._pieces: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._sink.fail_after is not None and self.size + len(data) > self._sink.fail_after:
            raise ConnectionError("store went away")
        self._pieces.append(data)
        self.size += len(data)


class FakeResults:
    """Result documents written by 'multipart upload': kept only if the block ends without an error."""

    def __init__(self) -> None:
        self.documents: dict[tuple[str, str], bytes] = {}
        self.open: set[tuple[str, str]] = set()
        self.aborted = 0
        self.fail_after: int | None = None

    def abort_stale_multipart(self, bucket: str, key: str) -> int:
        found = int((bucket, key) in self.open)
        self.open.discard((bucket, key))
        self.aborted += found
        return found

    def multipart_writer(
        self, bucket: str, key: str, part_bytes: int, content_type: str
    ) -> AbstractContextManager[_Upload]:
        if part_bytes < 5 * 1024 * 1024:  # as the real writer, when it is made: S3's smallest part
            raise ValueError("S3 parts must be at least 5 MiB")
        return self._writer(bucket, key)

    @contextmanager
    def _writer(self, bucket: str, key: str) -> Iterator[_Upload]:
        upload = _Upload(self, (bucket, key))
        self.open.add((bucket, key))
        try:
            yield upload
        except BaseException:
            self.open.discard((bucket, key))  # the real writer aborts its multipart upload
            raise
        self.open.discard((bucket, key))
        self.documents[(bucket, key)] = b"".join(upload._pieces)


class FakePublisher:
    """Messages and notifications as published; ``fail_with`` makes the next publish raise."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.events: list[bytes] = []
        self.flushes = 0
        self.fail_with: BaseException | None = None

    def publish(self, message: Message) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.messages.append(message)

    def publish_event(self, body: bytes) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.events.append(body)

    def flush(self) -> None:
        self.flushes += 1
