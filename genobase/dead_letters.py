"""What ``genobase dead-letters`` does: show the dead-lettered messages and replay their uploads.

Replaying a dead letter means processing its upload again from its object: the failed upload is
set back to ``queued`` (its rows went when it failed) and a fresh object-created notification is
published for the parser. Whatever stage the message died in, the upload restarts from the top,
which is the one way to get a consistent result; the dead letter is removed once that is done.

A dead letter is untrusted input, like any message: the events exchange is writable by the object
store's broker user. Each one is checked again as if it had just arrived (``replayable``): one the
consumer refused on arrival is never replayed, and the rest must pass the stage's size limit and
its decoder, with the origin the broker recorded (a shard request counts only if the broker says
it was published on the pipeline exchange). What a replay publishes is built from the upload's row,
not from the letter, and goes through the parser's full checks against the store.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import structlog

from shared.domain.events import replay_event
from shared.domain.stages import STAGE_NAMES, STAGES
from shared.postgres.connection import Database
from shared.postgres.uploads import PostgresUploads
from shared.rabbitmq.broker import DeadLetter, Publisher, list_dead_letters, take_dead_letters
from shared.runtime.settings import Settings

log = structlog.get_logger()


def replayable(letter: DeadLetter, settings: Settings) -> object | None:
    """The letter's message, checked as the stage's consumer checks a delivery; None if it fails."""
    stage = STAGES.get(letter.stage)
    if stage is None or letter.refused is not None:
        return None
    if len(letter.body) > stage.max_body_bytes(settings):
        return None
    try:
        message: object = stage.decode(letter.body, from_pipeline=letter.origin == settings.pipeline_exchange)
        return message
    except Exception:
        return None


def upload_ids(letter: DeadLetter, uploads: PostgresUploads, settings: Settings) -> list[uuid.UUID]:
    """The uploads a dead-lettered message belongs to (none for one that fails the checks)."""
    # Only to name the uploads (a replay starts them again from their objects, not from this body).
    message = replayable(letter, settings)
    if message is None:
        return []
    if isinstance(message, list):  # a bucket notification: its objects' uploads
        found = (uploads.find(event.bucket, event.key) for event in message)
        return [upload.id for upload in found if upload is not None]
    upload_id = getattr(message, "upload_id", None)
    return [upload_id] if isinstance(upload_id, uuid.UUID) else []


def show(settings: Settings) -> list[tuple[DeadLetter, list[uuid.UUID]]]:
    uploads = PostgresUploads(Database(settings))
    try:
        return [
            (letter, upload_ids(letter, uploads, settings))
            for stage in STAGE_NAMES
            for letter in list_dead_letters(settings, stage)
        ]
    finally:
        uploads.reset()


@dataclass
class Replay:
    """What a replay did: letters taken off the queues, uploads restarted, letters refused."""

    taken: int = 0
    restarted: list[uuid.UUID] = field(default_factory=list)
    refused: list[DeadLetter] = field(default_factory=list)


def replay_all(settings: Settings) -> Replay:
    """Replay every dead letter that passes the checks; the others are taken off and reported.

    A refused letter can never become a message of its queue, so keeping it would only show it again.
    """
    done = Replay()
    publisher = Publisher(settings)
    uploads = PostgresUploads(Database(settings))

    def restart(letter: DeadLetter) -> None:
        if replayable(letter, settings) is None:
            log.warning("dead letter refused on replay", stage=letter.stage, reason=letter.reason)
            done.refused.append(letter)
            return
        for upload_id in upload_ids(letter, uploads, settings):
            upload = uploads.requeue_failed(upload_id)
            if upload is None:
                continue  # not failed (any more): nothing to redo
            publisher.publish_event(replay_event(upload))
            done.restarted.append(upload_id)

    try:
        done.taken = sum(take_dead_letters(settings, stage, restart) for stage in STAGE_NAMES)
    finally:
        publisher.close()
        uploads.reset()
    return done


def replay(settings: Settings) -> tuple[int, list[uuid.UUID]]:
    """Replay every dead letter; returns how many were taken and which uploads were restarted."""
    done = replay_all(settings)
    return done.taken, done.restarted
