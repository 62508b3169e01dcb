"""Every service's /metrics, scraped before and after known work: the counters move by exactly it."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from genobase import stack
from tests.conftest import Pipeline
from tests.helpers import generated_fasta, scrape, upload_via_intake, value

pytestmark = pytest.mark.e2e


def test_the_counters_move_by_exactly_the_work_done(pipeline: Pipeline, refget_url: str) -> None:
    before = {service: scrape(pipeline, service) for service in stack.SERVICES}
    first = "ACGT" * 50
    good = f">m0\n{first}\n".encode() + generated_fasta(24, seed=4)
    ticket = upload_via_intake(pipeline, "counted.fa", good)
    done = pipeline.wait_for(ticket["id"])
    assert done["state"] == "done", pipeline.logs()
    bad = upload_via_intake(pipeline, "counted-bad.fa", b">a\nAC!T\n")
    failed = pipeline.wait_for(bad["id"])
    assert failed["error"]["code"] == "invalid_character"
    md5 = hashlib.md5(first.encode()).hexdigest()
    read = httpx.get(
        f"{refget_url}/sequence/{md5}", params={"end": 5}, headers={"Authorization": f"Bearer {pipeline.api_key}"}
    )
    assert read.status_code == 200
    after = {service: scrape(pipeline, service) for service in stack.SERVICES}

    def moved(service: str, name: str, **labels: str) -> float:
        return value(after[service], name, **labels) - value(before[service], name, **labels)

    assert moved("parser", "genobase_records_total", stage="parse") == 25
    assert moved("parser", "genobase_bytes_total", stage="parse") == len(good)
    assert moved("parser", "genobase_messages_total", stage="parse", outcome="ack") == 2
    assert moved("parser", "genobase_uploads_ended_total", state="failed", code="invalid_character") == 1
    assert moved("parser", "genobase_stage_seconds_count", stage="parse") == 2
    assert moved("persister", "genobase_records_total", stage="persist") == 25
    assert moved("persister", "genobase_message_bytes_total", stage="persist") > len(good) // 2  # residues
    assert moved("persister", "genobase_messages_total", stage="persist", outcome="ack") >= 2  # batch, end
    assert moved("assembler", "genobase_records_total", stage="assemble") == 25
    assert moved("assembler", "genobase_uploads_ended_total", state="done", code="") == 1
    # Two requests for the good upload: at its first batch (the assembler follows the parse) and at
    # its last (ignored: the first one's assembler holds the generation or has finished it).
    assert moved("assembler", "genobase_messages_total", stage="assemble", outcome="ack") == 2
    assert moved("assembler", "genobase_bytes_total", stage="assemble") == done["result"]["size"]
    assert moved("intake", "genobase_http_requests_total", route="/uploads", method="POST", status="201") == 2
    assert moved("intake", "genobase_http_request_seconds_count", route="/uploads", method="POST") == 2
    route = "/sequence/{sequence_id}"
    assert moved("refget", "genobase_http_requests_total", route=route, method="GET", status="200") == 1
    for service in stack.SERVICES:  # every one answers, with the same names
        assert ("genobase_dead_letters_total", frozenset()) not in after[service]
    assert moved("watchdog", "genobase_stalls_picked_up_total") == 0
