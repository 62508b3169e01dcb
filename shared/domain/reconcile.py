"""What the reconciler starts: the pure decisions behind "no upload waits forever on a notification".

Bucket notifications stay the trigger, but a notification can be late (an RGW persistent topic
held for 90 s by a dead gateway's lock) or lost (a purged queue, a notification configuration
removed by mistake). The reconciler (``services/watchdog/reconcile.py``) compares what the store
shows with what the uploads table knows and, for each object that should have started an upload
and did not, publishes an object-created event built from the listing -- the same shape the parser
takes from the store -- so that the parser's checks (HEAD confirms the etag, the generation rules,
the claim's dedup on bucket + key + etag) decide as for the real one. A real notification arriving
later finds the claim made and does nothing twice.

Two kinds, two bounds (``ReconcileSchedule``):

* **registered**: an upload registered through the intake, its ticket issued and no object seen
  (``awaiting_upload``, no etag), whose object now exists. Looked up one by one (a listing from
  the key, batch-bounded), every few seconds.
* **unregistered**: an object written straight to the bucket with an owner's own S3 keys that no
  upload knows, or an overwrite whose new etag no upload knows. Found by walking the bucket's
  listing page by page and comparing each page with the uploads table in one query.

An object younger than the grace is left to its notification, which normally comes within a
second: the reconciler is the safety net, not a second trigger.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.domain.uploads import State, Upload


class StartKind(StrEnum):
    """Why the reconciler started an upload (the ``kind`` label of its metric)."""

    REGISTERED = "registered"  # a ticket's object, its notification late or lost
    UNREGISTERED = "unregistered"  # an object (or an etag) no upload knows


@dataclass(frozen=True)
class ListedObject:
    """An object as a bucket listing shows it: what a synthetic event is built from.

    ``last_modified`` is the store's time of the write: the event carries it as its time, so that a
    genuine event of a later overwrite is never judged older than the synthetic one.
    """

    key: str
    etag: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class ToStart:
    """An object to announce to the parser, and the upload it belongs to, if any."""

    kind: StartKind
    listed: ListedObject
    upload: Upload | None


@dataclass(frozen=True)
class ReconcileSchedule:
    """How often each pass runs so that its bound holds, derived from the bounds and the grace.

    Worst case for an object: written just after a pass saw nothing, it is old enough after the
    grace, and the next pass that starts after that finds it; that pass must end within the bound.
    Half of what the bound leaves after the grace is the period, the other half the time a pass
    (or a walk over the bucket) may take: ``grace + period + pass <= within``.
    """

    tickets_within: timedelta
    objects_within: timedelta
    grace: timedelta

    def __post_init__(self) -> None:
        if self.grace < timedelta(0):
            raise ValueError("the reconciler's grace cannot be negative")
        for within in (self.tickets_within, self.objects_within):
            if within <= self.grace:
                raise ValueError(f"a bound of {within} leaves nothing after a grace of {self.grace}")

    @property
    def ticket_period(self) -> timedelta:
        return (self.tickets_within - self.grace) / 2

    @property
    def walk_period(self) -> timedelta:
        return (self.objects_within - self.grace) / 2

    def describe(self) -> dict[str, float]:
        """The periods in seconds, for the watchdog's start-up line."""
        return {
            "tickets_within": self.tickets_within.total_seconds(),
            "objects_within": self.objects_within.total_seconds(),
            "grace": self.grace.total_seconds(),
            "ticket_period": self.ticket_period.total_seconds(),
            "walk_period": self.walk_period.total_seconds(),
        }

    def walk_pages_within_bound(self, pages_per_step: int, step: timedelta) -> int:
        """How many listing pages a walk may have and still end within its share of the bound."""
        return int(self.walk_period / step) * pages_per_step


def old_enough(listed: ListedObject, now: datetime, grace: timedelta) -> bool:
    """Past the grace: its notification, if it works, has had its chance."""
    return now - listed.last_modified >= grace


def awaiting_object(upload: Upload) -> bool:
    """A registered upload whose ticket is out and whose object was never seen (part 1's kind)."""
    return upload.registered and upload.state is State.AWAITING_UPLOAD and upload.etag is None


def worth_a_look(tickets: Iterable[Upload], now: datetime, grace: timedelta) -> list[Upload]:
    """The tickets whose object could be past the grace: an object is written after its
    registration, so a ticket registered within the grace is not asked about (a request saved)."""
    return [ticket for ticket in tickets if awaiting_object(ticket) and now - ticket.created_at >= grace]


def tickets_to_start(
    tickets: Iterable[Upload], found: Mapping[str, ListedObject], now: datetime, grace: timedelta
) -> list[ToStart]:
    """Registered uploads still awaiting their object whose object the store shows (``found``, by
    key) past the grace. A ticket whose upload moved on meanwhile is left alone: its event came."""
    return [
        ToStart(StartKind.REGISTERED, listed, ticket)
        for ticket in tickets
        if awaiting_object(ticket) and (listed := found.get(ticket.key)) is not None and old_enough(listed, now, grace)
    ]


def object_to_start(listed: ListedObject, upload: Upload | None, now: datetime, grace: timedelta) -> ToStart | None:
    """Whether a listed object should have started an upload and did not.

    Left alone: an object within the grace; one whose upload knows its etag (processed, being
    processed, failed, a validation's object not removed yet: the event did its work); a ticket's
    object still registered (the ticket pass starts those, within the shorter bound); any object
    at the key of a deleted upload (the tombstone stays: nothing is resurrected, and the purge
    removes what is there).
    """
    if not old_enough(listed, now, grace):
        return None
    if upload is None:
        return ToStart(StartKind.UNREGISTERED, listed, None)
    if upload.state is State.DELETED or upload.etag == listed.etag or awaiting_object(upload):
        return None
    return ToStart(StartKind.UNREGISTERED, listed, upload)


def objects_to_start(
    page: Sequence[ListedObject], known: Mapping[str, Upload], now: datetime, grace: timedelta
) -> list[ToStart]:
    """``object_to_start`` over one listing page, ``known`` the uploads of its keys by key."""
    return [start for listed in page if (start := object_to_start(listed, known.get(listed.key), now, grace))]
