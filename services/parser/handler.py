"""Parser: one bucket notification in, numbered ``SequenceBatch`` messages out.

Reads the object in ranged GETs pinned to the event's etag, drives the parsing engine, and
publishes bounded batches (with confirms) to the persist queue, then ``ParseCompleted``. Bad
input fails the upload with the engine's code and position; it is never retried.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from shared import db
from shared.broker import PermanentFailure, PipelinedPublisher
from shared.events import MalformedEvent, normalise_event
from shared.failpoints import failpoint
from shared.messages import ObjectCreated, ParseCompleted
from shared.parsing.alphabet import get_alphabet
from shared.parsing.batching import Batcher
from shared.parsing.engine import Limits, SequenceStream
from shared.parsing.errors import ParseError
from shared.settings import Settings
from shared.storage import ObjectChanged, ObjectStore

log = structlog.get_logger()


@dataclass
class ParserDeps:
    settings: Settings
    database: db.Database
    store: ObjectStore
    publisher: PipelinedPublisher


def handle_notification(body: bytes, deps: ParserDeps) -> None:
    try:
        created = normalise_event(body)
    except (MalformedEvent, ValidationError) as exc:
        raise PermanentFailure(str(exc)) from exc
    if not created:
        log.info("ignoring event without object creation")
    for event in created:
        parse_object(event, deps)


def parse_object(event: ObjectCreated, deps: ParserDeps) -> None:
    conn = deps.database.conn
    claim = db.claim_object(conn, event)
    upload = claim.upload
    structlog.contextvars.bind_contextvars(upload_id=str(upload.id), generation=upload.generation)
    if claim.action is not db.ClaimAction.PARSE:
        log.info("event needs no work", action=claim.action.value, bucket=event.bucket, key=event.key)
        return
    if not db.try_lock_generation(conn, upload.id, "parse"):
        # Another parser holds this generation; its own unacked message covers a crash.
        log.info("generation already being parsed elsewhere")
        return
    try:
        if not db.start_parsing(conn, upload.id, upload.generation):
            log.info("generation no longer parseable", state=upload.state.value)
            return
        _parse(event, upload, deps)
    finally:
        if not conn.closed and not conn.broken:
            db.unlock_generation(conn, upload.id, "parse")


def _parse(event: ObjectCreated, upload: db.Upload, deps: ParserDeps) -> None:
    settings = deps.settings
    # A FASTQ read is stored whole with its quality, so it must fit in one part.
    limits = Limits(max_read_bytes=settings.part_bytes - 1)
    stream = SequenceStream(get_alphabet(upload.alphabet), upload.filename, upload.declared_format, limits)
    batcher = Batcher(upload.id, upload.generation, settings.part_bytes, settings.batch_bytes)
    size = event.size or int(deps.store.head(event.bucket, event.key)["ContentLength"])
    offset = 0
    log.info("parsing", bucket=event.bucket, key=event.key, size=size)
    try:
        for chunk in deps.store.iter_ranges(event.bucket, event.key, size, event.etag, settings.read_range_bytes):
            offset += len(chunk)
            for batch in batcher.add(stream.feed(chunk), offset):
                deps.publisher.publish(batch)
                failpoint("parser.after_batch")  # batches out, the file half read
        tail = batcher.add(stream.finish(), offset) + batcher.finish(offset)
        for batch in tail:
            deps.publisher.publish(batch)
    except ParseError as exc:
        deps.publisher.flush()  # batches already sent are dropped by the persister: the generation failed
        log.info("input rejected", code=exc.code, error=exc.message, line=exc.line, column=exc.column)
        db.fail_upload(deps.database.conn, upload.id, upload.generation, exc.code, exc.message, exc.line, exc.column)
        return
    except ObjectChanged as exc:
        deps.publisher.flush()
        if deps.store.exists(event.bucket, event.key):
            log.info("object overwritten while reading; the newer event takes over", error=str(exc))
        else:
            # Nothing will ever take over: say so, instead of leaving the upload parsing forever.
            log.info("object deleted before it could be read", error=str(exc))
            db.fail_upload(
                deps.database.conn,
                upload.id,
                upload.generation,
                "object_deleted",
                f"s3://{event.bucket}/{event.key} was deleted before it could be read",
            )
        return
    except BaseException:
        # Let what was already handed over go out (the persister dedups a retry's batches), and keep
        # a publishing error of this attempt from surfacing in the next upload's.
        with contextlib.suppress(Exception):
            deps.publisher.flush()
        raise
    assert stream.format is not None
    deps.publisher.publish(
        ParseCompleted(
            upload_id=upload.id,
            generation=upload.generation,
            batch_count=batcher.batch_count,
            record_count=batcher.record_count,
            source_bytes=offset,
            format=stream.format + (".gz" if stream.compressed else ""),
        )
    )
    deps.publisher.flush()  # every batch confirmed before the notification is acknowledged
    log.info("parsed", records=batcher.record_count, batches=batcher.batch_count, bytes=offset)


def give_up(body: bytes, reason: str, deps: ParserDeps) -> None:
    """The notification is going to the dead-letter queue: fail its upload(s) with the reason."""
    try:
        created = normalise_event(body)
    except (MalformedEvent, ValidationError):
        log.error("malformed notification dead-lettered", reason=reason)
        return
    conn = deps.database.conn
    for event in created:
        upload = db.find_upload(conn, event.bucket, event.key)
        if upload is not None and upload.etag == event.etag:
            db.fail_upload(conn, upload.id, upload.generation, "processing_failed", reason)
