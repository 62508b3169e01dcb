"""Parser: one bucket notification in, numbered ``SequenceBatch`` messages out.

Reads the object in ranged GETs pinned to the event's etag, drives the parsing engine, and
publishes bounded batches (with confirms) to the persist queue, then ``ParseCompleted``. Bad
input fails the upload with the engine's code and position; it is never retried.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from services.parser.batching import Batcher
from services.parser.source_digests import SourceDigests
from shared import metrics
from shared.failpoints import failpoint
from shared.logging import bind_upload
from shared.messages import ParseCompleted, SequenceBatch
from shared.parsing.alphabet import get_alphabet
from shared.parsing.engine import Limits, SequenceStream
from shared.parsing.errors import ParseError
from shared.ports import ObjectChanged, ObjectReader, ParseUploads, PipelinedPublisher
from shared.settings import Settings
from shared.stages import GiveUp
from shared.uploads import (
    Claim,
    ClaimAction,
    Failure,
    ObjectCreated,
    PipelineErrorCode,
    Upload,
    decide_claim,
    needs_object_check,
    trusted_event_time,
)

log = structlog.get_logger()
# Events acknowledged without any effect, by why (logged with each one).
IGNORED: Counter[str] = Counter()


@dataclass
class ParserDeps:
    settings: Settings
    uploads: ParseUploads
    store: ObjectReader
    publisher: PipelinedPublisher


def handle_notification(events: list[ObjectCreated], deps: ParserDeps) -> None:
    if not events:
        log.info("ignoring event without object creation")
    for event in events:
        parse_object(event, deps)


def parse_object(event: ObjectCreated, deps: ParserDeps) -> None:
    if event.bucket != deps.settings.uploads_bucket:
        IGNORED["other bucket"] += 1
        log.warning("event for another bucket ignored", bucket=event.bucket, key=event.key, ignored=dict(IGNORED))
        return
    event = trusted_event_time(event, datetime.now(UTC))
    claim = _claim(event, deps)
    if claim is None:
        return
    upload = claim.upload
    bind_upload(upload.id, upload.generation)
    if claim.action is not ClaimAction.PARSE:
        log.info("event needs no work", action=claim.action.value, bucket=event.bucket, key=event.key)
        return
    with deps.uploads.generation_lock(upload.id, "parse") as locked:
        if not locked:
            # Another parser holds this generation; its own unacked message covers a crash.
            log.info("generation already being parsed elsewhere")
            return
        if not deps.uploads.start_parsing(upload.id, upload.generation):
            log.info("generation no longer parseable", state=upload.state.value)
            return
        _parse(event, upload, deps)


def _claim(event: ObjectCreated, deps: ParserDeps, attempts: int = 3) -> Claim | None:
    """Claim the event's upload; where that starts a generation, only once the store confirmed it.

    The first look decides without a lock; the claim decides again under the key's row lock and
    answers ``UNCONFIRMED`` if the upload changed meanwhile so that a HEAD is now due: look again.
    None: the store does not show the event's object, nothing is done.
    """
    for _ in range(attempts):
        confirmed = False
        if needs_object_check(decide_claim(deps.uploads.find(event.bucket, event.key), event)):
            stored = deps.store.stat(event.bucket, event.key)
            if stored is None or stored.etag != event.etag:
                IGNORED["etag not in the store"] += 1
                log.warning(
                    "event for an object the store does not show ignored",
                    bucket=event.bucket,
                    key=event.key,
                    etag=event.etag,
                    stored_etag=stored and stored.etag,
                    ignored=dict(IGNORED),
                )
                return None
            # The size is the store's too: a notification's size would cut the file short or read past it.
            event = event.model_copy(update={"size": stored.size})
            confirmed = True
        claim = deps.uploads.claim(event, confirmed)
        if claim.action is not ClaimAction.UNCONFIRMED:
            return claim
    raise RuntimeError("the upload kept changing under the claim")  # redelivered: decided afresh


def parse_limits(settings: Settings) -> Limits:
    """The engine's limits from the settings (README "Limits")."""
    return Limits(
        max_header_bytes=settings.max_header_bytes,
        max_title_bytes=settings.max_title_bytes,
        max_field_bytes=settings.max_field_bytes,
        max_attributes_bytes=settings.max_attributes_bytes,
        max_row_bytes=settings.max_row_bytes,
        max_line_bytes=settings.max_line_bytes,
        # A FASTQ read is stored whole with its quality, so it must fit in one part.
        max_read_bytes=settings.part_bytes - 1,
        max_records=settings.max_records,
        max_decompressed_bytes=settings.max_decompressed_bytes,
        max_compression_ratio=settings.max_compression_ratio,
    )


class ParseStalled(Exception):
    """The parse read no new range and published no batch for the configured time."""


class ProgressBudget:
    """The last line of defence against an input that holds a parser without getting anywhere.

    Progress is a range read or a batch published; ``check`` runs between the engine's bounded
    pieces, so a piece never runs long (the engine is linear) and the gap between checks is short.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._last = clock()

    def progress(self) -> None:
        self._last = self._clock()

    def check(self) -> None:
        idle = self._clock() - self._last
        if idle > self._seconds:
            raise ParseStalled(f"no progress for {idle:.0f} s (limit {self._seconds:.0f} s)")


def _parse(event: ObjectCreated, upload: Upload, deps: ParserDeps) -> None:
    settings = deps.settings
    stream = SequenceStream(
        get_alphabet(upload.alphabet), upload.filename, upload.declared_format, parse_limits(settings)
    )
    batcher = Batcher(upload.id, upload.generation, settings.part_bytes, settings.batch_bytes)
    budget = ProgressBudget(settings.parse_stall_seconds)
    # The size recorded when the store confirmed this generation's object (see parse_object).
    size = upload.bytes_total
    if size is None:  # not recorded (a claim always records it): ask the store
        stat = deps.store.stat(event.bucket, event.key)
        size = stat.size if stat is not None else 0
    offset = 0
    digests = SourceDigests()
    log.info("parsing", bucket=event.bucket, key=event.key, size=size)

    def publish(batches: Iterable[SequenceBatch]) -> None:
        for batch in batches:
            deps.publisher.publish(batch)
            budget.progress()
            failpoint("parser.after_batch")  # batches out, the file half read

    try:
        for chunk in deps.store.iter_ranges(event.bucket, event.key, size, event.etag, settings.read_range_bytes):
            offset += len(chunk)
            digests.feed(chunk)
            budget.progress()
            for events in stream.pieces(chunk):  # one bounded piece of content at a time
                budget.check()
                publish(batcher.add(events, offset))
        publish(batcher.add(stream.finish(), offset))
        publish(batcher.finish(offset))
    except ParseError as exc:
        digests.abandon()
        deps.publisher.flush()  # batches already sent are dropped by the persister: the generation failed
        failure = Failure(exc.code, exc.message, exc.line, exc.column)
        log.info(
            "input rejected",
            code=exc.code.value,
            error=exc.message,
            line=exc.line,
            column=exc.column,
            error_id=failure.error_id,
        )
        deps.uploads.fail(upload.id, upload.generation, failure)
        return
    except ParseStalled as exc:
        digests.abandon()
        deps.publisher.flush()
        failure = Failure(PipelineErrorCode.PARSE_STALLED, f"the parse made no progress: {exc}")
        log.warning("parse stalled", error=str(exc), error_id=failure.error_id)
        deps.uploads.fail(upload.id, upload.generation, failure)
        return
    except ObjectChanged as exc:
        digests.abandon()
        deps.publisher.flush()
        if deps.store.exists(event.bucket, event.key):
            log.info("object overwritten while reading; the newer event takes over", error=str(exc))
        else:
            # Nothing will ever take over: say so, instead of leaving the upload parsing forever.
            failure = Failure(PipelineErrorCode.OBJECT_DELETED, "the object was deleted before it could be read")
            log.info("object deleted before it could be read", error=str(exc), error_id=failure.error_id)
            deps.uploads.fail(upload.id, upload.generation, failure)
        return
    except BaseException:
        digests.abandon()
        # Let what was already handed over go out (the persister dedups a retry's batches), and keep
        # a publishing error of this attempt from surfacing in the next upload's.
        with contextlib.suppress(Exception):
            deps.publisher.flush()
        raise
    assert stream.format is not None
    source_md5, source_sha256 = digests.finish()
    deps.publisher.publish(
        ParseCompleted(
            upload_id=upload.id,
            generation=upload.generation,
            batch_count=batcher.batch_count,
            record_count=batcher.record_count,
            source_bytes=offset,
            format=stream.format + (".gz" if stream.compressed else ""),
            source_md5=source_md5,
            source_sha256=source_sha256,
        )
    )
    deps.publisher.flush()  # every batch confirmed before the notification is acknowledged
    metrics.BYTES.labels("parse").inc(offset)
    metrics.RECORDS.labels("parse").inc(batcher.record_count)
    log.info("parsed", records=batcher.record_count, batches=batcher.batch_count, bytes=offset)


def give_up(events: list[ObjectCreated], why: GiveUp, deps: ParserDeps) -> None:
    """The notification is going to the dead-letter queue: fail its upload(s) with the reason."""
    for event in events:
        upload = deps.uploads.find(event.bucket, event.key)
        if upload is not None and upload.etag == event.etag:
            bind_upload(upload.id, upload.generation)
            deps.uploads.fail(
                upload.id,
                upload.generation,
                Failure(PipelineErrorCode.PROCESSING_FAILED, why.reason, error_id=why.error_id),
            )
