"""Persister: COPY each batch into Postgres exactly once, and tell the assembler when to start.

The batch number is recorded in the same transaction as the rows, so a redelivered batch is
recognised and skipped. ``AssembleRequested`` is published (with confirms) after the commit of a
generation's first batch (the assembler then follows the committed batches while the parse goes
on) and after the commit that completed the generation, and again on any replay of that one; the
assembler ignores repeats. The second one matters when the first assembler died or never started.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from shared.domain.messages import AssembleRequested, ParseCompleted, SequenceBatch
from shared.domain.ports import PersistUploads, Publisher
from shared.domain.stages import GiveUp
from shared.domain.uploads import Failure, PipelineErrorCode
from shared.runtime import metrics
from shared.runtime.failpoints import failpoint
from shared.runtime.logs import bind_upload

log = structlog.get_logger()


@dataclass
class PersisterDeps:
    uploads: PersistUploads
    publisher: Publisher


def handle_persist(message: SequenceBatch | ParseCompleted, deps: PersisterDeps) -> None:
    bind_upload(message.upload_id, message.generation)
    try:
        if isinstance(message, SequenceBatch):
            outcome = deps.uploads.store_batch(message)
            log.debug("batch", batch_no=message.batch_no, stored=outcome.stored, records=len(message.records))
            if outcome.stored:
                metrics.RECORDS.labels("persist").inc(len(message.records))
                failpoint("persister.after_commit")  # committed, not yet acknowledged
        else:
            outcome = deps.uploads.record_parse_completed(message)
            log.info("parse completed", batches=message.batch_count, records=message.record_count)
    except BaseException:
        deps.uploads.reset()  # the retry starts on a fresh session, whatever state a failed COPY left
        raise
    # At the first batch the assembler starts following the generation, writing records as their
    # batches commit; at the last one it can finish (or takes over, if the first one died).
    if outcome.ready_to_assemble or outcome.first_batch:
        deps.publisher.publish(AssembleRequested(upload_id=message.upload_id, generation=message.generation))
        log.info("all batches stored; assembly requested" if outcome.ready_to_assemble else "first batch stored")


def give_up(message: SequenceBatch | ParseCompleted, why: GiveUp, deps: PersisterDeps) -> None:
    bind_upload(message.upload_id, message.generation)
    deps.uploads.fail(
        message.upload_id,
        message.generation,
        Failure(PipelineErrorCode.PERSIST_FAILED, why.reason, error_id=why.error_id),
    )
