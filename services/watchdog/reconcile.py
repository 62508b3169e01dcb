"""The reconciler: uploads whose notification is late or lost are started from what the store shows.

It runs in the watchdog's process, beside its sweep, and does two passes (the decisions are pure,
in ``shared/domain/reconcile.py``, which also says why):

* the **ticket pass**, every ``ReconcileSchedule.ticket_period``: a batch of registered uploads
  still awaiting their object (a rotation by id over them all), each looked up by a one-key
  listing; those whose object exists past the grace are started.
* the **walk**, one every ``walk_period``: the uploads bucket's listing, page by page (a few pages
  a step, a step a second, so that a large bucket never holds up the ticket pass), each page
  compared with the uploads table in one query; objects that no upload knows, or whose etag it
  does not know, are started.

"Started" means: an object-created event built from the listing is published on the events
exchange, as the store would have. The parser checks it as any other -- a HEAD with its own user
must show the etag, the generation rules apply, the claim dedupes bucket + key + etag -- so a
synthetic event gives no right a real one does not, and the real one arriving later does nothing
twice. The reconciler's S3 user lists the uploads bucket and reads no object (shared/s3/users.py).

Its place in a walk is kept in memory, not in Postgres: a step reads up to 10,000 objects (about a
second on these machines), a walk of a 10,000-object bucket is one step, and a restarted watchdog
starts a new walk at once, which costs one walk and keeps the bound for buckets up to ~580,000
objects at the defaults. What it announced lately is kept in memory too (a restart may announce an
object once more: the parser's claim makes that harmless).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from shared.domain.events import reconcile_event
from shared.domain.ports import NotificationPublisher, ObjectLister, ReconcileUploads
from shared.domain.reconcile import (
    ListedObject,
    ReconcileSchedule,
    ToStart,
    objects_to_start,
    tickets_to_start,
    worth_a_look,
)
from shared.runtime import metrics
from shared.runtime.settings import Settings

log = structlog.get_logger()
# While a walk is under way, its next step this long after the last one.
WALK_STEP = timedelta(seconds=1)


@dataclass
class ReconcileDeps:
    settings: Settings
    uploads: ReconcileUploads
    store: ObjectLister
    publisher: NotificationPublisher


@dataclass
class Cost:
    """What the reconciler has asked of the store and of Postgres, and how many it started."""

    store_requests: int = 0
    queries: int = 0
    started: dict[str, int] = field(default_factory=dict)


def schedule_of(settings: Settings) -> ReconcileSchedule:
    return ReconcileSchedule(
        tickets_within=timedelta(seconds=settings.reconcile_tickets_within_seconds),
        objects_within=timedelta(seconds=settings.reconcile_objects_within_seconds),
        grace=timedelta(seconds=settings.reconcile_grace_seconds),
    )


class Reconciler:
    """The two passes and when each is due; ``run_due`` is called from the watchdog's loop."""

    def __init__(
        self,
        deps: ReconcileDeps,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deps = deps
        self.schedule = schedule_of(deps.settings)
        self.cost = Cost()
        self._clock = clock
        self._monotonic = monotonic
        self._tickets_after: uuid.UUID | None = None  # the rotation's place among awaiting tickets
        self._walk_after: str | None = None  # the last key of the walk under way; None: no walk
        self._next_tickets = 0.0
        self._next_walk = 0.0  # when the next walk starts
        self._next_step = 0.0  # when the walk under way takes its next step
        # (key, etag) -> when it was announced: not again before ``reconcile_repeat_seconds``.
        self._announced: dict[tuple[str, str], float] = {}

    @property
    def bucket(self) -> str:
        return self.deps.settings.uploads_bucket

    def run_due(self) -> float:
        """Run each pass that is due; returns the ``monotonic`` time the next one is."""
        now = self._monotonic()
        if now >= self._next_tickets:
            self._next_tickets = now + self.schedule.ticket_period.total_seconds()
            self.ticket_pass()
        if self._walk_after is None and now >= self._next_walk:
            self._walk_after = ""
            self._next_walk = now + self.schedule.walk_period.total_seconds()
        if self._walk_after is not None and now >= self._next_step:
            self._next_step = now + WALK_STEP.total_seconds()
            self.walk_step()
        due = [self._next_tickets, self._next_step if self._walk_after is not None else self._next_walk]
        return min(due)

    def ticket_pass(self) -> list[ToStart]:
        """One batch of the registered uploads awaiting their object; starts those whose object exists."""
        settings = self.deps.settings
        batch = self.deps.uploads.awaiting_objects(self.bucket, self._tickets_after, settings.reconcile_ticket_batch)
        self._count(queries=1, which="tickets")
        self._tickets_after = batch[-1].id if len(batch) >= settings.reconcile_ticket_batch else None
        now, grace = self._clock(), self.schedule.grace
        found: dict[str, ListedObject] = {}
        for ticket in worth_a_look(batch, now, grace):
            listed = self.deps.store.listed_object(self.bucket, ticket.key)
            self._count(store_requests=1, which="tickets")
            if listed is not None:
                found[ticket.key] = listed
        return self._start(tickets_to_start(batch, found, now, grace))

    def walk_step(self) -> list[ToStart]:
        """Up to ``reconcile_pages_per_step`` pages of the walk under way (a new walk if none is)."""
        settings = self.deps.settings
        if self._walk_after is None:
            self._walk_after = ""
        started: list[ToStart] = []
        for _ in range(settings.reconcile_pages_per_step):
            page, more = self.deps.store.list_page(self.bucket, self._walk_after, settings.reconcile_page_keys)
            self._count(store_requests=1, which="walk")
            if page:
                known = self.deps.uploads.known_objects(self.bucket, [listed.key for listed in page])
                self._count(queries=1, which="walk")
                started += self._start(objects_to_start(page, known, self._clock(), self.schedule.grace))
                self._walk_after = page[-1].key
            if not more:
                self._walk_after = None  # the walk is over; the next starts on its schedule
                break
        return started

    def walk(self) -> list[ToStart]:
        """A whole walk at once (tests and the benchmark; the service steps through it)."""
        self._walk_after = None
        started = self.walk_step()
        while self._walk_after is not None:
            started += self.walk_step()
        return started

    def _not_announced_lately(self, starts: list[ToStart]) -> list[ToStart]:
        """The starts not announced within the repeat period; the others wait their turn.

        An event that sits in a backed-up parse queue keeps its upload unclaimed: without this,
        every pass would queue another copy behind it. One that was lost (a purged queue) is
        announced again after the period. Forgotten entries keep the memory bounded.
        """
        now = self._monotonic()
        repeat = self.deps.settings.reconcile_repeat_seconds
        self._announced = {k: at for k, at in self._announced.items() if now - at < repeat}
        return [s for s in starts if (s.listed.key, s.listed.etag) not in self._announced]

    def _start(self, starts: list[ToStart]) -> list[ToStart]:
        starts = self._not_announced_lately(starts)
        for start in starts:
            self.deps.publisher.publish_event(reconcile_event(self.bucket, start.listed))
            self._announced[(start.listed.key, start.listed.etag)] = self._monotonic()
            metrics.RECONCILER_STARTED.labels(start.kind.value).inc()
            self.cost.started[start.kind.value] = self.cost.started.get(start.kind.value, 0) + 1
            upload = start.upload
            log.warning(
                "upload started without its notification",
                kind=start.kind.value,
                upload_id=str(upload.id) if upload else None,
                # the generation the event starts (the parser's claim decides; a new object: 1)
                generation=upload.generation + 1 if upload else 1,
                bucket=self.bucket,
                key=start.listed.key,
                etag=start.listed.etag,
                written_at=start.listed.last_modified.isoformat(),
            )
        return starts

    def _count(self, *, which: str, store_requests: int = 0, queries: int = 0) -> None:
        self.cost.store_requests += store_requests
        self.cost.queries += queries
        if store_requests:
            metrics.RECONCILER_REQUESTS.labels("store", which).inc(store_requests)
        if queries:
            metrics.RECONCILER_REQUESTS.labels("postgres", which).inc(queries)
