"""Infrastructure outages in the middle of an upload: the services ride them out and finish.

RabbitMQ stopped and started while batches are in flight (and a file arriving meanwhile), Postgres
restarted while the persister is in a ``COPY``, the S3 endpoint answering nothing for 30 s while
the parser reads ranges. Every result is checked record by record, and no service may have died:
each one reconnects with backoff and keeps its place.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.conftest import Pipeline
from tests.faults.conftest import FaultLedger
from tests.helpers import assert_exact_result, many_records, record_count, wait_until
from tests.stack import StackProvider

pytestmark = pytest.mark.e2e


def parsing_with_progress(status: dict[str, object]) -> bool:
    progress = status["progress"]
    assert isinstance(progress, dict)
    return status["state"] == "parsing" and progress["records_done"] > 0


def upload_and_wait_for_parsing(pipeline: Pipeline, ledger: FaultLedger, name: str, seed: int) -> tuple[bytes, str]:
    """A 60 MB upload, returned once its first batches are stored (the moment to inject a fault)."""
    data = many_records(60, seed=seed)
    ticket = ledger.upload(pipeline, name, data, "done", record_count(data))
    wait_until(pipeline, ticket["id"], parsing_with_progress)
    return data, ticket["id"]


def test_broker_restarted_while_batches_are_in_flight(
    pipeline: Pipeline, settings: Settings, stack_provider: StackProvider, ledger: FaultLedger
) -> None:
    before = pipeline.pids()
    data, upload_id = upload_and_wait_for_parsing(pipeline, ledger, "broker-restart.fasta", 21)
    ledger.inject("RabbitMQ stopped mid-upload, started 10 s later")
    stack_provider.stop_broker()
    try:
        # A file that lands while the broker is down: the object store keeps its event (RGW's
        # persistent topic, MinIO's queue_dir) and delivers it once the broker is back.
        late = many_records(2, seed=22)
        late_ticket = ledger.upload(pipeline, "while-broker-down.fasta", late, "done", record_count(late))
        ledger.inject("file uploaded while RabbitMQ was down")
        time.sleep(10)
    finally:
        stack_provider.start_broker()
    assert_exact_result(pipeline, settings, upload_id, data)
    ledger.survive("RabbitMQ stopped mid-upload, started 10 s later")
    assert_exact_result(pipeline, settings, late_ticket["id"], late)
    ledger.survive("file uploaded while RabbitMQ was down")
    assert pipeline.pids() == before  # reconnected, not restarted


def copy_running(settings: Settings) -> bool:
    """Whether the persister is in a COPY (seen as the run's owner: another role's query is hidden)."""
    with psycopg.connect(settings.pg_migration_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
            "AND query ~ '^COPY \"?sequence_(records|parts)\"? .* FROM STDIN'"
        ).fetchone()
    return bool(row and row[0])


def test_postgres_restarted_during_copy(
    pipeline: Pipeline, settings: Settings, stack_provider: StackProvider, ledger: FaultLedger
) -> None:
    before = pipeline.pids()
    data, upload_id = upload_and_wait_for_parsing(pipeline, ledger, "postgres-restart.fasta", 23)
    poll_until(lambda: copy_running(settings), timeout=60, interval=0.01, what="the persister in a COPY")
    how = stack_provider.restart_database()
    fault = f"Postgres {'restarted' if how == 'restart' else how} during a COPY"
    ledger.inject(fault)
    assert_exact_result(pipeline, settings, upload_id, data)
    ledger.survive(fault)
    assert pipeline.pids() == before


def test_object_store_unreachable_for_30_s_during_ranged_reads(
    pipeline: Pipeline, settings: Settings, stack_provider: StackProvider, ledger: FaultLedger
) -> None:
    before = pipeline.pids()
    data, upload_id = upload_and_wait_for_parsing(pipeline, ledger, "s3-outage.fasta", 24)
    fault = "S3 endpoint unresponsive for 30 s mid-read"
    ledger.inject(fault)
    stack_provider.freeze_object_store()
    try:
        time.sleep(30)
        during = pipeline.status(upload_id)
    finally:
        stack_provider.thaw_object_store()
    # The outage hit the read: the upload was neither finished nor given up when the store came back.
    assert during["state"] == "parsing", during
    assert during["progress"]["bytes_done"] < len(data), during
    assert_exact_result(pipeline, settings, upload_id, data)
    ledger.survive(fault)
    assert pipeline.pids() == before
