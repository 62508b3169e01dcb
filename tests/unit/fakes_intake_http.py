"""A small in-memory intake and store behind ``httpx.MockTransport``, for the CLI's unit tests: the
real ``genobase.client.Client`` talks to it, so the commands run through the same code as against
the stack, only the network is replaced.

It knows one key (``GOOD_KEY``), answers problems as the intake does (RFC 9457 bodies with a
code), and moves an upload to ``done`` (or ``failed`` for a file whose content starts with
``!``) once its object is PUT.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

GOOD_KEY = "gbk_good-key-for-tests"
ENDPOINT = "http://localhost:8765"  # loopback: no plain-http warning in every test
STORE = "http://store.test"


def problem(status: int, code: str, detail: str) -> httpx.Response:
    body = {
        "type": f"https://genobase.dev/problems/{code}",
        "title": code,
        "status": status,
        "detail": detail,
        "code": code,
        "error_id": "e" * 16,
    }
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json"})


def status_body(upload_id: str, filename: str, state: str, **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    body: dict[str, Any] = {
        "id": upload_id,
        "bucket": "uploads",
        "key": f"alice/{upload_id}/{filename}",
        "filename": filename,
        "registered": True,
        "state": state,
        "generation": 1,
        "format": "fasta",
        "progress": {
            "bytes_done": 0,
            "bytes_total": None,
            "records_done": 0,
            "records_total": None,
            "records_assembled": 0,
            "fraction": 0.0,
        },
        "duplicate_names": None,
        "empty_sequences": None,
        "error": None,
        "result": None,
        "times": {"parsing_started_at": None, "parsed_at": None, "assembly_started_at": None, "finished_at": None},
        "stall": {"stalled": False, "idle_seconds": 0.0, "pickups": 0, "last_pickup_at": None},
        "source": {
            "bucket": "uploads",
            "key": f"alice/{upload_id}/{filename}",
            "etag": None,
            "size": None,
            "md5": None,
            "sha256": None,
        },
        "mode": "store",
        "labels": {},
        "created_at": now,
        "updated_at": now,
    }
    body.update(extra)
    return body


class FakeIntake:
    """The intake's routes the CLI uses, and the store's signed URLs, in memory."""

    def __init__(self) -> None:
        self.uploads: dict[str, dict[str, Any]] = {}
        self.results: dict[str, bytes] = {}
        self.requests: list[httpx.Request] = []
        self.owner_of: dict[str, str] = {}

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def add(self, filename: str, state: str, result: bytes | None = None, **extra: Any) -> str:
        upload_id = str(uuid.uuid4())
        self.uploads[upload_id] = status_body(upload_id, filename, state, **extra)
        if result is not None:
            self._finish(upload_id, result)
        return upload_id

    def _finish(self, upload_id: str, document: bytes) -> None:
        status = self.uploads[upload_id]
        status["state"] = "done"
        status["progress"] |= {"records_done": 2, "records_total": 2, "fraction": 1.0}
        status["result"] = {
            "url": f"{STORE}/results/{upload_id}.json",
            "expires_at": datetime.now(UTC).isoformat(),
            "bucket": "results",
            "key": f"{upload_id}.json",
            "size": len(document),
            "records": 2,
            "sha256": hashlib.sha256(document).hexdigest(),
        }
        self.results[upload_id] = document

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = request.url
        if str(url).startswith(STORE):
            return self._store(request)
        if request.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
            return problem(401, "unauthorized", "a valid API key is required")
        parts = url.path.strip("/").split("/")
        if request.method == "GET" and url.path == "/uploads":
            return self._list(request)
        if request.method == "POST" and url.path == "/uploads":
            return self._register(request)
        if len(parts) >= 2 and parts[0] == "uploads":
            upload_id = parts[1]
            status = self.uploads.get(upload_id)
            if status is None or self.owner_of.get(upload_id, "alice") != "alice":
                return problem(404, "not_found", f"no upload {upload_id}")
            if len(parts) == 2 and request.method == "GET":
                if status["state"] == "queued" and status["result"] is not None:
                    status["state"] = "done"  # a retried upload's new generation
                return httpx.Response(200, json=status)
            if len(parts) == 2 and request.method == "DELETE":
                status.update(state="deleted", result=None)
                return httpx.Response(202, json=status)
            if parts[2:] == ["retry"] and request.method == "POST":
                if status["state"] != "failed":
                    return problem(409, "not_failed", f"the upload is {status['state']}")
                status.update(state="queued", generation=status["generation"] + 1, error=None)
                self._finish(upload_id, b'{"records": []}')
                status["state"] = "queued"  # done at the next GET
                return httpx.Response(202, json=status)
            if parts[2:] == ["result"] and request.method == "GET":
                if status["state"] != "done":
                    return problem(409, "result_not_ready", "not done")
                return httpx.Response(302, headers={"Location": f"{STORE}/results/{upload_id}.json"})
        return problem(404, "not_found", "no such route")

    def _list(self, request: httpx.Request) -> httpx.Response:
        state = request.url.params.get("state")
        rows = []
        for status in reversed(list(self.uploads.values())):
            if state and status["state"] != state:
                continue
            rows.append(
                {
                    "id": status["id"],
                    "owner": "alice",
                    "filename": status["filename"],
                    "bucket": status["bucket"],
                    "key": status["key"],
                    "state": status["state"],
                    "format": status["format"],
                    "generation": status["generation"],
                    "mode": status["mode"],
                    "size": 10,
                    "records": status["result"]["records"] if status["result"] else None,
                    "result_size": status["result"]["size"] if status["result"] else None,
                    "labels": status["labels"],
                    "error_code": status["error"]["code"] if status["error"] else None,
                    "created_at": status["created_at"],
                    "updated_at": status["updated_at"],
                    "status_url": f"{ENDPOINT}/uploads/{status['id']}",
                }
            )
        limit = int(request.url.params.get("limit", "100"))
        return httpx.Response(200, json={"uploads": rows[:limit], "next_cursor": None})

    def _register(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        upload_id = self.add(body["filename"], "awaiting_upload", labels=body.get("labels", {}), mode=body["mode"])
        ticket = {
            "id": upload_id,
            "bucket": "uploads",
            "key": f"alice/{upload_id}/{body['filename']}",
            "upload_method": "PUT",
            "upload_url": f"{STORE}/uploads/{upload_id}",
            "upload_headers": {"Content-Type": "application/octet-stream"},
            "multipart": None,
            "expires_at": datetime.now(UTC).isoformat(),
            "status_url": f"{ENDPOINT}/uploads/{upload_id}",
        }
        return httpx.Response(201, json=ticket)

    def _store(self, request: httpx.Request) -> httpx.Response:
        assert "Authorization" not in request.headers, "the key never goes to the store"
        parts = request.url.path.strip("/").split("/")
        if request.method == "PUT" and parts[0] == "uploads":
            upload_id = parts[1]
            content = request.read()
            status = self.uploads[upload_id]
            if content.startswith(b"!"):
                error = {"code": "invalid_character", "message": "bad '!'", "line": 1, "column": 1, "error_id": None}
                status.update(state="failed", error=error)
            elif status["mode"] == "validate":
                report = {"records": 2, "format": "fasta", "bytes": len(content), "source_md5": "m",
                          "source_sha256": "s", "collection_digest": "d" * 32}  # fmt: skip
                status.update(state="done", validation=report)
            else:
                self._finish(upload_id, json.dumps({"records": [content.decode()]}).encode())
            return httpx.Response(200)
        if request.method == "GET" and parts[0] == "results":
            upload_id = parts[1].removesuffix(".json")
            return httpx.Response(200, content=self.results[upload_id])
        return httpx.Response(404)
