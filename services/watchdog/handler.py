"""Watchdog: find uploads whose stage stopped moving and issue that stage's message again.

It also ends registered uploads whose ticket ran out with no object written (``expired``), so
that an abandoned registration does not wait in ``awaiting_upload`` forever.

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

from shared import metrics
from shared.events import replay_event
from shared.messages import AssembleRequested
from shared.ports import EventPublisher, MultipartAborter, SweepUploads
from shared.settings import Settings
from shared.uploads import State, Upload

log = structlog.get_logger()


@dataclass
class WatchdogDeps:
    settings: Settings
    uploads: SweepUploads
    publisher: EventPublisher
    store: MultipartAborter


def reissue(upload: Upload, publisher: EventPublisher) -> None:
    """Send the message that the upload's current stage waits for."""
    if upload.state is State.ASSEMBLING:
        publisher.publish(AssembleRequested(upload_id=upload.id, generation=upload.generation))
    else:  # queued, parsing or persisting: the parser reads the object again
        publisher.publish_event(replay_event(upload))


def sweep(deps: WatchdogDeps) -> list[Upload]:
    """One pass: expire the tickets that ran out, then re-issue the message of every stalled upload.

    Returns the uploads picked up.
    """
    for upload in deps.uploads.expire_tickets(timedelta(seconds=deps.settings.ticket_grace_seconds)):
        # An abandoned multipart upload's parts would stay in the bucket: they go with the ticket. A
        # failed abort is retried by hand (README); the expiry itself is already recorded.
        aborted = None
        if upload.multipart_upload_id is not None:
            try:
                aborted = deps.store.abort_multipart(upload.bucket, upload.key, upload.multipart_upload_id)
            except Exception:
                log.exception("could not abort the expired multipart upload", upload_id=str(upload.id))
        log.info(
            "ticket expired with no object written",
            upload_id=str(upload.id),
            generation=upload.generation,
            ticket_expired_at=upload.ticket_expires_at.isoformat() if upload.ticket_expires_at else None,
            multipart_aborted=aborted,
        )
    after = timedelta(seconds=deps.settings.stall_after_seconds)
    picked = deps.uploads.pick_up_stalled(after, lambda upload: reissue(upload, deps.publisher))
    metrics.STALLS.inc(len(picked))
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
