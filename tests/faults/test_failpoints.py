"""Crashes at precise points (shared/runtime/failpoints.py): the service SIGKILLs itself there.

Killing from outside hits "somewhere in the middle"; these hit the moments that matter most for
exactly-once: the persister between a commit and its ack, the parser with part of a file's
batches published, the assembler with parts of its multipart upload written. The service is then
started again as ``genobase up`` would, and the result must be identical to an undisturbed run.
"""

from __future__ import annotations

import pytest

from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.conftest import Pipeline
from tests.faults.conftest import FaultLedger
from tests.helpers import assert_exact_result, assert_no_orphaned_multipart, many_records, record_count


@pytest.mark.parametrize(
    ("service", "point", "fault"),
    [
        ("parser", "parser.after_batch:8", "parser crashed after publishing batch 8"),
        ("persister", "persister.after_commit:5", "persister crashed between commit and ack"),
        ("assembler", "assembler.mid_upload:1", "assembler crashed mid multipart upload"),
    ],
    ids=["parser", "persister", "assembler"],
)
@pytest.mark.e2e
def test_crash_at_a_precise_point_changes_nothing(
    pipeline: Pipeline, settings: Settings, ledger: FaultLedger, service: str, point: str, fault: str
) -> None:
    pipeline.processes.stop(service)
    pipeline.processes.start(service, extra_env={"GENOBASE_FAILPOINT": point})
    try:
        data = many_records(60, seed=sum(point.encode()))
        ticket = ledger.upload(pipeline, f"failpoint-{service}.fasta", data, "done", record_count(data))
        ledger.inject(fault)

        def ended_at_the_failpoint() -> bool:
            status = pipeline.status(ticket["id"])
            assert status["state"] != "done", f"finished without reaching {point}: {status}"
            return pipeline.processes.pid(service) is None

        poll_until(
            ended_at_the_failpoint,
            timeout=240,
            interval=0.1,
            what=f"{service} ended at {point}",
            describe=lambda: str(pipeline.status(ticket["id"])),
        )
    finally:
        pipeline.processes.start(service)  # what `genobase up` does for a service that is not running
    assert_exact_result(pipeline, settings, ticket["id"], data)
    assert_no_orphaned_multipart(pipeline, settings, ticket["id"])
    ledger.survive(fault)
