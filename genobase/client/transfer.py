"""Sending a file to the store: one signed PUT, or a multipart upload in parallel parts that
resumes where it stopped.

An unfinished multipart upload is remembered in a state file under ``state_dir`` (by default
``$XDG_DATA_HOME/genobase/transfers``, ``~/.local/share/genobase/transfers`` without it), keyed by
the file (resolved path, size, modification time), the intake's endpoint and the mode: a
validation of a file never resumes as its stored upload. The file holds signed URLs, so the
directory is created 700 and the file 600. The next ``upload`` of the same file asks the intake
which parts the store already has (list-parts) and sends only the others, each with its MD5
signed into its URL, then completes the upload with the store itself, whose notification starts
the pipeline. Memory is bounded by ``parallel`` parts in flight.

Nothing is printed: progress goes to the ``on_bytes`` callback, called from the sending threads
one call at a time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol
from xml.sax.saxutils import escape

import httpx

from genobase.client.errors import ClientError
from genobase.client.models import TransferProgress, UploadTicket
from shared.runtime.failpoints import failpoint

READ_CHUNK = 1024 * 1024
STATE_DIR_MODE = 0o700
STATE_FILE_MODE = 0o600


def default_state_dir() -> Path:
    """``$XDG_DATA_HOME/genobase/transfers`` (the XDG base directory spec's user data directory)."""
    data_home = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "genobase" / "transfers"


def state_path(state_dir: Path, path: Path, endpoint: str, mode: str) -> Path:
    """Where an interrupted multipart upload of this file is remembered: one per file (its resolved
    path, size and modification time: an edited file starts afresh), endpoint and mode."""
    stat = path.stat()
    key = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{endpoint.rstrip('/')}\0{mode}".encode()
    return state_dir / f"{hashlib.sha256(key).hexdigest()[:32]}.json"


def save_state(state_file: Path, ticket: UploadTicket) -> None:
    """Write the ticket owner-only (it holds signed URLs), atomically (a crash leaves the old one)."""
    state_file.parent.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(state_file.parent, STATE_DIR_MODE)  # mkdir's mode is masked by the umask
    # A new temporary name each time, created exclusively (mkstemp: O_EXCL, mode 600): a link or a
    # leftover planted at a fixed name is never written through, and two runs never share one.
    fd, name = tempfile.mkstemp(dir=state_file.parent, prefix=f".{state_file.stem}.", suffix=".tmp")
    tmp = Path(name)
    try:
        os.fchmod(fd, STATE_FILE_MODE)
        with os.fdopen(fd, "w") as out:
            out.write(ticket.model_dump_json())
        tmp.replace(state_file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_state(state_file: Path) -> UploadTicket | None:
    """The ticket remembered there, or None (absent, or unreadable: then it is forgotten)."""
    try:
        return UploadTicket.model_validate(json.loads(state_file.read_text()))
    except FileNotFoundError:
        return None
    except ValueError:
        state_file.unlink(missing_ok=True)
        return None


class IntakeCalls(Protocol):
    """The client's requests to the intake, with its retries and error mapping."""

    def call(self, method: str, url: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response: ...

    def store_call(self, method: str, url: str, *, retry: bool = True, **kwargs: Any) -> httpx.Response: ...


class _Meter:
    """Bytes the store has so far, told to ``on_bytes`` one call at a time."""

    def __init__(
        self,
        path: Path,
        total: int,
        resumed: int,
        on_bytes: Callable[[TransferProgress], None] | None,
        parts: int = 0,
        parts_resumed: int = 0,
    ) -> None:
        self.path, self.total, self.resumed, self.sent = path, total, resumed, resumed
        self.parts, self.parts_resumed, self.parts_done = parts, parts_resumed, parts_resumed
        self._on_bytes = on_bytes
        self._lock = threading.Lock()

    def add(self, count: int, *, part: bool = False) -> None:
        with self._lock:
            self.sent += count
            self.parts_done += int(part)
            if self._on_bytes is not None:
                self._on_bytes(
                    TransferProgress(
                        self.path, self.sent, self.total, self.resumed, self.parts, self.parts_done, self.parts_resumed
                    )
                )


def put_whole(
    calls: IntakeCalls, path: Path, ticket: UploadTicket, on_bytes: Callable[[TransferProgress], None] | None
) -> None:
    """PUT the file to its ticket with the headers the ticket signed (the store checks them)."""
    assert ticket.upload_url is not None
    size = path.stat().st_size

    def body() -> Iterator[bytes]:
        meter = _Meter(path, size, 0, on_bytes)  # a retried PUT starts its count again
        with path.open("rb") as source:
            while chunk := source.read(READ_CHUNK):
                yield chunk
                meter.add(len(chunk))

    headers = {**ticket.upload_headers, "Content-Length": str(size)}
    calls.store_call("PUT", ticket.upload_url, content=body, headers=headers)


def send_parts(
    calls: IntakeCalls,
    path: Path,
    ticket: UploadTicket,
    parallel: int,
    on_bytes: Callable[[TransferProgress], None] | None,
) -> None:
    """Send the parts the store does not have yet, ``parallel`` at a time, then complete the upload.

    The first failure (a refused part, or ``on_bytes`` raising) stops the others from starting and
    is raised once the parts in flight ended: what the store got is resumed by the next run.
    """
    plan = ticket.multipart
    assert plan is not None
    size, part_size, count = path.stat().st_size, plan.part_size, plan.part_count
    stored = {p["number"] for p in calls.call("GET", plan.parts_url, idempotent=True).json()["parts"]}
    todo = [n for n in range(1, count + 1) if n not in stored]
    resumed = sum(min(part_size, size - (n - 1) * part_size) for n in stored)
    meter = _Meter(path, size, resumed, on_bytes, count, len(stored))
    stop = threading.Event()

    def send(number: int) -> None:
        if stop.is_set():
            return
        try:
            send_part(number)
        except BaseException:
            stop.set()  # no part starts after a failure, even on this thread's next turn
            raise

    def send_part(number: int) -> None:
        with path.open("rb") as source:
            source.seek((number - 1) * part_size)
            data = source.read(part_size)
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        # Signing a part changes nothing: safe to retry.
        signed = calls.call("POST", plan.parts_url, idempotent=True, json={"parts": [{"number": number, "md5": md5}]})
        url = signed.json()["parts"][0]["url"]
        calls.store_call("PUT", url, content=data, headers={"Content-MD5": md5})
        meter.add(len(data), part=True)
        failpoint("cli.after_part")

    pool = ThreadPoolExecutor(max_workers=max(1, parallel))
    try:
        futures: list[Future[None]] = [pool.submit(send, n) for n in todo]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            exc = failed.exception()
            assert exc is not None
            raise exc
    except BaseException:
        stop.set()  # Ctrl-C included: the parts in flight end, no other starts
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    parts = calls.call("GET", plan.parts_url, idempotent=True).json()["parts"]
    if sorted(p["number"] for p in parts) != list(range(1, count + 1)):
        raise ClientError(
            "parts_missing",
            f"the store has {len(parts)} of {count} parts",
            hint="upload the same file again: the missing parts are sent",
        )
    xml = (
        "<CompleteMultipartUpload>"
        + "".join(
            f"<Part><PartNumber>{p['number']}</PartNumber><ETag>{escape(p['etag'])}</ETag></Part>"
            for p in sorted(parts, key=lambda p: p["number"])
        )
        + "</CompleteMultipartUpload>"
    )
    # Not retried: a completion that took effect but whose answer was lost would be refused the
    # second time (the upload is gone); the next upload() of the file then finds it complete.
    done_answer = calls.store_call("POST", plan.complete_url, content=xml.encode(), retry=False)
    # S3 may answer 200 and still report an error in the body.
    if b"<Error>" in done_answer.content:
        raise ClientError(
            "store_refused",
            "the store refused to complete the multipart upload",
            status=done_answer.status_code,
            hint="upload the same file again",
        )
