"""``genobase upload``'s transfer, now ``genobase.client``'s: this shim keeps the CLI's call and
its lines on stderr until the CLI calls the client itself.

The multipart state stays where the CLI kept it (``<GENOBASE_HOME>/transfers``), so an upload the
CLI left half way resumes; ``genobase.client.Client`` alone defaults to the user's data directory.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from genobase.client import Client, ClientError, TransferProgress
from genobase.client.transfer import state_path


class Progress:
    """One line on stderr: bytes sent, rate and time left (redrawn at most 4 times a second)."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._drawn = 0.0
        self._told_resumed = False
        self._lock = threading.Lock()

    def __call__(self, progress: TransferProgress) -> None:
        with self._lock:
            if not self._told_resumed and progress.parts_resumed:
                left = progress.parts - progress.parts_resumed
                print(
                    f"{progress.parts_resumed} of {progress.parts} parts already stored; sending {left}",
                    file=sys.stderr,
                )
            self._told_resumed = True
            now = time.monotonic()
            if now - self._drawn < 0.25 and progress.sent < progress.total:
                return
            self._drawn = now
            rate = (progress.sent - progress.resumed) / max(now - self._started, 1e-6)
            left_seconds = (progress.total - progress.sent) / rate if rate > 0 else float("inf")
            eta = f"{left_seconds:5.0f} s left" if left_seconds != float("inf") else "      "
            fraction = progress.sent / progress.total if progress.total else 1.0
            sent = f"{progress.sent / 1e6:9.1f} / {progress.total / 1e6:.1f} MB"
            line = f"sending {fraction * 100:5.1f}%  {sent}  {rate / 1e6:6.1f} MB/s  {eta}"
            print(f"\r{line}", end="", file=sys.stderr, flush=True)


def _state_path(home: Path, path: Path, base_url: str, mode: str = "store") -> Path:
    """Where an interrupted multipart upload of this file is remembered (per file, intake and mode)."""
    return state_path(home / "transfers", path, base_url, mode)


def upload(
    client: httpx.Client, path: Path, registration: dict[str, Any], home: Path, workers: int = 4
) -> dict[str, Any]:
    """Send ``path`` with ``client``'s endpoint and key; returns its id and status URL once the
    store has the whole object. A refusal ends the command with its message."""
    endpoint = str(client.base_url).rstrip("/")
    key = client.headers.get("authorization", "").removeprefix("Bearer ").strip() or None
    mode = str(registration.get("mode") or "store")
    try:
        with Client(endpoint, key, state_dir=home / "transfers") as genobase:
            uploaded = genobase.upload(
                path,
                mode="validate" if mode == "validate" else "store",
                format=registration.get("format"),
                alphabet=str(registration.get("alphabet") or "nucleotide"),
                circular=bool(registration.get("circular")),
                labels=registration.get("labels"),
                parallel=workers,
                on_bytes=Progress(),
            )
    except ClientError as error:
        print(file=sys.stderr)
        raise SystemExit(f"upload failed: {error}") from None
    print(file=sys.stderr)
    print(f"upload {uploaded.id} -> s3://{uploaded.bucket}/{uploaded.key}", file=sys.stderr)
    return {"id": str(uploaded.id), "status_url": f"{endpoint}/uploads/{uploaded.id}"}
