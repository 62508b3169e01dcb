"""Assembler: stream a complete generation out of Postgres into one JSON document in S3.

The document is written by multipart upload while the rows stream in, so neither side ever
holds it. A crashed writer's unfinished multipart upload is aborted before a new attempt.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from shared import db
from shared.assembly import ResultDocument
from shared.broker import PermanentFailure
from shared.failpoints import failpoint
from shared.messages import AssembleRequested
from shared.settings import Settings
from shared.storage import ObjectStore

log = structlog.get_logger()
PROGRESS_EVERY_SECONDS = 1.0


@dataclass
class AssemblerDeps:
    settings: Settings
    database: db.Database  # records stream over this one
    parts_db: db.Database  # and parts over this one, at the same time
    progress_db: db.Database  # progress updates, while the other two are busy with COPY
    store: ObjectStore

    def reset_connections(self) -> None:
        """After a failure a connection may be left inside a half-read COPY: start again on new ones.

        Closing also ends the session that holds the generation's advisory lock.
        """
        for database in (self.database, self.parts_db, self.progress_db):
            database.close()


def handle_assemble(body: bytes, deps: AssemblerDeps) -> None:
    try:
        request = AssembleRequested.model_validate_json(body)
    except ValidationError as exc:
        raise PermanentFailure(f"invalid assemble message: {exc}") from exc
    structlog.contextvars.bind_contextvars(upload_id=str(request.upload_id), generation=request.generation)
    try:
        _assemble_if_due(request, deps)
    except BaseException:
        deps.reset_connections()
        raise


def _assemble_if_due(request: AssembleRequested, deps: AssemblerDeps) -> None:
    conn = deps.database.conn
    upload = db.assembling_upload(conn, request.upload_id, request.generation)
    if upload is None:
        log.info("nothing to assemble (already done, failed or replaced)")
        return
    if not db.try_lock_generation(conn, upload.id, "assemble"):
        log.info("generation already being assembled elsewhere")
        return
    assemble_upload(upload, deps)
    db.unlock_generation(conn, upload.id, "assemble")


def result_key(upload: db.Upload) -> str:
    return f"{upload.id}/generation-{upload.generation}.json"


def assemble_upload(upload: db.Upload, deps: AssemblerDeps) -> None:
    settings = deps.settings
    bucket, key = settings.results_bucket, result_key(upload)
    aborted = deps.store.abort_stale_multipart(bucket, key)
    if aborted:
        log.info("aborted unfinished multipart uploads of an earlier attempt", count=aborted)
    document = ResultDocument(
        {
            "upload_id": str(upload.id),
            "generation": upload.generation,
            "source": {"bucket": upload.bucket, "key": upload.key, "etag": upload.etag},
            "filename": upload.filename,
            "format": upload.format,
            "record_count": upload.records_total,
        },
        escape_residues=upload.alphabet == "any",
    )
    started = time.monotonic()
    last_progress = started
    # Counting duplicate names sorts every name: done beside the streaming, not before it.
    counting = ThreadPoolExecutor(max_workers=1, thread_name_prefix="name-counts")
    counts = counting.submit(_name_counts, deps.settings, upload.id)
    counting.shutdown(wait=False)

    def trailer() -> dict[str, int]:
        duplicates, empty = counts.result()
        return {"duplicate_names": duplicates, "empty_sequences": empty}

    rows = db.iter_result_rows(deps.database.conn, deps.parts_db.conn, upload.id)
    try:
        with deps.store.multipart_writer(bucket, key, settings.result_part_bytes, "application/json") as out:
            for piece in document.pieces(rows, trailer):
                out.write(piece)
                now = time.monotonic()
                if now - last_progress >= PROGRESS_EVERY_SECONDS:
                    db.record_assembly_progress(
                        deps.progress_db.conn, upload.id, upload.generation, document.records_written
                    )
                    last_progress = now
                    failpoint("assembler.mid_upload")  # parts uploaded, the multipart upload open
    except BaseException:
        deps.reset_connections()
        with contextlib.suppress(Exception):
            rows.close()  # its COPY contexts end on closed connections: nothing left to drain
        raise
    if document.records_written != upload.records_total:
        raise RuntimeError(f"wrote {document.records_written} records, expected {upload.records_total}")
    db.finish_assembly(
        deps.database.conn,
        upload.id,
        upload.generation,
        bucket,
        key,
        out.size,
        document.records_written,
        counts.result(),
    )
    log.info(
        "result written",
        key=key,
        bytes=out.size,
        records=document.records_written,
        seconds=round(time.monotonic() - started, 2),
    )


def _name_counts(settings: Settings, upload_id: uuid.UUID) -> tuple[int, int]:
    with db.connect(settings, autocommit=True) as conn:
        return db.name_counts(conn, upload_id)


def give_up(body: bytes, reason: str, deps: AssemblerDeps) -> None:
    try:
        request = AssembleRequested.model_validate_json(body)
    except ValidationError:
        log.error("malformed assemble message dead-lettered", reason=reason)
        return
    db.fail_upload(deps.database.conn, request.upload_id, request.generation, "assemble_failed", reason)
