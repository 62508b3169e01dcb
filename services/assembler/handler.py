"""Assembler: stream a complete generation out of Postgres into one JSON document in S3.

The document is written by multipart upload while the rows stream in, so neither side ever
holds it. A crashed writer's unfinished multipart upload is aborted before a new attempt.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from services.assembler.document import ResultDocument
from shared import metrics
from shared.failpoints import failpoint
from shared.logging import bind_upload, carry_context
from shared.messages import AssembleRequested
from shared.ports import AssemblyUploads, ResultWriter
from shared.seqcol import Collection
from shared.settings import Settings
from shared.stages import GiveUp
from shared.uploads import Failure, NameCounts, PipelineErrorCode, ResultLocation, Upload, result_key

log = structlog.get_logger()
PROGRESS_EVERY_SECONDS = 1.0


@dataclass
class AssemblerDeps:
    settings: Settings
    uploads: AssemblyUploads
    store: ResultWriter


def handle_assemble(request: AssembleRequested, deps: AssemblerDeps) -> None:
    bind_upload(request.upload_id, request.generation)
    try:
        upload = deps.uploads.assembling(request.upload_id, request.generation)
        if upload is None:
            log.info("nothing to assemble (already done, failed or replaced)")
            return
        with deps.uploads.generation_lock(upload.id, "assemble") as locked:
            if not locked:
                log.info("generation already being assembled elsewhere")
                return
            assemble_upload(upload, deps)
    except BaseException:
        # A session may be left inside a half-read COPY; closing also ends the generation lock.
        deps.uploads.reset()
        raise


def provenance(upload: Upload) -> dict[str, Any]:
    """The document's head: which upload, generation and object it was made from."""
    return {
        "upload_id": str(upload.id),
        "generation": upload.generation,
        "source": {
            "bucket": upload.bucket,
            "key": upload.key,
            "etag": upload.etag,
            "md5": upload.source_md5,
            "sha256": upload.source_sha256,
        },
        "filename": upload.filename,
        "format": upload.format,
        "record_count": upload.records_total,
    }


def assemble_upload(upload: Upload, deps: AssemblerDeps) -> None:
    bucket, key = deps.settings.results_bucket, result_key(upload)
    aborted = deps.store.abort_stale_multipart(bucket, key)
    if aborted:
        log.info("aborted unfinished multipart uploads of an earlier attempt", count=aborted)
    document = ResultDocument(provenance(upload), escape_residues=upload.alphabet == "any")
    started = time.monotonic()
    counts, collection = _count_names_aside(upload, deps)
    size = _write(upload, document, bucket, key, counts, collection, deps)
    if document.records_written != upload.records_total:
        raise RuntimeError(f"wrote {document.records_written} records, expected {upload.records_total}")
    result = ResultLocation(bucket, key, size, document.records_written)
    metrics.BYTES.labels("assemble").inc(size)
    metrics.RECORDS.labels("assemble").inc(document.records_written)
    deps.uploads.finish_assembly(upload.id, upload.generation, result, counts.result(), collection.result())
    log.info(
        "result written",
        key=key,
        bytes=size,
        records=document.records_written,
        seconds=round(time.monotonic() - started, 2),
    )


def _count_names_aside(upload: Upload, deps: AssemblerDeps) -> tuple[Future[NameCounts], Future[Collection]]:
    """Counting duplicate names and digesting the collection sort every name: done beside the
    streaming (each on its own session), not before it; the document's trailer waits for both."""
    counting = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aside")
    counts = counting.submit(carry_context(deps.uploads.name_counts), upload.id)
    collection = counting.submit(carry_context(deps.uploads.collection), upload.id)
    counting.shutdown(wait=False)
    return counts, collection


def _write(
    upload: Upload,
    document: ResultDocument,
    bucket: str,
    key: str,
    counts: Future[NameCounts],
    collection: Future[Collection],
    deps: AssemblerDeps,
) -> int:
    """Stream the rows through the document into a multipart upload; returns the document's size."""

    def trailer() -> dict[str, int | str]:
        found = counts.result()
        return {
            "duplicate_names": found.duplicate_names,
            "empty_sequences": found.empty_sequences,
            "collection_digest": collection.result().digest,
        }

    progress = _Progress(
        lambda: deps.uploads.record_assembly_progress(upload.id, upload.generation, document.records_written)
    )
    rows = deps.uploads.result_pieces(upload.id)
    try:
        with deps.store.multipart_writer(bucket, key, deps.settings.result_part_bytes, "application/json") as out:
            for piece in document.pieces(rows, trailer):
                out.write(piece)
                if progress.due():
                    failpoint("assembler.mid_upload")  # parts uploaded, the multipart upload open
        return out.size
    except BaseException:
        deps.uploads.reset()
        with contextlib.suppress(Exception):
            rows.close()  # its COPY contexts end on closed sessions: nothing left to drain
        raise


class _Progress:
    """Records progress at most once per ``PROGRESS_EVERY_SECONDS``."""

    def __init__(self, record: Callable[[], None]) -> None:
        self._record = record
        self._last = time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_SECONDS:
            return False
        self._record()
        self._last = now
        return True


def give_up(request: AssembleRequested, why: GiveUp, deps: AssemblerDeps) -> None:
    bind_upload(request.upload_id, request.generation)
    deps.uploads.fail(
        request.upload_id,
        request.generation,
        Failure(PipelineErrorCode.ASSEMBLE_FAILED, why.reason, error_id=why.error_id),
    )
