"""Watchdog: find uploads whose stage stopped moving and issue that stage's message again.

Messages are not lost by design (confirms, acks after commit, quorum queues), but a message can
still go missing outside the pipeline's control -- a purged queue, an operator's mistake, a
notification the object store dropped -- and then an upload would wait forever. The status
endpoint reports such an upload as stalled; this sweep picks it up. Every consumer is idempotent,
so a re-issued message for work that was only slow costs a little time and changes no result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import structlog

from shared import db
from shared.broker import Publisher
from shared.messages import AssembleRequested
from shared.settings import Settings

log = structlog.get_logger()


@dataclass
class WatchdogDeps:
    settings: Settings
    database: db.Database
    publisher: Publisher


def sweep(deps: WatchdogDeps) -> list[db.Upload]:
    """One pass: re-issue the message of every stalled upload; returns the uploads picked up."""

    def reissue(upload: db.Upload) -> None:
        if upload.state is db.State.ASSEMBLING:
            deps.publisher.publish(AssembleRequested(upload_id=upload.id, generation=upload.generation))
        else:  # queued, parsing or persisting: the parser reads the object again
            assert upload.etag is not None
            deps.publisher.publish_object_created(upload.bucket, upload.key, upload.bytes_total or 0, upload.etag)

    after = timedelta(seconds=deps.settings.stall_after_seconds)
    picked = db.pick_up_stalled(deps.database.conn, after, reissue)
    for upload in picked:
        log.warning(
            "stalled upload picked up",
            upload_id=str(upload.id),
            generation=upload.generation,
            state=upload.state.value,
            pickups=upload.pickups,
            idle_since=upload.updated_at.isoformat(),
        )
    return picked
