"""Assembler: stream a generation out of Postgres into one JSON document in S3, while it is parsed.

The persister asks for the assembly as soon as a generation's first batch is committed. The
assembler then follows the committed prefix of batches (batch 0, 1, ... with no gap): the records
they complete are written at once, window after window, while the parse and the persister go on;
once every batch is committed (state ``assembling``) it writes the last window and the trailer, so
the result is complete moments after the last commit instead of a whole read-back later.

The document is written by multipart upload while the rows stream in, so neither side ever holds
it. A crashed writer's unfinished multipart upload is aborted before a new attempt; a generation
that fails or is replaced while it is followed is abandoned, its multipart upload aborted.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from services.assembler.document import ResultDocument
from shared.domain.messages import AssembleRequested
from shared.domain.ports import AssemblyUploads, ResultWriter
from shared.domain.record_schema import ResultPiece
from shared.domain.seqcol import Collection, CollectionDigester, SortedArrays
from shared.domain.stages import GiveUp
from shared.domain.uploads import Failure, NameCounts, PipelineErrorCode, ResultLocation, State, Upload, result_key
from shared.runtime import metrics
from shared.runtime.failpoints import failpoint
from shared.runtime.logs import bind_upload, carry_context
from shared.runtime.settings import Settings

log = structlog.get_logger()
PROGRESS_EVERY_SECONDS = 1.0
DIGEST_EVERY = 4096  # records handed to the collection digester at a time


@dataclass
class AssemblerDeps:
    settings: Settings
    uploads: AssemblyUploads
    store: ResultWriter
    sleep: Callable[[float], None] = time.sleep


class Abandoned(Exception):
    """The followed generation failed or was replaced: there is no result to write."""


def handle_assemble(request: AssembleRequested, deps: AssemblerDeps) -> None:
    bind_upload(request.upload_id, request.generation)
    try:
        if deps.uploads.assembling(request.upload_id, request.generation) is None:
            # Deleted? Then a document this request's earlier delivery may have completed before it
            # died (after the purge, before its finish) is removed by another purge.
            if deps.uploads.reopen_purge(request.upload_id):
                log.info("nothing to assemble: the upload was deleted; its purge asked for again")
                return
            log.info("nothing to assemble (already done, failed or replaced)")
            return
        with deps.uploads.generation_lock(request.upload_id, "assemble") as locked:
            if not locked:
                log.info("generation already being assembled elsewhere")
                return
            # Looked at again under the lock: an assembler that held it may have just finished.
            upload = deps.uploads.assembling(request.upload_id, request.generation)
            if upload is None:
                log.info("nothing to assemble (already done, failed or replaced)")
                return
            assemble_upload(upload, deps)
    except BaseException:
        # A session may be left inside a half-read COPY; closing also ends the generation lock.
        deps.uploads.reset()
        raise


def provenance(upload: Upload) -> dict[str, Any]:
    """The document's head: what is known of the upload before its parse ends."""
    return {
        "upload_id": str(upload.id),
        "generation": upload.generation,
        "filename": upload.filename,
        # as they were when the assembly started: a later change shows in the status, not here
        "labels": dict(upload.labels),
    }


def closing_fields(upload: Upload) -> dict[str, Any]:
    """Known once every batch is committed: written after the records."""
    return {
        "source": {
            "bucket": upload.bucket,
            "key": upload.key,
            "etag": upload.etag,
            "md5": upload.source_md5,
            "sha256": upload.source_sha256,
        },
        "format": upload.format,
        "record_count": upload.records_total,
    }


def assemble_upload(upload: Upload, deps: AssemblerDeps) -> None:
    bucket, key = deps.settings.results_bucket, result_key(upload)
    aborted = deps.store.abort_stale_multipart(bucket, key)
    if aborted:
        log.info("aborted unfinished multipart uploads of an earlier attempt", count=aborted)
    deps.uploads.start_assembly(upload.id, upload.generation)
    started = time.monotonic()
    follower = CommittedRecords(upload, deps)
    document = ResultDocument(provenance(upload), escape_residues=upload.alphabet == "any")
    try:
        size, sha256 = _write(upload, document, bucket, key, follower, deps)
    except Abandoned as why:
        log.info("generation no longer to be assembled; its result abandoned", why=str(why))
        return
    final = follower.final
    assert final is not None
    if document.records_written != final.records_total:
        raise RuntimeError(f"wrote {document.records_written} records, expected {final.records_total}")
    result = ResultLocation(bucket, key, size, document.records_written, sha256)
    metrics.BYTES.labels("assemble").inc(size)
    metrics.RECORDS.labels("assemble").inc(document.records_written)
    if not deps.uploads.finish_assembly(upload.id, upload.generation, result, follower.counts(), follower.collection()):
        # Deleted meanwhile (the finish asked for its purge again, which removes this document),
        # or failed or replaced.
        log.info("result written but the generation may no longer finish", key=key)
        return
    log.info(
        "result written",
        key=key,
        bytes=size,
        records=document.records_written,
        seconds=round(time.monotonic() - started, 2),
        waited_for_batches_seconds=round(follower.waited, 2),
    )


class CommittedRecords:
    """The generation's records in order, as their batches are committed.

    Walks the committed batches from 0 without a gap (shard by shard, for a generation parsed in
    shards: ``shard_plan`` says where each one's records end): each one's ``records_through`` moves the
    high-water mark, and the records below it (all their parts committed before them) are read as
    one window. Waits ``assembly_poll_seconds`` when nothing new is committed. Ends when the upload
    is ``assembling`` (every batch committed) and the last window is read; raises ``Abandoned`` as
    soon as the generation may no longer be assembled (failed, replaced, finished elsewhere).

    Every record read also feeds the collection digester; at the end, the sorted arrays and the
    name counts are read beside the last window (``counts()``, ``collection()``).
    """

    def __init__(self, upload: Upload, deps: AssemblerDeps) -> None:
        self._upload = upload
        self._deps = deps
        self._digester = CollectionDigester()
        self._counts: Future[NameCounts] | None = None
        self._sorted: Future[SortedArrays] | None = None
        self._collection: Collection | None = None
        self.final: Upload | None = None  # the upload once every batch is committed
        self.waited = 0.0  # seconds spent waiting for batches to be committed

    def __iter__(self) -> Iterator[ResultPiece]:
        deps, upload = self._deps, self._upload
        # A generation parsed in shards numbers its batches within each shard: a shard's batches
        # are all committed once its last record is (the record before the next shard's first).
        shard_ends = [s.first_ordinal for s in deps.uploads.shard_plan(upload.id, upload.generation)[1:]]
        shard, next_batch, walked, done, through = 0, 0, 0, 0, 0
        while True:
            now, batches = deps.uploads.committed_batches(upload.id, upload.generation, shard, next_batch)
            if now is None:
                raise Abandoned("the generation failed, was replaced or finished elsewhere")
            # Where each batch walked now ends its records, and whether its window may be read at
            # once (it holds that batch's records and no others: ``CommittedBatch.holds_window``).
            ends: list[tuple[int, bool]] = []
            for batch in batches:
                if batch.shard > shard and shard < len(shard_ends) and through == shard_ends[shard]:
                    shard, next_batch = shard + 1, 0
                if (batch.shard, batch.batch_no) != (shard, next_batch):
                    break  # a gap: a later batch committed before an earlier one
                next_batch += 1
                walked += 1
                if batch.records_through is not None:
                    ends.append((batch.records_through, batch.holds_window(through)))
                    through = batch.records_through
            complete = now.state is State.ASSEMBLING
            if complete:
                self._finish_aside(now)
                # Every batch is committed: every record is there (batches stored before this
                # version recorded no ``records_through``).
                through = max(through, now.records_total or 0)
            if through > done:
                # One window per batch: one that holds a single batch's records is bounded by its
                # bytes, so it is read at once; any other (records stored before this version, a
                # batch whose numbers do not continue the one before) is streamed.
                for end, one_batch in [*ends, (through, False)]:
                    if end > done:
                        yield from self._window(done, end, one_batch=one_batch)
                        done = end
                continue  # look again at once: more may have been committed meanwhile
            if complete:
                if now.batches_total is not None and walked != now.batches_total:
                    raise RuntimeError(f"{walked} batches in order, {now.batches_total} committed")
                self.final = now
                return
            started = time.monotonic()
            deps.sleep(deps.settings.assembly_poll_seconds)
            self.waited += time.monotonic() - started

    def _window(self, first: int, end: int, one_batch: bool) -> Iterator[ResultPiece]:
        # The digester takes the records' names, lengths and digests DIGEST_EVERY at a time.
        names: list[str] = []
        lengths: list[int] = []
        digests: list[str] = []
        add = self._digester.add_many
        rows = self._deps.uploads.result_pieces(self._upload.id, first, end, one_batch=one_batch)
        try:
            for piece in rows:
                if piece.part_no == 0:
                    record = piece.record
                    names.append(record.seq_id)
                    lengths.append(record.length)
                    digests.append(record.refget)
                    if len(names) >= DIGEST_EVERY:
                        add(names, lengths, digests)
                        names, lengths, digests = [], [], []
                yield piece
        finally:
            rows.close()
        add(names, lengths, digests)

    def _finish_aside(self, upload: Upload) -> None:
        """Counting duplicate names and sorting the collection's two sorted arrays need every
        record: started (each on its own session) as soon as every batch is committed, beside the
        last window; the document's trailer waits for both."""
        if self._counts is not None:
            return
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aside")
        self._counts = pool.submit(carry_context(self._deps.uploads.name_counts), upload.id)
        self._sorted = pool.submit(carry_context(self._deps.uploads.sorted_arrays), upload.id)
        pool.shutdown(wait=False)

    def counts(self) -> NameCounts:
        """Once the records are read: duplicate names and empty sequences."""
        assert self._counts is not None, "the generation's end was not reached"
        return self._counts.result()

    def collection(self) -> Collection:
        """Once the records are read (every one added to the digester): the sequence collection."""
        assert self._sorted is not None, "the generation's end was not reached"
        if self._collection is None:
            self._collection = self._digester.complete(self._sorted.result())
        return self._collection


def _write(
    upload: Upload,
    document: ResultDocument,
    bucket: str,
    key: str,
    records: CommittedRecords,
    deps: AssemblerDeps,
) -> tuple[int, str]:
    """Stream the records through the document into a multipart upload; returns the document's size
    and SHA-256 (hex), hashed piece by piece as it is written: no second read of the document."""

    def trailer() -> dict[str, Any]:
        assert records.final is not None
        found = records.counts()
        return {
            **closing_fields(records.final),
            "duplicate_names": found.duplicate_names,
            "empty_sequences": found.empty_sequences,
            "collection_digest": records.collection().digest,
        }

    progress = _Progress(
        lambda: deps.uploads.record_assembly_progress(upload.id, upload.generation, document.records_written)
    )
    digest = hashlib.sha256()
    with deps.store.multipart_writer(bucket, key, deps.settings.result_part_bytes, "application/json") as out:
        for piece in document.pieces(records, trailer):
            digest.update(piece)
            out.write(piece)
            if progress.due(document.records_written):
                failpoint("assembler.mid_upload")  # parts uploaded, the multipart upload open
    return out.size, digest.hexdigest()


class _Progress:
    """Records progress at most once per ``PROGRESS_EVERY_SECONDS``, and only when records were
    written since: while the assembler waits for the parse, the upload's stall clock is the parse's."""

    def __init__(self, record: Callable[[], None]) -> None:
        self._record = record
        self._last = time.monotonic()
        self._records = 0

    def due(self, records: int) -> bool:
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_SECONDS or records == self._records:
            return False
        self._record()
        self._last = now
        self._records = records
        return True


def give_up(request: AssembleRequested, why: GiveUp, deps: AssemblerDeps) -> None:
    bind_upload(request.upload_id, request.generation)
    deps.uploads.fail(
        request.upload_id,
        request.generation,
        Failure(PipelineErrorCode.ASSEMBLE_FAILED, why.reason, error_id=why.error_id),
    )
