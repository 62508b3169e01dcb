"""The reconciler's own cost at 10,000 objects, against the running stack (``genobase up``).

``python -m bench.reconcile [--objects 10000] [--walks 3]``

Fills a bucket of its own (``<uploads bucket>-bench-reconcile``, no notification wired, so the
pipeline never sees it) with small objects through the admin S3 client, then runs the reconciler's
passes on it exactly as the watchdog does (``services/watchdog/reconcile.py``) -- real listings on
the store, real queries on the uploads table -- with a publisher that only counts what it would
have started (every object, as no upload knows this bucket: the figures count requests, which do
not depend on what is started). Prints, beside their targets:

* requests per minute to the store and queries per minute to Postgres at the default schedule
  (a walk every ``walk_period``, a ticket pass every ``ticket_period``, no ticket awaiting);
* what each awaiting ticket adds (one listing request a ticket pass);
* how long a walk and a ticket pass take, against the share of the bound each may use.

Not a test: it asserts nothing. Its figures, with their targets, go to
docs/bench/reconcile-<objects>.json (bench/report.py).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import structlog

from bench.report import Figure, Target, run_name, write_figures
from services.watchdog.reconcile import ReconcileDeps, Reconciler
from shared.postgres.connection import Database
from shared.postgres.uploads import PostgresUploads
from shared.runtime.settings import Settings, get_settings
from shared.s3.store import ObjectStore

# Targets at 10,000 objects: per minute, at most (the store's and Postgres's share of the watchdog).
STORE_REQUESTS_PER_MINUTE, QUERIES_PER_MINUTE = 30.0, 60.0
BODY = b">bench\nACGT\n"


class CountingPublisher:
    """Counts the events the reconciler would publish; publishes nothing."""

    def __init__(self) -> None:
        self.events = 0

    def publish_event(self, body: bytes) -> None:
        self.events += 1


def fill(store: ObjectStore, bucket: str, objects: int) -> float:
    """The bucket holding ``objects`` small objects (those already there are kept); seconds spent."""
    store.ensure_bucket(bucket)
    present = 0
    after = ""
    while True:
        page, more = store.list_page(bucket, after, 1000)
        present += len(page)
        if not more or not page:
            break
        after = page[-1].key
    started = time.monotonic()
    missing = [f"owner-{n % 50:02}/object-{n:06}.fa" for n in range(present, objects)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: store.client.put_object(Bucket=bucket, Key=key, Body=BODY), missing))
    return time.monotonic() - started


def measure(settings: Settings, objects: int, walks: int) -> list[Figure]:
    # Every object here is "started" (no upload knows the bucket): one warning each is not the point.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    bucket = f"{settings.uploads_bucket}-bench-reconcile"
    store = ObjectStore(settings)
    filled = fill(store, bucket, objects)
    print(f"{objects} objects in {bucket} ({filled:.1f} s to fill)")
    own = settings.model_copy(update={"uploads_bucket": bucket})
    uploads = PostgresUploads(Database(own))
    publisher = CountingPublisher()
    reconciler = Reconciler(ReconcileDeps(own, uploads, store, publisher))
    schedule = reconciler.schedule
    walk_seconds, walk_requests, walk_queries = [], 0, 0
    for _ in range(walks):
        before = (reconciler.cost.store_requests, reconciler.cost.queries)
        started = time.monotonic()
        reconciler.walk()
        walk_seconds.append(time.monotonic() - started)
        walk_requests = reconciler.cost.store_requests - before[0]
        walk_queries = reconciler.cost.queries - before[1]
    ticket_seconds = []
    for _ in range(5):
        started = time.monotonic()
        reconciler.ticket_pass()
        ticket_seconds.append(time.monotonic() - started)
    uploads.reset()
    walks_per_minute = 60 / schedule.walk_period.total_seconds()
    passes_per_minute = 60 / schedule.ticket_period.total_seconds()
    store_per_minute = walk_requests * walks_per_minute
    queries_per_minute = walk_queries * walks_per_minute + passes_per_minute
    print(
        f"a walk: {walk_requests} listings, {walk_queries} queries, {statistics.median(walk_seconds):.2f} s; "
        f"{publisher.events // walks} objects it would start; schedule {schedule.describe()}"
    )
    label = f"{objects:,} objects"
    return [
        Figure(
            f"reconciler: store requests per minute, {label}, no ticket awaiting",
            store_per_minute,
            "req/min",
            Target("<=", STORE_REQUESTS_PER_MINUTE),
        ),
        Figure(
            f"reconciler: Postgres queries per minute, {label}",
            queries_per_minute,
            "queries/min",
            Target("<=", QUERIES_PER_MINUTE),
        ),
        Figure("reconciler: store requests per minute per awaiting ticket", passes_per_minute, "req/min"),
        Figure(
            f"reconciler: one walk over {label} (median of {walks})",
            statistics.median(walk_seconds),
            "s",
            Target("<=", schedule.walk_period.total_seconds()),
        ),
        Figure(
            "reconciler: one ticket pass, no ticket awaiting (median of 5)",
            statistics.median(ticket_seconds),
            "s",
            Target("<=", schedule.ticket_period.total_seconds()),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--walks", type=int, default=3)
    args = parser.parse_args()
    figures = measure(get_settings(), args.objects, args.walks)
    for figure in figures:
        document = figure.as_json()
        print(f"{document['name']}: {document['value']} {document['unit']}  (target {document.get('target', '-')})")
    write_figures(run_name("reconcile", str(args.objects)), figures)


if __name__ == "__main__":
    main()
