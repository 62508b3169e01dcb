"""A delete racing a parse: the upload is deleted while the parser is reading it and its batches are
being committed. The parse stops at its next batch, the batches already out are refused by the
persister, and nothing of the upload is left once the watchdog has purged it; the pipeline goes on
with the next upload as if nothing happened.
"""

from __future__ import annotations

import pytest

from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.conftest import Pipeline
from tests.faults.conftest import FaultLedger
from tests.helpers import (
    assert_exact_result,
    assert_nothing_left,
    many_records,
    record_count,
    upload_via_intake,
    wait_until,
)

pytestmark = pytest.mark.e2e


def _logged(pipeline: Pipeline, service: str, upload_id: str, event: str) -> bool:
    lines = pipeline.processes.log_file(service).read_text().splitlines()
    return any(upload_id in line and f'"event": "{event}' in line for line in lines)


def test_a_delete_racing_a_parse_leaves_nothing(pipeline: Pipeline, settings: Settings, ledger: FaultLedger) -> None:
    ticket = upload_via_intake(pipeline, "racing.fasta", many_records(40, seed=32))
    upload_id = ticket["id"]
    wait_until(pipeline, upload_id, lambda s: s["state"] == "parsing" and s["progress"]["records_done"] > 0)
    ledger.inject("a delete racing a parse")
    deleted = pipeline.http.delete(f"/uploads/{upload_id}")
    assert deleted.status_code == 202 and deleted.json()["state"] == "deleted", deleted.text
    status = poll_until(
        lambda: (s := pipeline.status(upload_id))["deletion"]["purged"] and s,
        timeout=60,
        what="the deleted upload purged",
        describe=pipeline.logs,
    )
    poll_until(
        lambda: _logged(pipeline, "parser", upload_id, "parse stopped"),
        timeout=60,
        what="the parse stopped at its next batch",
        describe=pipeline.logs,
    )
    assert not _logged(pipeline, "parser", upload_id, "parsed")  # its end was never published
    # batches published before the stop may still be arriving: let the persister settle, look again
    poll_until(
        lambda: pipeline.status(upload_id)["updated_at"] == status["updated_at"],
        timeout=30,
        what="the deleted upload unchanged",
    )
    assert_nothing_left(settings, pipeline.status(upload_id))
    after = many_records(1, seed=33)
    next_one = ledger.upload(pipeline, "after-the-race.fasta", after, "done", record_count(after))
    assert_exact_result(pipeline, settings, next_one["id"], after)
    assert_nothing_left(settings, pipeline.status(upload_id))
    ledger.survive("a delete racing a parse")
