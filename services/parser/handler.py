"""Parser: one bucket notification in, numbered ``SequenceBatch`` messages out.

Reads the object in ranged GETs pinned to the event's etag, drives the parsing engine, and
publishes bounded batches (with confirms) to the persist queue, then ``ParseCompleted``. Bad
input fails the upload with the engine's code and position; it is never retried.

An upload registered to be validated only (``Mode.VALIDATE``) is parsed whole by the same code with
the same limits, but its batches go to a ``ValidationReport`` instead of the persister: the parser
records the report (records, format, the source's digests, the collection digest) and the upload
is done, or fails with the engine's code and position as any other. The watchdog removes its object.

A FASTA, plain or bgzip, larger than ``shard_bytes`` is parsed in shards, by as many parsers as
there are: the parser that takes the notification reads the object once to find the record starts
that cut it (``shared/parsing/shards.py``, computing the object's digests on the way), saves that plan and
publishes one ``ShardRequested`` per shard on the parse queue. Any parser then parses a shard from
its first record on, numbering records and lines as the whole file would, its batches numbered
within the shard; a shard whose parser dies is redelivered like any message. The persister ends
the generation's parse when every shard's ``ParseCompleted`` is in.
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
from shared.domain.messages import ParseCompleted, SequenceBatch, ShardRequested
from shared.domain.ports import ObjectChanged, ObjectReader, ParseUploads, PipelinedPublisher
from shared.domain.seqcol import CollectionDigester
from shared.domain.stages import GiveUp
from shared.domain.uploads import (
    Claim,
    ClaimAction,
    Failure,
    ObjectCreated,
    PipelineErrorCode,
    Shard,
    Upload,
    Validation,
    decide_claim,
    direct_write_refusal,
    needs_object_check,
    quotas_of,
    trusted_event_time,
)
from shared.parsing.alphabet import get_alphabet
from shared.parsing.engine import GZIP_MAGIC, GzipStream, Limits, Resume, SequenceStream
from shared.parsing.errors import ParseError
from shared.parsing.shards import BgzfShardScanner, FastaShardScanner, ShardContent
from shared.runtime import metrics
from shared.runtime.failpoints import failpoint
from shared.runtime.logs import bind_upload
from shared.runtime.settings import Settings

log = structlog.get_logger()
# Events acknowledged without any effect, by why (logged with each one).
IGNORED: Counter[str] = Counter()


@dataclass
class ParserDeps:
    settings: Settings
    uploads: ParseUploads
    store: ObjectReader
    publisher: PipelinedPublisher


def handle_parse(message: list[ObjectCreated] | ShardRequested, deps: ParserDeps) -> None:
    """One message of the parse queue: a bucket notification, or a shard of a split parse."""
    if isinstance(message, ShardRequested):
        parse_shard(message, deps)
        return
    if not message:
        log.info("ignoring event without object creation")
    for event in message:
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
    if claim.action is ClaimAction.REVOKED:
        IGNORED["owner revoked"] += 1
        log.warning(
            "object of a revoked owner not processed",
            owner=upload.owner,
            bucket=event.bucket,
            key=event.key,
            error_id=upload.error_id,
            ignored=dict(IGNORED),
        )
        return
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
        if upload.registered and _carries_unsigned_headers(event, upload, deps):
            return
        if _over_quota(upload, deps):
            return
        if _split(event, upload, deps):
            return
        _parse(Source(event.bucket, event.key, event.etag), upload, deps)


def _may_split(upload: Upload, settings: Settings) -> bool:
    """Worth reading the object once more to split it: sharding is on and the object is larger."""
    size = upload.bytes_total or 0
    return 0 < settings.shard_bytes < size and upload.declared_format in (None, "fasta")


def _split(event: ObjectCreated, upload: Upload, deps: ParserDeps) -> bool:
    """Request the generation's shards, planning them first if it is to be split; False: it is
    parsed whole, as any other.

    A validation is parsed whole: it stores nothing, so a parse in shards, each by another parser,
    would have nothing to join its reports in.

    Whole or in shards is decided once per generation, by the store: a saved plan is followed
    whatever this parser's own setting says, and a generation whose parse began before without a
    plan (``upload`` is as claimed, before this attempt started) stays whole. Batches of the two
    modes are numbered differently; mixing them in one generation would collide.
    """
    if upload.validates:
        return False
    plan = deps.uploads.shard_plan(upload.id, upload.generation)
    if not plan:
        if upload.parsing_started_at is not None or not _may_split(upload, deps.settings):
            return False
        try:
            planned = _plan_shards(event, upload, deps)
        except ObjectChanged as exc:
            _object_changed(Source(event.bucket, event.key, event.etag), upload, exc, deps)
            return True
        if planned is None:
            return False
        shards, source_md5, source_sha256 = planned
        content = sum(shard.content_bytes for shard in shards if shard.bgzf)
        if content and not deps.uploads.draw_inflation(
            upload.id, upload.generation, content, deps.settings.quota_inflated_bytes
        ):
            _fail_inflation_quota(upload, content, deps)
            return True
        saved = deps.uploads.save_shard_plan(upload.id, upload.generation, shards, source_md5, source_sha256)
        if saved is None:
            log.info("generation no longer parsing; its shards are not requested")
            return True
        plan = saved
    # Every shard, also on a redelivery: one that was parsed is parsed again and its batches are
    # skipped by the persister (a lost batch is recovered this way, as in a whole parse).
    for shard in plan:
        deps.publisher.publish(ShardRequested(upload_id=upload.id, generation=upload.generation, shard=shard.number))
    deps.publisher.flush()
    log.info("parse split into shards", shards=len(plan), shard_bytes=deps.settings.shard_bytes)
    return True


def _plan_shards(event: ObjectCreated, upload: Upload, deps: ParserDeps) -> tuple[list[Shard], str, str] | None:
    """Read the object once: where its shards start, and its digests. None if it does not split:
    not a plain or bgzip FASTA whose first byte is '>' (plain gzip, FASTQ, anything the whole parse
    must judge), past the decompression limits, or a single shard."""
    settings = deps.settings
    size = upload.bytes_total or 0
    scanner: FastaShardScanner | BgzfShardScanner | None = None
    digests = SourceDigests()
    started = time.monotonic()
    try:
        with digests:
            for chunk in deps.store.iter_ranges(event.bucket, event.key, size, event.etag, settings.read_range_bytes):
                if scanner is None:
                    scanner = (
                        BgzfShardScanner(
                            settings.shard_bytes, settings.max_decompressed_bytes, settings.max_compression_ratio
                        )
                        if chunk.startswith(GZIP_MAGIC)
                        else FastaShardScanner(settings.shard_bytes)
                    )
                digests.feed(chunk)
                scanner.feed(chunk)
            if isinstance(scanner, BgzfShardScanner):
                scanner.finish()
    except ValueError as exc:  # the scanners' word for "cannot be split"
        log.info("not split; parsed whole", reason=str(exc))
        return None
    source_md5, source_sha256 = digests.finish()
    if scanner is None or len(scanner.starts) < 2:
        return None
    shards = _bgzf_shards(scanner) if isinstance(scanner, BgzfShardScanner) else _plain_shards(scanner)
    log.info(
        "shards planned",
        shards=len(shards),
        records=sum(shard.records for shard in shards),
        seconds=round(time.monotonic() - started, 2),
    )
    return shards, source_md5, source_sha256


def _plain_shards(scanner: FastaShardScanner) -> list[Shard]:
    starts = scanner.starts
    ends = [s.offset for s in starts[1:]] + [scanner.size]
    counts = [s.ordinal for s in starts[1:]] + [scanner.records]
    return [
        Shard(
            number,
            start.offset,
            end,
            start.ordinal,
            start.line,
            count - start.ordinal,
            content_bytes=end - start.offset,
        )
        for number, (start, end, count) in enumerate(zip(starts, ends, counts, strict=True))
    ]


def _bgzf_shards(scanner: BgzfShardScanner) -> list[Shard]:
    """A shard reads from the block of its first record through the block of the next shard's
    first record (not that block when the next record begins it)."""
    starts = scanner.starts
    shards = []
    for number, start in enumerate(starts):
        if number + 1 < len(starts):
            after = starts[number + 1]
            end = after.block + (after.block_size if after.within else 0)
            content_end, records_end = after.content_offset, after.ordinal
        else:
            end, content_end, records_end = scanner.size, scanner.content.size, scanner.content.records
        shards.append(
            Shard(
                number,
                start.block,
                end,
                start.ordinal,
                start.line,
                records_end - start.ordinal,
                bgzf=True,
                skip=start.within,
                content_bytes=content_end - start.content_offset,
            )
        )
    return shards


def parse_shard(request: ShardRequested, deps: ParserDeps) -> None:
    bind_upload(request.upload_id, request.generation)
    structlog.contextvars.bind_contextvars(shard=request.shard)
    with deps.uploads.generation_lock(request.upload_id, f"parse-shard-{request.shard}") as locked:
        if not locked:
            log.info("shard already being parsed elsewhere")
            return
        found = deps.uploads.shard_to_parse(request.upload_id, request.generation, request.shard)
        if found is None:
            log.info("shard no longer to be parsed (its generation ended or was replaced)")
            return
        upload = found.upload
        assert upload.etag is not None
        _parse(Source(upload.bucket, upload.key, upload.etag), upload, deps, found.shard, found.shard_count)


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
    """The engine's limits from the settings (docs/architecture.md "Limits")."""
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


class InflationQuotaExceeded(Exception):
    """The owner's uploads together would inflate more than GENOBASE_QUOTA_INFLATED_BYTES."""


# How much of the owner's inflation quota a parse draws at a time: one small transaction per step.
INFLATION_DRAW_STEP = 64 * 1024 * 1024


class InflationDraw:
    """Keeps the owner's inflation quota drawn ahead of what the parse inflated.

    ``check`` runs after each inflated piece, before its records are published: when the piece
    went past what was drawn, the next step is drawn (or, near the quota, just what was inflated);
    a refusal stops the parse. A parse of the same generation again starts from what it drew before.
    """

    def __init__(self, upload: Upload, quota: int, uploads: ParseUploads) -> None:
        self._upload = upload
        self._quota = quota
        self._uploads = uploads
        self.drawn = upload.inflated_bytes

    def check(self, inflated: int) -> None:
        if inflated <= self.drawn:
            return
        for upto in (inflated + INFLATION_DRAW_STEP, inflated):
            if self._uploads.draw_inflation(self._upload.id, self._upload.generation, upto, self._quota):
                self.drawn = upto
                return
        raise InflationQuotaExceeded(f"{inflated} bytes inflated; the owner's quota is {self._quota}")

    def settle(self, inflated: int) -> None:
        """The parse ended (whichever way): what it drew beyond ``inflated`` goes back to the owner."""
        if self.drawn > inflated:
            self._uploads.settle_inflation(self._upload.id, self._upload.generation, inflated)
            self.drawn = inflated


class ValidationReport:
    """Where a validation's batches go instead of the persister: counted and digested, then dropped.

    The collection digest needs each record's name, length and refget digest in file order, which
    the batches carry; ``CollectionDigester`` hashes them as they stream by (bounded memory).
    """

    def __init__(self) -> None:
        self._digester = CollectionDigester()
        self.records = 0

    def add(self, batch: SequenceBatch) -> None:
        records = batch.records
        if not len(records):
            return
        self._digester.add_many(records.column("seq_id"), records.column("length"), records.column("refget"))
        self.records += len(records)

    def finish(self, source_format: str, source_bytes: int, source_md5: str, source_sha256: str) -> Validation:
        return Validation(
            records=self.records,
            format=source_format,
            bytes=source_bytes,
            source_md5=source_md5,
            source_sha256=source_sha256,
            collection_digest=self._digester.digest(),
        )


@dataclass(frozen=True)
class Source:
    """The object a parse reads, pinned to the generation's etag."""

    bucket: str
    key: str
    etag: str


def _parse(source: Source, upload: Upload, deps: ParserDeps, shard: Shard | None = None, shard_count: int = 1) -> None:
    """Parse the object, or one ``shard`` of it (its bytes, numbered from its first record on)."""
    settings = deps.settings
    resume = None if shard is None or shard.number == 0 else Resume(shard.first_ordinal, shard.first_line)
    stream = SequenceStream(
        get_alphabet(upload.alphabet),
        upload.filename,
        "fasta" if shard is not None else upload.declared_format,
        parse_limits(settings),
        resume=resume,
    )
    batcher = Batcher(
        upload.id,
        upload.generation,
        settings.part_bytes,
        settings.batch_bytes,
        shard=shard.number if shard else 0,
        shard_start=shard.start if shard else None,
    )
    budget = ProgressBudget(settings.parse_stall_seconds)
    # A bgzip shard's content was drawn from the owner's quota when the shards were planned.
    inflation = InflationDraw(upload, settings.quota_inflated_bytes, deps.uploads) if shard is None else None
    if shard is not None:
        start, end = shard.start, shard.end
    else:
        start = 0
        # The size recorded when the store confirmed this generation's object (see parse_object).
        end = upload.bytes_total if upload.bytes_total is not None else _stored_size(source, deps)
    offset = start
    # The whole object's digests: a shard's were taken when the shards were planned.
    digests = SourceDigests() if shard is None else None
    # A bgzip shard's blocks are inflated here, its content cut out of them (the engine sees FASTA).
    content = (
        ShardContent(GzipStream(parse_limits(settings)).feed, shard.skip, shard.content_bytes)
        if shard is not None and shard.bgzf
        else None
    )
    log.info("parsing", bucket=source.bucket, key=source.key, start=start, end=end)

    # A validation (always whole: ``_split``) keeps its batches to itself.
    report = ValidationReport() if upload.validates and shard is None else None

    def publish(batches: Iterable[SequenceBatch]) -> None:
        for batch in batches:
            # Asked before each batch (a lookup by key per batch of up to GENOBASE_BATCH_BYTES): a
            # generation deleted, failed or replaced meanwhile gets nothing more.
            if not deps.uploads.parsing(upload.id, upload.generation):
                raise GenerationEnded("the generation is no longer being parsed")
            if report is not None:
                report.add(batch)
            else:
                deps.publisher.publish(batch)
            budget.progress()
            failpoint("parser.after_batch")  # batches out, the file half read

    try:
        with digests if digests is not None else contextlib.nullcontext():  # abandoned on any exception
            for chunk in deps.store.iter_ranges(
                source.bucket, source.key, end, source.etag, settings.read_range_bytes, start=start
            ):
                offset += len(chunk)
                if digests is not None:
                    digests.feed(chunk)
                budget.progress()
                for piece in content.feed(chunk) if content is not None else (chunk,):
                    for events in stream.pieces(piece):  # one bounded piece of content at a time
                        budget.check()
                        if inflation is not None:
                            inflation.check(stream.inflated_bytes)
                        publish(batcher.add(events, offset))
            if content is not None and not content.complete:
                raise RuntimeError(f"shard {shard and shard.number}: its blocks hold less content than planned")
            publish(batcher.add(stream.finish(), offset))
            publish(batcher.finish(offset))
    except ParseError as exc:
        deps.publisher.flush()  # batches already sent are dropped by the persister: the generation failed
        if inflation is not None:
            inflation.settle(stream.inflated_bytes)
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
    except InflationQuotaExceeded as exc:
        deps.publisher.flush()
        log.warning("inflation quota exceeded", error=str(exc))
        _fail_inflation_quota(upload, stream.inflated_bytes, deps)
        return
    except ParseStalled as exc:
        deps.publisher.flush()
        if inflation is not None:
            inflation.settle(stream.inflated_bytes)
        failure = Failure(PipelineErrorCode.PARSE_STALLED, f"the parse made no progress: {exc}")
        log.warning("parse stalled", error=str(exc), error_id=failure.error_id)
        deps.uploads.fail(upload.id, upload.generation, failure)
        return
    except ObjectChanged as exc:
        deps.publisher.flush()
        _object_changed(source, upload, exc, deps)
        return
    except GenerationEnded:
        deps.publisher.flush()  # what went out before is dropped by the persister
        if inflation is not None:
            inflation.settle(stream.inflated_bytes)
        log.info("parse stopped: the generation was deleted, failed or replaced meanwhile", offset=offset)
        return
    except BaseException:
        # Let what was already handed over go out (the persister dedups a retry's batches), and keep
        # a publishing error of this attempt from surfacing in the next upload's.
        with contextlib.suppress(Exception):
            deps.publisher.flush()
        raise
    assert stream.format is not None
    if shard is not None and batcher.record_count != shard.records:
        # The plan and the parse disagree on where records start: retried, then dead-lettered.
        raise RuntimeError(f"shard {shard.number}: {shard.records} records planned, {batcher.record_count} parsed")
    source_md5, source_sha256 = digests.finish() if digests is not None else (None, None)
    if inflation is not None:
        inflation.settle(stream.inflated_bytes)
    source_format = stream.format + (".gz" if stream.compressed or content is not None else "")
    if report is not None:
        assert source_md5 is not None and source_sha256 is not None
        validation = report.finish(source_format, offset - start, source_md5, source_sha256)
        if deps.uploads.finish_validation(upload.id, upload.generation, validation):
            log.info("validated", records=validation.records, format=source_format, bytes=validation.bytes)
        else:
            log.info("validated, but the generation ended or was replaced meanwhile")
        metrics.BYTES.labels("parse").inc(offset - start)
        return
    deps.publisher.publish(
        ParseCompleted(
            upload_id=upload.id,
            generation=upload.generation,
            shard=shard.number if shard else 0,
            shard_count=shard_count,
            batch_count=batcher.batch_count,
            record_count=batcher.record_count,
            source_bytes=offset - start,
            format=source_format,
            source_md5=source_md5,
            source_sha256=source_sha256,
        )
    )
    deps.publisher.flush()  # every batch confirmed before the notification is acknowledged
    metrics.BYTES.labels("parse").inc(offset - start)
    metrics.RECORDS.labels("parse").inc(batcher.record_count)
    log.info("parsed", records=batcher.record_count, batches=batcher.batch_count, bytes=offset - start)


class GenerationEnded(Exception):
    """The generation being parsed was deleted, failed or replaced: the parse stops, publishing nothing more."""


def _over_quota(upload: Upload, deps: ParserDeps) -> bool:
    """Fail a generation that takes its owner past a quota; True if it did.

    Registrations are held to the quotas by the intake, but an owner's own S3 keys may write any
    object under its prefix: a new key, or a registered key again, with another size. Every
    generation is therefore counted here, before any of it is read (the object stays in the store,
    unprocessed). A ticket's own object never fails this: its registration was counted within the
    quotas, and this refuses only what is past them.
    """
    if upload.owner is None:
        return False
    usage = deps.uploads.owner_usage(upload.owner)
    refusal = None if usage is None else direct_write_refusal(usage, quotas_of(deps.settings))
    if refusal is None:
        return False
    failure = Failure(PipelineErrorCode.QUOTA_EXCEEDED, f"{refusal.code.value}: {refusal.message}")
    log.warning("direct write over the owner's quota refused", quota=refusal.code.value, error_id=failure.error_id)
    deps.uploads.fail(upload.id, upload.generation, failure)
    return True


def _carries_unsigned_headers(event: ObjectCreated, upload: Upload, deps: ParserDeps) -> bool:
    """Fail the generation if its object carries headers its ticket did not sign; True if it did.

    A presigned PUT signs its size and Content-Type; the store also keeps metadata, tags and
    caching or encoding headers that a client adds unsigned, and no bucket policy can refuse them.
    What a ticket was not given is refused here, before any of the object is read. An object the
    store no longer shows with the event's etag is left to the parse, which finds it changed.
    """
    stored = deps.store.stat(event.bucket, event.key)
    if stored is None or stored.etag != event.etag or not stored.unsigned_attributes:
        return False
    failure = Failure(
        PipelineErrorCode.UNSIGNED_HEADERS,
        "the upload carries headers its ticket did not sign: " + ", ".join(stored.unsigned_attributes),
    )
    log.warning("object with unsigned headers refused", headers=stored.unsigned_attributes, error_id=failure.error_id)
    deps.uploads.fail(upload.id, upload.generation, failure)
    return True


def _fail_inflation_quota(upload: Upload, inflated: int, deps: ParserDeps) -> None:
    failure = Failure(
        PipelineErrorCode.INFLATION_QUOTA_EXCEEDED,
        f"the owner's uploads together would inflate more than {deps.settings.quota_inflated_bytes} bytes "
        "of compressed content (GENOBASE_QUOTA_INFLATED_BYTES)",
    )
    log.warning("owner's inflation quota reached", inflated=inflated, error_id=failure.error_id)
    deps.uploads.fail(upload.id, upload.generation, failure)


def _stored_size(source: Source, deps: ParserDeps) -> int:
    """Not recorded (a claim always records it): ask the store."""
    stat = deps.store.stat(source.bucket, source.key)
    return stat.size if stat is not None else 0


def _object_changed(source: Source, upload: Upload, exc: ObjectChanged, deps: ParserDeps) -> None:
    if deps.store.exists(source.bucket, source.key):
        log.info("object overwritten while reading; the newer event takes over", error=str(exc))
    else:
        # Nothing will ever take over: say so, instead of leaving the upload parsing forever.
        failure = Failure(PipelineErrorCode.OBJECT_DELETED, "the object was deleted before it could be read")
        log.info("object deleted before it could be read", error=str(exc), error_id=failure.error_id)
        deps.uploads.fail(upload.id, upload.generation, failure)


def give_up(message: list[ObjectCreated] | ShardRequested, why: GiveUp, deps: ParserDeps) -> None:
    """The message is going to the dead-letter queue: fail its upload(s) with the reason."""
    if isinstance(message, ShardRequested):
        bind_upload(message.upload_id, message.generation)
        deps.uploads.fail(
            message.upload_id,
            message.generation,
            Failure(PipelineErrorCode.PROCESSING_FAILED, why.reason, error_id=why.error_id),
        )
        return
    for event in message:
        upload = deps.uploads.find(event.bucket, event.key)
        if upload is not None and upload.etag == event.etag:
            bind_upload(upload.id, upload.generation)
            deps.uploads.fail(
                upload.id,
                upload.generation,
                Failure(PipelineErrorCode.PROCESSING_FAILED, why.reason, error_id=why.error_id),
            )
