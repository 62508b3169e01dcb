"""``genobase.client.Client`` against the running stack: an upload with labels to done, found by
its labels, its records read back and its result downloaded and checked (SHA-256 recorded by the
assembler), deleted; a failed upload retried; a validation; a multipart upload interrupted and
resumed by a new client with only the missing parts; a wrong key, another owner's id and a closed
port, each as its error."""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from genobase import stack
from genobase.client import (
    AuthenticationError,
    Client,
    ClientError,
    NotFoundError,
    TransferProgress,
    UnreachableError,
    Upload,
)
from shared.postgres.keys import PostgresKeys
from shared.s3.store import ObjectStore
from shared.usecases.keys import create_key
from tests.conftest import Pipeline

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
FASTA = b">chr1 first\nACGTACGTNN\nacgt\n>chr2\nGGCCTTAA\n>chr3 third one\n" + b"ACGT" * 300 + b"\n"
EXPECTED = [("chr1", "ACGTACGTNNacgt"), ("chr2", "GGCCTTAA"), ("chr3", "ACGT" * 300)]


def owner_key(pipeline: Pipeline, prefix: str) -> str:
    return create_key(PostgresKeys.from_settings(pipeline.settings), f"{prefix}-{uuid.uuid4().hex[:8]}", admin=False)


@pytest.fixture(scope="module")
def client(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    state = tmp_path_factory.mktemp("client-state")
    with Client(pipeline.settings.status_base_url, owner_key(pipeline, "ca"), state_dir=state) as made:
        yield made


@pytest.fixture(scope="module")
def done(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Upload:
    path = tmp_path_factory.mktemp("client") / "sample.fa"
    path.write_bytes(FASTA)
    seen: list[Upload] = []
    upload = client.upload(path, labels={"sample": "NA1", "run": "c7"}, wait=True, timeout=240, on_status=seen.append)
    assert upload.state == "done", upload
    assert seen and seen[-1].state == "done"
    return upload


def test_an_upload_with_labels_is_done_and_found_by_its_labels(client: Client, done: Upload) -> None:
    assert done.labels == {"sample": "NA1", "run": "c7"} and done.filename == "sample.fa"
    assert done.result is not None and done.result.records == 3
    assert done.result.sha256 is not None and len(done.result.sha256) == 64
    found = list(client.list(labels={"run": "c7"}))
    assert [u.id for u in found] == [done.id] and found[0].labels == done.labels
    assert list(client.list(labels={"run": "other"})) == []
    assert client.get(done.id).id == done.id


def test_the_records_read_back_are_the_file_s(client: Client, done: Upload) -> None:
    records = list(client.result(done.id, page_size=2))  # two pages: the cursor followed
    assert [(r.id, r.sequence) for r in records] == EXPECTED
    assert [r.ordinal for r in records] == [0, 1, 2]
    assert client.record(done.id, 1).id == "chr2"
    assert [r.id for r in client.result(done.id, name="chr3", fields=["id"])] == ["chr3"]


def test_the_download_is_checked_against_the_recorded_sha256(
    pipeline: Pipeline, client: Client, done: Upload, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert done.result is not None
    target = client.download(done.id, tmp_path / "result.json")
    data = target.read_bytes()
    assert hashlib.sha256(data).hexdigest() == done.result.sha256 and len(data) == done.result.size
    stored = ObjectStore(pipeline.settings).client.get_object(Bucket=done.result.bucket, Key=done.result.key)
    assert stored["Body"].read() == data  # the assembler's digest is of what the store holds
    assert [r["id"] for r in json.loads(data)["records"]] == ["chr1", "chr2", "chr3"]

    real_get = Client.get

    def tampered(self: Client, upload_id: str | uuid.UUID) -> Upload:
        upload = real_get(self, upload_id)
        assert upload.result is not None
        return upload.model_copy(update={"result": upload.result.model_copy(update={"sha256": "0" * 64})})

    monkeypatch.setattr(Client, "get", tampered)
    with pytest.raises(ClientError) as caught:
        client.download(done.id, tmp_path / "tampered.json")
    assert caught.value.code == "checksum_mismatch"
    assert not (tmp_path / "tampered.json").exists() and not (tmp_path / "tampered.json.part").exists()


def test_a_deleted_upload_reads_deleted(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "gone.fa"
    path.write_bytes(b">x\nACGT\n")
    upload = client.upload(path, wait=True, timeout=240)
    assert client.delete(upload.id).state == "deleted"
    assert client.get(upload.id).state == "deleted"
    assert client.delete(upload.id).state == "deleted"  # again: the same answer


def test_a_failed_upload_is_retried(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "broken.fa"
    path.write_bytes(b">a\nACGT\n>b\nAC!T\n")
    failed = client.upload(path, wait=True, timeout=240)
    assert failed.state == "failed" and failed.error is not None and failed.error.code == "invalid_character"
    retried = client.retry(failed.id)
    assert retried.generation == 2 and retried.state not in ("failed", "done")
    again = client.wait(failed.id, timeout=240)
    assert (again.state, again.generation) == ("failed", 2)  # the same object fails the same way


def test_a_validation_reports_and_stores_nothing(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "checked.fa"
    path.write_bytes(FASTA)
    upload = client.upload(path, mode="validate", wait=True, timeout=240)
    assert (upload.state, upload.mode, upload.result) == ("done", "validate", None)
    assert upload.validation is not None and upload.validation.records == 3
    assert upload.validation.source_sha256 == hashlib.sha256(FASTA).hexdigest()


class Interrupted(Exception):
    pass


def test_a_multipart_upload_interrupted_resumes_with_only_the_missing_parts(
    pipeline: Pipeline, multipart_intake: str, tmp_path: Path
) -> None:
    path = tmp_path / "big.fa"
    rng = random.Random(7)
    with path.open("w") as out:  # 18 MiB: 4 parts of 5 MiB at this intake
        for number in range(26):
            sequence = "".join(rng.choices("ACGT", k=700_000))
            out.write(f">r{number}\n")
            out.writelines(sequence[i : i + 70] + "\n" for i in range(0, len(sequence), 70))
    size = path.stat().st_size
    assert 15 * MiB < size <= 20 * MiB
    state = tmp_path / "state"
    key = owner_key(pipeline, "cm")

    def stop_after_two_parts(progress: TransferProgress) -> None:
        if progress.sent >= 2 * 5 * MiB:
            raise Interrupted

    with Client(multipart_intake, key, state_dir=state) as first, pytest.raises(Interrupted):
        first.upload(path, parallel=1, on_bytes=stop_after_two_parts)
    (state_file,) = state.glob("*.json")
    assert state_file.stat().st_mode & 0o777 == 0o600 and state.stat().st_mode & 0o777 == 0o700

    seen: list[TransferProgress] = []
    with Client(multipart_intake, key, state_dir=state) as second:
        upload = second.upload(path, parallel=2, on_bytes=seen.append, wait=True, timeout=300)
    assert upload.state == "done", upload
    assert seen[0].resumed == 2 * 5 * MiB  # two parts were already stored
    assert seen[-1].sent == size and len(seen) == 2  # and only the other two were sent
    assert upload.source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not state_file.exists()


def test_a_wrong_key_another_owner_s_id_and_a_closed_port(pipeline: Pipeline, client: Client, done: Upload) -> None:
    with Client(pipeline.settings.status_base_url, "not-a-key") as stranger, pytest.raises(AuthenticationError):
        stranger.get(done.id)
    other = Client(pipeline.settings.status_base_url, owner_key(pipeline, "cb"))
    with other, pytest.raises(NotFoundError) as caught:
        other.get(done.id)
    assert caught.value.code == "not_found" and caught.value.error_id
    closed = f"http://127.0.0.1:{stack.free_port()}"
    started = time.monotonic()
    with Client(closed, "k", retries=3, retry_budget=2.0) as nowhere, pytest.raises(UnreachableError):
        nowhere.health()
    assert time.monotonic() - started < 5
