"""What ``genobase dead-letters`` does: show the dead-lettered messages and replay their uploads.

Replaying a dead letter means processing its upload again from its object: the failed upload is
set back to ``queued`` (its rows went when it failed) and a fresh object-created notification is
published for the parser. Whatever stage the message died in, the upload restarts from the top,
which is the one way to get a consistent result; the dead letter is removed once that is done.
Bodies are decoded by the same stage decoders the consumers use (``shared/stages.py``).
"""

from __future__ import annotations

import uuid

from shared.broker import DeadLetter, Publisher, list_dead_letters, take_dead_letters
from shared.events import replay_event
from shared.postgres.connection import Database
from shared.postgres.uploads import PostgresUploads
from shared.settings import Settings
from shared.stages import ASSEMBLE, PARSE, PERSIST, STAGE_NAMES, InvalidMessage

_DECODERS = {PARSE.name: PARSE.decode, PERSIST.name: PERSIST.decode, ASSEMBLE.name: ASSEMBLE.decode}


def upload_ids(letter: DeadLetter, uploads: PostgresUploads) -> list[uuid.UUID]:
    """The uploads a dead-lettered message belongs to (none for a message that never decoded)."""
    try:
        # Only to name the uploads (a replay starts them again from their objects, not from this body).
        message = _DECODERS[letter.stage](letter.body, from_pipeline=True)
    except InvalidMessage:
        return []
    if isinstance(message, list):  # a bucket notification: its objects' uploads
        found = (uploads.find(event.bucket, event.key) for event in message)
        return [upload.id for upload in found if upload is not None]
    return [message.upload_id]


def show(settings: Settings) -> list[tuple[DeadLetter, list[uuid.UUID]]]:
    uploads = PostgresUploads(Database(settings))
    try:
        return [
            (letter, upload_ids(letter, uploads))
            for stage in STAGE_NAMES
            for letter in list_dead_letters(settings, stage)
        ]
    finally:
        uploads.reset()


def replay(settings: Settings) -> tuple[int, list[uuid.UUID]]:
    """Replay every dead letter; returns how many were taken and which uploads were restarted."""
    restarted: list[uuid.UUID] = []
    publisher = Publisher(settings)
    uploads = PostgresUploads(Database(settings))

    def restart(letter: DeadLetter) -> None:
        for upload_id in upload_ids(letter, uploads):
            upload = uploads.requeue_failed(upload_id)
            if upload is None:
                continue  # not failed (any more): nothing to redo
            publisher.publish_event(replay_event(upload))
            restarted.append(upload_id)

    try:
        taken = sum(take_dead_letters(settings, stage, restart) for stage in STAGE_NAMES)
    finally:
        publisher.close()
        uploads.reset()
    return taken, restarted
