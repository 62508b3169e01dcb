"""Watchdog: find uploads whose stage stopped moving and issue that stage's message again.

It also removes the objects of validated uploads (``mode: validate``) once their parse ended: the
parser, which reads untrusted input, may delete nothing. And it ends registered uploads whose
ticket ran out with no object written (``expired``), so that an abandoned registration does not
wait in ``awaiting_upload`` forever, and those of an owner whose keys were revoked (``revoked``):
their multipart uploads are aborted, so that no part of a revoked ticket can still be completed
into an object.

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

from shared.domain.events import replay_event
from shared.domain.messages import AssembleRequested
from shared.domain.ports import EventPublisher, MultipartAborter, SweepUploads, WatchdogObjects
from shared.domain.uploads import State, Upload
from shared.runtime import metrics
from shared.runtime.settings import Settings

log = structlog.get_logger()


@dataclass
class WatchdogDeps:
    settings: Settings
    uploads: SweepUploads
    publisher: EventPublisher
    store: WatchdogObjects


def reissue(upload: Upload, publisher: EventPublisher) -> None:
    """Send the message that the upload's current stage waits for."""
    if upload.state is State.ASSEMBLING:
        publisher.publish(AssembleRequested(upload_id=upload.id, generation=upload.generation))
    else:  # queued, parsing or persisting: the parser reads the object again
        publisher.publish_event(replay_event(upload))


def _abort_multipart(upload: Upload, store: MultipartAborter) -> bool | None:
    """Abort the ended ticket's multipart upload, if it had one: its parts would stay in the bucket,
    and a revoked owner could still complete it. A failed abort is logged (multipart_aborted=false) for an operator; the
    ticket's end is already recorded. None: no multipart upload."""
    if upload.multipart_upload_id is None:
        return None
    try:
        return store.abort_multipart(upload.bucket, upload.key, upload.multipart_upload_id)
    except Exception:
        log.exception("could not abort the ended ticket's multipart upload", upload_id=str(upload.id))
        return False


def sweep(deps: WatchdogDeps) -> list[Upload]:
    """One pass: end the tickets that ran out or whose owner was revoked, remove the objects of ended
    validations, then re-issue the message of every stalled upload.

    Returns the uploads picked up.
    """
    for upload in deps.uploads.expire_tickets(timedelta(seconds=deps.settings.ticket_grace_seconds)):
        log.info(
            "ticket expired with no object written",
            upload_id=str(upload.id),
            generation=upload.generation,
            ticket_expired_at=upload.ticket_expires_at.isoformat() if upload.ticket_expires_at else None,
            multipart_aborted=_abort_multipart(upload, deps.store),
        )
    for upload in deps.uploads.revoke_tickets():
        log.info(
            "ticket of a revoked owner ended",
            upload_id=str(upload.id),
            owner=upload.owner,
            error_id=upload.error_id,
            multipart_aborted=_abort_multipart(upload, deps.store),
        )
    for upload in deps.uploads.remove_validated_objects(
        lambda upload: deps.store.delete_object(upload.bucket, upload.key)
    ):
        log.info(
            "validated upload's object removed",
            upload_id=str(upload.id),
            generation=upload.generation,
            state=upload.state.value,
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
