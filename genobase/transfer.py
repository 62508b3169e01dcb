"""``genobase upload``'s transfer: one signed PUT, or a multipart upload in parallel parts that
resumes where it stopped.

A multipart upload is remembered in ``<GENOBASE_HOME>/transfers/`` (keyed by the file's path,
size and modification time, and the intake) until it completes. Run again after Ctrl-C, a lost
connection or a killed process, the same command asks the intake which parts the store already
has (list-parts) and sends only the others, each with its MD5 signed into its URL; then it
completes the upload with the store itself, whose notification starts the pipeline. Memory is
bounded by ``workers`` parts in flight.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx

from shared.runtime.failpoints import failpoint

READ_CHUNK = 1024 * 1024


class Progress:
    """One line on stderr: bytes sent, rate and time left (thread-safe; redrawn at most 4 times a second)."""

    def __init__(self, total: int, already: int = 0) -> None:
        self.total = total
        self.done = already
        self._started = time.monotonic()
        self._base = already
        self._lock = threading.Lock()
        self._drawn = 0.0

    def add(self, count: int) -> None:
        with self._lock:
            self.done += count
            now = time.monotonic()
            if now - self._drawn >= 0.25 or self.done >= self.total:
                self._drawn = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        rate = (self.done - self._base) / max(now - self._started, 1e-6)
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = f"{left:5.0f} s left" if left != float("inf") else "      "
        fraction = self.done / self.total if self.total else 1.0
        sent = f"{self.done / 1e6:9.1f} / {self.total / 1e6:.1f} MB"
        line = f"sending {fraction * 100:5.1f}%  {sent}  {rate / 1e6:6.1f} MB/s  {eta}"
        print(f"\r{line}", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        print(file=sys.stderr)


def _state_path(home: Path, path: Path, base_url: str, mode: str = "store") -> Path:
    """Where an interrupted multipart upload of this file is remembered: one per file, intake and
    mode (a validation of a file never resumes as its stored upload, nor the other way round)."""
    stat = path.stat()
    suffix = "" if mode == "store" else f"\0{mode}"
    key = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{base_url}{suffix}".encode()
    return home / "transfers" / f"{hashlib.sha256(key).hexdigest()[:32]}.json"


def _save(state_path: Path, ticket: dict[str, Any]) -> None:
    state_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_suffix(".tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        json.dump(ticket, out)  # signed URLs: owner-only
    tmp.replace(state_path)


def upload(
    client: httpx.Client, path: Path, registration: dict[str, Any], home: Path, workers: int = 4
) -> dict[str, Any]:
    """Send ``path``; returns its ticket once the store has the whole object."""
    state_path = _state_path(home, path, str(client.base_url), str(registration.get("mode") or "store"))
    ticket = _resumable(client, state_path)
    if ticket is None:
        response = client.post("/uploads", json=registration)
        if response.status_code >= 300:
            raise SystemExit(f"registration refused: HTTP {response.status_code} {response.text[:500]}")
        ticket = response.json()
        if ticket["upload_method"] == "multipart":
            _save(state_path, ticket)
    print(f"upload {ticket['id']} -> s3://{ticket['bucket']}/{ticket['key']}", file=sys.stderr)
    if ticket["upload_method"] == "PUT":
        _put(path, ticket["upload_url"], ticket.get("upload_headers", {}))
    else:
        _multipart(client, path, ticket, workers)
        state_path.unlink(missing_ok=True)
    return ticket


def _resumable(client: httpx.Client, state_path: Path) -> dict[str, Any] | None:
    """The multipart upload this file was left in, if it still waits for its parts."""
    if not state_path.exists():
        return None
    ticket: dict[str, Any] = json.loads(state_path.read_text())
    status = client.get(f"/uploads/{ticket['id']}")
    if status.status_code == 200 and status.json()["state"] == "awaiting_upload":
        print(f"resuming upload {ticket['id']}", file=sys.stderr)
        return ticket
    state_path.unlink(missing_ok=True)  # finished, expired or gone: start afresh
    return None


def _put(path: Path, url: str, signed_headers: dict[str, str]) -> None:
    """PUT the file to its ticket, with the headers the ticket signed (the store checks them)."""
    size = path.stat().st_size
    progress = Progress(size)

    def body() -> Iterator[bytes]:
        with path.open("rb") as source:
            while chunk := source.read(READ_CHUNK):
                progress.add(len(chunk))
                yield chunk

    response = httpx.put(url, content=body(), headers={**signed_headers, "Content-Length": str(size)}, timeout=None)
    progress.finish()
    if response.status_code >= 300:
        raise SystemExit(f"upload failed: HTTP {response.status_code} {response.text[:500]}")


def _multipart(client: httpx.Client, path: Path, ticket: dict[str, Any], workers: int) -> None:
    plan = ticket["multipart"]
    size, part_size, count = path.stat().st_size, plan["part_size"], plan["part_count"]
    stored = {p["number"] for p in client.get(plan["parts_url"]).raise_for_status().json()["parts"]}
    todo = [n for n in range(1, count + 1) if n not in stored]
    already = sum(min(part_size, size - (n - 1) * part_size) for n in stored)
    if stored:
        print(f"{len(stored)} of {count} parts already stored; sending {len(todo)}", file=sys.stderr)
    progress = Progress(size, already)

    def send(number: int) -> None:
        with path.open("rb") as source:
            source.seek((number - 1) * part_size)
            data = source.read(part_size)
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        signed = client.post(plan["parts_url"], json={"parts": [{"number": number, "md5": md5}]})
        signed.raise_for_status()
        url = signed.json()["parts"][0]["url"]
        for attempt in range(5):
            try:
                put = httpx.put(url, content=data, headers={"Content-MD5": md5}, timeout=300)
                if put.status_code < 300:
                    break
                raise SystemExit(f"part {number} refused: HTTP {put.status_code} {put.text[:300]}")
            except httpx.TransportError:
                if attempt == 4:
                    raise
                time.sleep(2**attempt)
        progress.add(len(data))
        failpoint("cli.after_part")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(send, todo))  # raises the first part's error, if any
    progress.finish()
    parts = client.get(plan["parts_url"]).raise_for_status().json()["parts"]
    if sorted(p["number"] for p in parts) != list(range(1, count + 1)):
        raise SystemExit(f"the store has {len(parts)} of {count} parts; run the same command again")
    xml = (
        "<CompleteMultipartUpload>"
        + "".join(
            f"<Part><PartNumber>{p['number']}</PartNumber><ETag>{escape(p['etag'])}</ETag></Part>"
            for p in sorted(parts, key=lambda p: p["number"])
        )
        + "</CompleteMultipartUpload>"
    )
    done = httpx.post(plan["complete_url"], content=xml.encode(), timeout=600)
    # S3 may answer 200 and still report an error in the body.
    if done.status_code >= 300 or b"<Error>" in done.content:
        raise SystemExit(f"completing the upload failed: HTTP {done.status_code} {done.text[:500]}")
