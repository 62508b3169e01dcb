"""``DELETE /uploads/{id}`` against the running stack, at every stage an upload can be in.

Each case deletes one of alice's uploads and then finds nothing of it: no row in any table that
holds an upload id, no object and no multipart upload in the uploads bucket, no result document
(nor an unfinished one), no collection and no refget answer for its sequences -- while bob's
upload of the same sequences still reads back exactly. The in-flight stages are caught by stopping
the stage that would move the upload on (its messages wait in their queue and arrive, late, once it
is started again) or, for a parse, by a failpoint that kills the parser with part of the file's
batches out; a watchdog killed mid-purge is started again and the end state is the same.
"""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from tests import http
from tests.conftest import Pipeline
from tests.helpers import assert_nothing_left, many_records
from tests.security.helpers import keys_cli

MiB = 1024 * 1024
RNG = random.Random(32)
RECORDS = [(f"shared-{i}", "".join(RNG.choice("ACGT") for _ in range(RNG.randint(300, 3000)))) for i in range(6)]
SHARED = b"".join(f">{name}\n{seq}\n".encode() for name, seq in RECORDS)
DIGESTS = {hashlib.md5(seq.encode()).hexdigest(): seq for _, seq in RECORDS}


def _owner(settings: Settings, name: str) -> str:
    made = keys_cli(settings, "create", name)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def owners(pipeline: Pipeline, settings: Settings) -> Iterator[dict[str, httpx.Client]]:
    suffix = uuid.uuid4().hex[:6]
    clients = {
        who: httpx.Client(
            base_url=pipeline.settings.status_base_url,
            timeout=60,
            headers={"Authorization": f"Bearer {_owner(settings, f'{who}-{suffix}')}"},
        )
        for who in ("alice", "bob")
    }
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope="module")
def bobs_copy(pipeline: Pipeline, owners: dict[str, httpx.Client], refget_url: str) -> str:
    """Bob's upload of the sequences alice's uploads hold too: it must outlive every delete."""
    upload_id = _upload(owners["bob"], "bob.fa", SHARED)
    assert pipeline.wait_for(upload_id)["state"] == "done"
    return upload_id


def _upload(client: httpx.Client, filename: str, data: bytes) -> str:
    ticket = client.post("/uploads", json={"filename": filename, "size": len(data)})
    assert ticket.status_code == 201, ticket.text
    body: dict[str, Any] = ticket.json()
    put = http.put(body["upload_url"], content=data, headers=body["upload_headers"])
    assert put.status_code == 200, put.text
    return str(body["id"])


def _status(client: httpx.Client, upload_id: str) -> dict[str, Any]:
    response = client.get(f"/uploads/{upload_id}")
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


def _status_if(client: httpx.Client, upload_id: str, holds: Any) -> dict[str, Any] | None:
    status = _status(client, upload_id)
    return status if holds(status) else None


def _wait_state(client: httpx.Client, upload_id: str, state: str, timeout: float = 240) -> dict[str, Any]:
    return poll_until(
        lambda: _status_if(client, upload_id, lambda s: s["state"] == state),
        timeout=timeout,
        interval=0.2,
        what=f"upload {upload_id} {state}",
        describe=lambda: str(_status(client, upload_id)),
    )


def _parsed(pipeline: Pipeline, upload_id: str) -> bool:
    """The parser logged the end of the upload's parse (every batch and its end published)."""
    lines = pipeline.processes.log_file("parser").read_text().splitlines()
    return any(upload_id in line and '"event": "parsed"' in line for line in lines)


def delete_and_find_nothing(
    pipeline: Pipeline,
    settings: Settings,
    owners: dict[str, httpx.Client],
    bobs_copy: str,
    upload_id: str,
    only_here: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Delete alice's upload (twice), then look everywhere for what it held; ``only_here``: the
    MD5s of sequences no other upload holds."""
    alice, bob = owners["alice"], owners["bob"]
    before = _status(alice, upload_id)
    assert bob.delete(f"/uploads/{upload_id}").status_code == 404  # another owner's: as if absent
    first = alice.delete(f"/uploads/{upload_id}")
    assert first.status_code == 202 and first.json()["state"] == "deleted", first.text
    again = alice.delete(f"/uploads/{upload_id}")
    assert again.status_code == 202 and again.json()["deletion"]["deleted_at"] == first.json()["deletion"]["deleted_at"]
    status = poll_until(
        lambda: _status_if(alice, upload_id, lambda s: s["deletion"]["purged"]),
        timeout=60,
        interval=0.2,
        what="the watchdog's purge",
        describe=pipeline.logs,
    )
    assert status["state"] == "deleted" and status["result"] is None and status["collection_digest"] is None
    assert_nothing_left(settings, status)
    refget = f"http://127.0.0.1:{pipeline.settings.refget_port}"
    for md5, residues in DIGESTS.items():
        assert httpx.get(f"{refget}/sequence/{md5}", headers=alice.headers, timeout=30).status_code == 404
        kept = httpx.get(f"{refget}/sequence/{md5}", headers=bob.headers, timeout=30)
        assert kept.status_code == 200 and kept.text == residues
    admin = {"Authorization": f"Bearer {pipeline.api_key}"}  # sees every owner's sequences
    for md5 in only_here:  # held by no other upload: served to nobody any more
        assert httpx.get(f"{refget}/sequence/{md5}", headers=admin, timeout=30).status_code == 404
    if before.get("collection_digest"):
        for headers in (alice.headers, admin):
            gone = httpx.get(f"{refget}/collection/{before['collection_digest']}", headers=headers, timeout=30)
            assert gone.status_code == 404
    assert _status(bob, bobs_copy)["state"] == "done"
    return status


@pytest.mark.e2e
def test_awaiting_its_object(pipeline: Pipeline, settings: Settings, owners: Any, bobs_copy: str) -> None:
    ticket = owners["alice"].post("/uploads", json={"filename": "waiting.fa", "size": len(SHARED)}).json()
    delete_and_find_nothing(pipeline, settings, owners, bobs_copy, ticket["id"])
    # the ticket's URL still within its lifetime: the object written is removed again, not processed
    put = http.put(ticket["upload_url"], content=SHARED, headers=ticket["upload_headers"])
    assert put.status_code == 200
    store = ObjectStore(settings)
    poll_until(lambda: not store.exists(ticket["bucket"], ticket["key"]), timeout=240, what="the late object purged")
    assert _status(owners["alice"], ticket["id"])["state"] == "deleted"


@pytest.mark.e2e
def test_mid_multipart(
    pipeline: Pipeline, settings: Settings, owners: Any, bobs_copy: str, multipart_intake: str
) -> None:
    size = 11 * MiB
    client = httpx.Client(base_url=multipart_intake, headers=owners["alice"].headers, timeout=60)
    ticket = client.post("/uploads", json={"filename": "parts.fa", "size": size}).json()
    plan = ticket["multipart"]
    part = b"A" * plan["part_size"]
    md5 = base64.b64encode(hashlib.md5(part).digest()).decode()
    signed = client.post(f"/uploads/{ticket['id']}/parts", json={"parts": [{"number": 1, "md5": md5}]}).json()
    assert http.put(signed["parts"][0]["url"], content=part, headers={"Content-MD5": md5}).is_success
    assert ObjectStore(settings).multipart_uploads(ticket["bucket"], ticket["key"]) != []
    delete_and_find_nothing(pipeline, settings, owners, bobs_copy, ticket["id"])


@pytest.mark.e2e
def test_parsing_with_a_parser_killed_mid_file(
    pipeline: Pipeline, settings: Settings, owners: Any, bobs_copy: str
) -> None:
    pipeline.processes.stop("parser")
    pipeline.processes.start("parser", extra_env={"GENOBASE_FAILPOINT": "parser.after_batch:3"})
    try:
        upload_id = _upload(owners["alice"], "parsing.fa", SHARED + many_records(16, seed=5))
        poll_until(lambda: pipeline.processes.pid("parser") is None, timeout=240, what="the parser at its failpoint")
        assert _status(owners["alice"], upload_id)["state"] == "parsing"
        delete_and_find_nothing(pipeline, settings, owners, bobs_copy, upload_id)
    finally:
        pipeline.start_consuming("parser")  # its redelivered event now finds a deleted upload
    poll_until(
        lambda: "event needs no work" in pipeline.processes.log_file("parser").read_text(),
        timeout=120,
        what="the redelivered event ignored",
    )
    delete_and_find_nothing(pipeline, settings, owners, bobs_copy, upload_id)


@pytest.mark.e2e
@pytest.mark.parametrize("stopped", ["persister", "assembler"])
def test_with_its_next_stage_stopped(
    pipeline: Pipeline, settings: Settings, owners: Any, bobs_copy: str, stopped: str
) -> None:
    """persister stopped: every batch parsed and waiting in its queue; assembler stopped: every
    batch committed (``assembling``), its request waiting. Both arrive after the delete."""
    pipeline.processes.stop(stopped)
    try:
        upload_id = _upload(owners["alice"], f"{stopped}.fa", SHARED)
        if stopped == "assembler":
            _wait_state(owners["alice"], upload_id, "assembling")
        else:
            poll_until(
                lambda: _parsed(pipeline, upload_id) and _status(owners["alice"], upload_id)["state"] == "parsing",
                timeout=240,
                what="parsed, its batches queued",
            )
        delete_and_find_nothing(pipeline, settings, owners, bobs_copy, upload_id)
    finally:
        pipeline.start_consuming(stopped)
    pipeline.wait_for(bobs_copy)
    final = delete_and_find_nothing(pipeline, settings, owners, bobs_copy, upload_id)
    assert final["progress"]["records_done"] == 0


@pytest.mark.e2e
@pytest.mark.parametrize(("data", "state"), [(SHARED, "done"), (b"this is not a sequence file\n", "failed")])
def test_finished(pipeline: Pipeline, settings: Settings, owners: Any, bobs_copy: str, data: bytes, state: str) -> None:
    unique = uuid.uuid4().hex.upper().translate(str.maketrans("0123456789ABCDEF", "ACGTACGTACGTACGT"))
    if state == "done":  # a sequence of its own beside the shared ones
        data += f">only-here\n{unique}\n".encode()
    upload_id = _upload(owners["alice"], f"{state}.fa", data)
    assert pipeline.wait_for(upload_id)["state"] == state
    md5 = hashlib.md5(unique.encode()).hexdigest()
    if state == "done":
        refget = f"http://127.0.0.1:{pipeline.settings.refget_port}/sequence/{md5}"
        admin = {"Authorization": f"Bearer {pipeline.api_key}"}
        assert httpx.get(refget, headers=admin, timeout=30).text == unique  # served until the delete
    delete_and_find_nothing(pipeline, settings, owners, bobs_copy, upload_id, only_here=(md5,))


@pytest.mark.e2e
def test_a_watchdog_killed_mid_purge_purges_after_its_restart(
    pipeline: Pipeline, settings: Settings, owners: Any, bobs_copy: str
) -> None:
    upload_id = _upload(owners["alice"], "purge.fa", SHARED)
    assert pipeline.wait_for(upload_id)["state"] == "done"
    pipeline.processes.stop("watchdog")
    pipeline.processes.start("watchdog", extra_env={"GENOBASE_FAILPOINT": "watchdog.mid_purge:1"})
    try:
        assert owners["alice"].delete(f"/uploads/{upload_id}").status_code == 202
        poll_until(lambda: pipeline.processes.pid("watchdog") is None, timeout=60, what="the watchdog mid-purge")
        status = _status(owners["alice"], upload_id)
        assert status["state"] == "deleted" and not status["deletion"]["purged"]
        result = f"{upload_id}/generation-1.json"
        assert ObjectStore(settings).exists(settings.results_bucket, result)  # killed before the results
    finally:
        pipeline.processes.start("watchdog")
    delete_and_find_nothing(pipeline, settings, owners, bobs_copy, upload_id)
