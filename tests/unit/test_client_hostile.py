"""The client against a hostile or wrong server, and a hostile local directory: error and JSON
answers read within a bound, a record line bounded, a redirect or an HTML page of an ordinary call
told as an unexpected answer, a request that cannot be sent neither retried nor quoting the key,
and the download's and the transfer state's temporary files created exclusively (a link planted at
their name is never written through)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genobase.client import Client, ClientError
from genobase.client.api import _bounded_lines
from genobase.client.models import UploadTicket
from genobase.client.transfer import save_state
from tests.unit.test_client import UPLOAD_ID, client_for, download_handler, status_body

MB = 1024 * 1024


class Counted(httpx.SyncByteStream):
    """A large body that counts how much of it was read."""

    def __init__(self, total: int) -> None:
        self.total, self.read = total, 0

    def __iter__(self) -> Iterator[bytes]:
        while self.read < self.total:
            self.read += MB
            yield b"x" * MB


def test_an_error_body_is_read_only_up_to_its_bound(tmp_path: Path) -> None:
    body = Counted(300 * MB)
    client, _, _ = client_for(lambda r: httpx.Response(503, stream=body), tmp_path, retries=0)
    with pytest.raises(ClientError) as caught:
        client.get(UPLOAD_ID)
    assert caught.value.status == 503
    assert body.read <= 2 * MB  # not the 300 MB


def test_a_json_answer_above_its_cap_is_refused(tmp_path: Path) -> None:
    declared = Counted(20 * MB)
    client, _, _ = client_for(
        lambda r: httpx.Response(200, stream=declared, headers={"Content-Length": str(20 * MB)}), tmp_path
    )
    with pytest.raises(ClientError) as caught:
        client.get(UPLOAD_ID)
    assert caught.value.code == "answer_too_large" and declared.read == 0
    undeclared = Counted(20 * MB)
    client, _, _ = client_for(lambda r: httpx.Response(200, stream=undeclared), tmp_path)
    with pytest.raises(ClientError) as caught:
        client.get(UPLOAD_ID)
    assert caught.value.code == "answer_too_large" and undeclared.read <= 17 * MB


def test_a_record_line_longer_than_its_bound_is_refused(tmp_path: Path) -> None:
    line = b'{"ordinal": 0, "id": "chr1", "sequence": "' + b"A" * 5000 + b'"}\n'
    client, _, _ = client_for(lambda r: httpx.Response(200, content=line), tmp_path)
    assert [r.id for r in client.result(UPLOAD_ID)] == ["chr1"]  # the default bound is generous
    with pytest.raises(ClientError) as caught:
        list(client.result(UPLOAD_ID, max_record_bytes=1000))
    assert caught.value.code == "answer_too_large"


def test_a_long_record_arriving_in_small_chunks_is_cut_in_linear_time() -> None:
    """A chromosome-length line in 1 KiB chunks: each byte is searched for the newline once (a
    search from the line's start at every chunk took tens of seconds at 64 MiB, hours at 1 GiB)."""
    chunk, chunks = b"A" * 1024, 64 * 1024  # a 64 MiB line

    def body() -> Iterator[bytes]:
        yield from (chunk for _ in range(chunks))
        yield b"\nB\n"

    response = httpx.Response(200, content=body(), request=httpx.Request("GET", "http://intake/records"))
    started = time.monotonic()
    lines = list(_bounded_lines(response, 128 * MB))
    assert [len(line) for line in lines] == [len(chunk) * chunks, 1]
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(302, headers={"Location": "https://login.example/"}),
        httpx.Response(200, text="<html>a proxy's page</html>", headers={"Content-Type": "text/html"}),
        httpx.Response(200, json={"some": "other service"}),
    ],
)
def test_an_answer_that_is_not_the_intakes_is_an_unexpected_answer(answer: httpx.Response, tmp_path: Path) -> None:
    client, _, _ = client_for(lambda r: answer, tmp_path)
    with pytest.raises(ClientError) as caught:
        client.get(UPLOAD_ID)
    assert caught.value.code == "unexpected_answer"
    assert caught.value.hint == "is the endpoint a Genobase intake?"


def test_a_request_that_cannot_be_sent_is_not_retried_and_does_not_quote_the_key(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.LocalProtocolError("Illegal header value b'Bearer gbk_SECRET'")

    client, _, _ = client_for(refuse, tmp_path, retries=3)
    with pytest.raises(ClientError) as caught:
        client.get(UPLOAD_ID)
    assert caught.value.code == "invalid_request" and len(calls) == 1
    assert "SECRET" not in str(caught.value) and caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_key_is_stripped_and_one_with_invisible_characters_refused() -> None:
    sent: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["authorization"])
        return httpx.Response(200, json=status_body())

    Client("http://intake", "gbk_key\r\n", transport=httpx.MockTransport(record), retries=0).get(UPLOAD_ID)
    assert sent == ["Bearer gbk_key"]
    for bad in ("gbk_a\rb", "gbk_é", "gbk_a b"):
        with pytest.raises(ClientError) as caught:
            Client("http://intake", bad)
        assert caught.value.code == "invalid_api_key" and bad not in str(caught.value)


def test_a_link_or_a_file_at_the_parts_old_name_is_never_written_through(tmp_path: Path) -> None:
    document = b'{"records": ["x"]}'
    client, _, _ = client_for(download_handler(document, hashlib.sha256(document).hexdigest()), tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "out.json.part").symlink_to(victim)
    (tmp_path / "mine.json.part").write_text("my notes\n")
    client.download(UPLOAD_ID, tmp_path / "out.json")
    client.download(UPLOAD_ID, tmp_path / "mine.json")
    assert victim.read_text() == "precious\n" and (tmp_path / "mine.json.part").read_text() == "my notes\n"
    assert (tmp_path / "out.json").read_bytes() == document and not (tmp_path / "out.json").is_symlink()
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert leftovers == []  # the temporary files were renamed or removed


def test_a_failed_download_leaves_no_temporary_file_in_the_way(tmp_path: Path) -> None:
    document = b'{"records": []}'
    client, _, _ = client_for(download_handler(document, "0" * 64), tmp_path)
    for _ in range(2):  # a second run is not blocked by the first one's leftovers
        with pytest.raises(ClientError):
            client.download(UPLOAD_ID, tmp_path / "out.json")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "state") == []


def test_the_temporary_name_fits_a_long_target(tmp_path: Path) -> None:
    document = b"{}"
    client, _, _ = client_for(download_handler(document, hashlib.sha256(document).hexdigest()), tmp_path)
    target = tmp_path / ("a" * 250 + ".json")
    assert client.download(UPLOAD_ID, target).read_bytes() == document


def test_the_state_files_temporary_is_created_exclusively(tmp_path: Path) -> None:
    ticket = UploadTicket.model_validate(
        {
            "id": str(UPLOAD_ID),
            "bucket": "b",
            "key": "k",
            "upload_method": "PUT",
            "upload_url": "http://store/x?X-Amz-Signature=abc",
            "upload_headers": {},
            "multipart": None,
            "expires_at": "2026-01-02T00:00:00+00:00",
            "status_url": "http://intake/u",
        }
    )
    state_dir = tmp_path / "transfers"
    state_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(victim, state_dir / "b.tmp")
    save_state(state_dir / "b.json", ticket)
    assert victim.read_text() == "keep"
    assert UploadTicket.model_validate_json((state_dir / "b.json").read_text()) == ticket
    assert sorted(p.name for p in state_dir.iterdir()) == ["b.json", "b.tmp"]


class Cut(httpx.SyncByteStream):
    """A body that ends short with a connection error."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"id": '
        raise httpx.ReadError("connection reset")


def test_a_json_answer_cut_short_while_read_is_retried(tmp_path: Path) -> None:
    whole = httpx.Response(200, json=status_body())
    answers = iter([httpx.Response(200, stream=Cut()), whole])
    client, recorder, _ = client_for(lambda r: next(answers), tmp_path)
    assert client.get(UPLOAD_ID).id == UPLOAD_ID
    assert len(recorder.requests) == 2
