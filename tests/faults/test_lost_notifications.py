"""No upload waits forever on a late or lost notification: the reconciler (in the watchdog) starts it.

Against the running stack:

* the uploads bucket's notification configuration removed (put back after): a ticket's upload
  still starts within the 10 s bound and ends done, and an object written straight with an owner's
  own S3 keys ends done within the walk's bound (shortened here to 20 s; the 2-minute default is
  held by tests/unit/test_reconcile.py);
* the parse queue purged right after the uploads, the real events with it: each still ends done
  once, generation 1, its records stored once;
* the real event held back and delivered after the reconciler started its upload: no second
  generation, no record twice.

The module runs the pipeline's watchdog with the shorter walk bound and gives it back its own
settings at the end.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from botocore.config import Config

from shared.rabbitmq.broker import Publisher, connect
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.conftest import Pipeline
from tests.faults.conftest import FaultLedger
from tests.helpers import assert_exact_result, generated_fasta, ready_messages
from tests.reference import fasta_records
from tests.security.helpers import keys_cli, make_s3_owner, s3_as
from tests.stack import NativeProvider, StackProvider

pytestmark = pytest.mark.e2e
TICKETS_WITHIN = 10.0  # the default bound, kept by the pipeline's watchdog here
OBJECTS_WITHIN = 20.0  # the walk's bound for this module (the default, 120 s, is a unit test's)
POLL_SLACK = 2.0  # the status is polled; the watchdog's loop wakes when a pass is due


@pytest.fixture(scope="module")
def reconciling(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The pipeline's watchdog with the shorter walk bound and repeat period, for this module only."""
    pipeline.processes.stop("watchdog")
    shorter = {
        "GENOBASE_RECONCILE_OBJECTS_WITHIN_SECONDS": str(OBJECTS_WITHIN),
        # an announcement purged with the queue (test b) is made again within seconds, not a minute
        "GENOBASE_RECONCILE_REPEAT_SECONDS": "5",
    }
    pipeline.processes.start("watchdog", shorter)
    try:
        yield pipeline
    finally:
        pipeline.processes.stop("watchdog")
        pipeline.processes.start("watchdog")


@pytest.fixture(scope="module")
def owner(pipeline: Pipeline, settings: Settings) -> Iterator[dict[str, str]]:
    made = make_s3_owner(settings, f"lost-{uuid.uuid4().hex[:8]}")
    yield made
    keys_cli(settings, "revoke", made["name"])


@contextlib.contextmanager
def notifications_removed(stack_provider: StackProvider, settings: Settings) -> Iterator[None]:
    """The uploads bucket without its notification configuration; the saved one is put back after."""
    if not isinstance(stack_provider, NativeProvider):
        pytest.skip("the notification wiring is changed through the native stack's wiring gateway")

    def admin(endpoint: str) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=settings.s3_access_key.get_secret_value(),
            aws_secret_access_key=settings.s3_secret_key.get_secret_value(),
            region_name=settings.s3_region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    bucket = settings.uploads_bucket
    with stack_provider.wiring_gateway() as endpoint:
        s3 = admin(endpoint)
        saved = s3.get_bucket_notification_configuration(Bucket=bucket)
        saved.pop("ResponseMetadata", None)
        assert saved.get("TopicConfigurations"), saved
        # RGW refuses an empty configuration (MalformedXML) and boto3 has no call for its DELETE
        # extension: the same notification (same id, so it is replaced) filtered to no key at all.
        silenced = [
            {**topic, "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "no-such-prefix/"}]}}}
            for topic in saved["TopicConfigurations"]
        ]
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"TopicConfigurations": silenced}
        )
    try:
        yield
    finally:
        with stack_provider.wiring_gateway() as endpoint:
            admin(endpoint).put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=saved)


def started_within(pipeline: Pipeline, upload_id: str, since: float, bound: float) -> float:
    """Seconds from ``since`` until the upload left ``awaiting_upload``; fails past the bound."""

    def started() -> bool:
        return pipeline.status(upload_id)["state"] != "awaiting_upload"

    poll_until(
        started, timeout=bound + POLL_SLACK, interval=0.2, what="the ticket's upload started", describe=pipeline.logs
    )
    return time.monotonic() - since


def reconciled(pipeline: Pipeline, key: str, kind: str) -> bool:
    """The watchdog's log says it started the object at ``key`` (and of which kind)."""
    log = pipeline.processes.log_file("watchdog").read_text()
    return any(
        "upload started without its notification" in line and f'"key": "{key}"' in line and f'"kind": "{kind}"' in line
        for line in log.splitlines()
    )


def records_in(data: bytes) -> int:
    return len(fasta_records(data))


def generation_and_rows(settings: Settings, upload_id: str) -> tuple[int, int]:
    """The upload's generation and its stored records (assert_exact_result has compared them with
    the input: each record once)."""
    with psycopg.connect(settings.pg_dsn.get_secret_value()) as conn:
        row = conn.execute(
            "SELECT u.generation, (SELECT count(*) FROM sequence_records r WHERE r.upload_id = u.id) "
            "FROM uploads u WHERE u.id = %s",
            (upload_id,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_with_the_notification_removed_uploads_still_start_within_their_bounds(
    reconciling: Pipeline,
    settings: Settings,
    stack_provider: StackProvider,
    owner: dict[str, str],
    ledger: FaultLedger,
) -> None:
    pipeline = reconciling
    fault = "bucket notification configuration removed"
    ledger.inject(fault)
    data = generated_fasta(8, seed=71)
    direct_data = generated_fasta(6, seed=72)
    direct_key = f"{owner['name']}/direct-{uuid.uuid4().hex[:8]}.fa"
    with notifications_removed(stack_provider, settings):
        ticket = ledger.upload(pipeline, "no-notification.fa", data, "done", records_in(data))
        put_at = time.monotonic()
        s3_as(settings, owner["access"], owner["secret"]).put_object(
            Bucket=settings.uploads_bucket, Key=direct_key, Body=direct_data
        )
        direct_at = time.monotonic()
        waited = started_within(pipeline, ticket["id"], put_at, TICKETS_WITHIN)
        assert waited <= TICKETS_WITHIN + POLL_SLACK, waited
        direct = pipeline.wait_for_object(settings.uploads_bucket, direct_key, timeout=OBJECTS_WITHIN + 60)
        direct_waited = time.monotonic() - direct_at
    assert_exact_result(pipeline, settings, ticket["id"], data)
    assert direct["state"] == "done", pipeline.logs()
    ledger.attempt(direct["id"], "done", records_in(direct_data))
    assert_exact_result(pipeline, settings, direct["id"], direct_data)
    assert reconciled(pipeline, ticket["key"], "registered")
    assert reconciled(pipeline, direct_key, "unregistered")
    print(f"\nticket started {waited:.1f} s after its PUT; direct object done {direct_waited:.1f} s after its PUT")
    ledger.survive(fault)


def test_events_purged_right_after_the_uploads_still_finish_exactly_once(
    reconciling: Pipeline, settings: Settings, owner: dict[str, str], ledger: FaultLedger
) -> None:
    pipeline = reconciling
    fault = "parse queue purged with the uploads' events in it"
    ledger.inject(fault)
    queue = settings.queue("parse")
    pipeline.processes.stop("parser")
    try:
        inputs = [generated_fasta(6, seed=80 + n) for n in range(3)]
        tickets = [ledger.upload(pipeline, f"purged-{n}.fa", d, "done", records_in(d)) for n, d in enumerate(inputs)]
        direct_data = generated_fasta(6, seed=85)
        direct_key = f"{owner['name']}/purged-{uuid.uuid4().hex[:8]}.fa"
        s3_as(settings, owner["access"], owner["secret"]).put_object(
            Bucket=settings.uploads_bucket, Key=direct_key, Body=direct_data
        )
        expected = len(tickets) + 1
        poll_until(
            lambda: ready_messages(settings, queue) >= expected, timeout=60, interval=0.1, what="the events queued"
        )
        connection = connect(settings)
        try:
            purged = connection.channel().queue_purge(queue).method.message_count
        finally:
            connection.close()
        assert purged >= expected
    finally:
        pipeline.start_consuming("parser")
    for ticket, data in zip(tickets, inputs, strict=True):
        assert_exact_result(pipeline, settings, ticket["id"], data)
        assert generation_and_rows(settings, ticket["id"]) == (1, records_in(data))
    direct = pipeline.wait_for_object(settings.uploads_bucket, direct_key, timeout=OBJECTS_WITHIN + 60)
    ledger.attempt(direct["id"], "done", records_in(direct_data))
    assert_exact_result(pipeline, settings, direct["id"], direct_data)
    assert generation_and_rows(settings, direct["id"]) == (1, records_in(direct_data))
    assert reconciled(pipeline, direct_key, "unregistered")
    ledger.survive(fault)


def test_the_real_event_arriving_after_the_reconciler_changes_nothing(
    reconciling: Pipeline, settings: Settings, ledger: FaultLedger
) -> None:
    pipeline = reconciling
    fault = "the real notification delivered late"
    ledger.inject(fault)
    queue = settings.queue("parse")
    data = generated_fasta(6, seed=91)
    pipeline.processes.stop("parser")
    try:
        ticket = ledger.upload(pipeline, "late-event.fa", data, "done", records_in(data))
        # Hold the store's own event back: taken off the queue, kept, delivered after the upload is done.
        connection = connect(settings)
        try:
            channel = connection.channel()

            def taken() -> bytes | None:
                method, _, body = channel.basic_get(queue, auto_ack=True)
                return body if method is not None else None

            held = poll_until(taken, timeout=60, interval=0.1, what="the store's event on the parse queue")
        finally:
            connection.close()
        assert ticket["key"].encode() in held
    finally:
        pipeline.start_consuming("parser")
    assert_exact_result(pipeline, settings, ticket["id"], data)
    assert reconciled(pipeline, ticket["key"], "registered")
    publisher = Publisher(settings)
    try:
        publisher.publish_event(held)
    finally:
        publisher.close()
    poll_until(lambda: ready_messages(settings, queue) == 0, timeout=30, interval=0.2, what="the late event consumed")
    time.sleep(1)  # its handling acknowledged: nothing more to come from it
    assert generation_and_rows(settings, ticket["id"]) == (1, records_in(data))
    assert pipeline.status(ticket["id"])["state"] == "done"
    ledger.survive(fault)
