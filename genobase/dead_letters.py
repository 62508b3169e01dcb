"""What ``genobase dead-letters`` does: show the dead-lettered messages and replay their uploads.

Replaying a dead letter means processing its upload again from its object: the failed upload is
set back to ``queued`` (its rows went when it failed) and a fresh object-created notification is
published for the parser. Whatever stage the message died in, the upload restarts from the top,
which is the one way to get a consistent result; the dead letter is removed once that is done.
"""

from __future__ import annotations

import uuid

from pydantic import ValidationError

from shared import db
from shared.broker import STAGES, DeadLetter, Publisher, list_dead_letters, take_dead_letters
from shared.events import MalformedEvent, normalise_event
from shared.messages import AssembleRequested, decode_persist_message
from shared.settings import Settings


def upload_ids(letter: DeadLetter, conn: db.Connection) -> list[uuid.UUID]:
    """The uploads a dead-lettered message belongs to (none for a message that never parsed)."""
    try:
        if letter.stage == "parse":
            found = (db.find_upload(conn, e.bucket, e.key) for e in normalise_event(letter.body))
            return [u.id for u in found if u is not None]
        if letter.stage == "persist":
            return [decode_persist_message(letter.body).upload_id]
        return [AssembleRequested.model_validate_json(letter.body).upload_id]
    except (MalformedEvent, ValidationError):
        return []


def show(settings: Settings) -> list[tuple[DeadLetter, list[uuid.UUID]]]:
    with db.connect(settings, autocommit=True) as conn:
        return [(letter, upload_ids(letter, conn)) for stage in STAGES for letter in list_dead_letters(settings, stage)]


def replay(settings: Settings) -> tuple[int, list[uuid.UUID]]:
    """Replay every dead letter; returns how many were taken and which uploads were restarted."""
    restarted: list[uuid.UUID] = []
    publisher = Publisher(settings)
    with db.connect(settings, autocommit=True) as conn:

        def restart(letter: DeadLetter) -> None:
            for upload_id in upload_ids(letter, conn):
                upload = db.requeue_failed(conn, upload_id)
                if upload is None or upload.etag is None:
                    continue  # not failed (any more): nothing to redo
                publisher.publish_object_created(upload.bucket, upload.key, upload.bytes_total or 0, upload.etag)
                restarted.append(upload_id)

        try:
            taken = sum(take_dead_letters(settings, stage, restart) for stage in STAGES)
        finally:
            publisher.close()
    return taken, restarted
