"""Persister: COPY each batch into Postgres exactly once, and announce when a generation is complete.

The batch number is recorded in the same transaction as the rows, so a redelivered batch is
recognised and skipped; ``AssembleRequested`` is published (with confirms) only after the commit
that completed the generation, and again on any replay of it -- the assembler ignores repeats.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from shared import db
from shared.broker import PermanentFailure, Publisher
from shared.failpoints import failpoint
from shared.messages import AssembleRequested, ParseCompleted, SequenceBatch, decode_persist_message

log = structlog.get_logger()


@dataclass
class PersisterDeps:
    database: db.Database
    publisher: Publisher


def handle_persist(body: bytes, deps: PersisterDeps) -> None:
    try:
        message = decode_persist_message(body)
    except ValidationError as exc:
        raise PermanentFailure(f"invalid persist message: {exc}") from exc
    structlog.contextvars.bind_contextvars(upload_id=str(message.upload_id), generation=message.generation)
    try:
        if isinstance(message, SequenceBatch):
            outcome = db.store_batch(deps.database.conn, message)
            log.debug("batch", batch_no=message.batch_no, stored=outcome.stored, records=len(message.records))
            if outcome.stored:
                failpoint("persister.after_commit")  # committed, not yet acknowledged
        else:
            outcome = db.record_parse_completed(deps.database.conn, message)
            log.info("parse completed", batches=message.batch_count, records=message.record_count)
    except BaseException:
        deps.database.close()  # the retry starts on a fresh session, whatever state a failed COPY left
        raise
    if outcome.ready_to_assemble:
        deps.publisher.publish(AssembleRequested(upload_id=message.upload_id, generation=message.generation))
        log.info("all batches stored; assembly requested")


def give_up(body: bytes, reason: str, deps: PersisterDeps) -> None:
    try:
        message: SequenceBatch | ParseCompleted = decode_persist_message(body)
    except ValidationError:
        log.error("malformed persist message dead-lettered", reason=reason)
        return
    db.fail_upload(deps.database.conn, message.upload_id, message.generation, "persist_failed", reason)
