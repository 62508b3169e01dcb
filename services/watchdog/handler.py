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

Last, it purges deleted uploads: ``DELETE /uploads/{id}`` removed their rows in the commit that
made them tombstones, and the store's part -- the multipart upload, the object, the result
documents -- is done here, by the one S3 user that may delete (shared/s3/users.py). The purge is
idempotent and marked done only after it, so a watchdog killed mid-purge does it again after its
restart; an object or a result written after a purge asks for another (``reopen_purge``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import structlog

from shared.domain.events import replay_event
from shared.domain.messages import AssembleRequested
from shared.domain.ports import EventPublisher, MultipartAborter, ObjectRemover, SweepUploads
from shared.domain.uploads import State, Upload, result_key, result_keys
from shared.runtime import metrics
from shared.runtime.failpoints import failpoint
from shared.runtime.settings import Settings

log = structlog.get_logger()


@dataclass
class WatchdogDeps:
    settings: Settings
    uploads: SweepUploads
    publisher: EventPublisher
    store: ObjectRemover


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


def purge(upload: Upload, store: ObjectRemover, results_bucket: str) -> None:
    """Remove what a deleted upload left in the store; each step is a no-op when already done.

    The multipart upload is aborted before the object is removed: a CompleteMultipartUpload racing
    the delete either lands first (and its object is removed) or finds no upload to complete.
    """
    if upload.multipart_upload_id is not None:
        store.abort_multipart(upload.bucket, upload.key, upload.multipart_upload_id)
    store.remove(upload.bucket, [upload.key])
    failpoint("watchdog.mid_purge")  # the object removed, the results not yet, nothing marked
    # An assembler killed mid-write leaves its unfinished multipart upload (only the current
    # generation's can be in flight: an older one's assembler abandons it).
    store.abort_stale_multipart(results_bucket, result_key(upload))
    store.remove(results_bucket, result_keys(upload))


def purge_deleted(deps: WatchdogDeps) -> list[Upload]:
    """Purge every deleted upload whose purge is owed; returns those purged. One that fails is
    logged and left to the next sweep."""
    purged = []
    for upload in deps.uploads.purges_owed():
        assert upload.purge_requested_at is not None  # set by the delete itself
        try:
            purge(upload, deps.store, deps.settings.results_bucket)
        except Exception:
            log.exception("could not purge a deleted upload; the next sweep tries again", upload_id=str(upload.id))
            continue
        marked = deps.uploads.mark_purged(upload.id, upload.purge_requested_at)
        log.info(
            "deleted upload purged",
            upload_id=str(upload.id),
            generation=upload.generation,
            again_owed=not marked,  # asked for again meanwhile: the next sweep purges once more
        )
        purged.append(upload)
    return purged


def sweep(deps: WatchdogDeps) -> list[Upload]:
    """One pass: end the tickets that ran out or whose owner was revoked, remove the objects of ended
    validations, re-issue the message of every stalled upload, then purge the deleted uploads.

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
    for upload in deps.uploads.remove_validated_objects(lambda upload: deps.store.remove(upload.bucket, [upload.key])):
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
    purge_deleted(deps)
    return picked
