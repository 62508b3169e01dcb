"""The client's errors: one class per thing a caller does differently, each with the intake's
``code`` (what to branch on), a ``message`` safe to show, the ``error_id`` to quote to an operator
and a ``hint`` (what to try next), built from the RFC 9457 problem body when there is one."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from genobase.client.models import Problem

_HINTS: dict[str, str] = {
    "unauthorized": "check the API key (genobase keys create NAME makes one)",
    "key_revoked": "the key was revoked: ask for a new one",
    "not_found": "check the id; another owner's upload answers the same",
    "result_not_ready": "wait for the upload to be done (Client.wait)",
    "records_not_ready": "wait for the upload to be done (Client.wait)",
    "not_failed": "only a failed upload can be retried",
    "idempotency_key_reused": "use a new idempotency key for a different request",
    "upload_too_large": "the intake's GENOBASE_MAX_UPLOAD_BYTES is lower than the file",
    "storage_quota_exceeded": "delete uploads you no longer need",
    "checksum_mismatch": "download again; if it persists, the stored document differs from its record",
    "unreachable": "check the endpoint and that the intake is running (Client.health)",
}


class ClientError(Exception):
    """Anything the client could not do; the subclasses say which kind."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        error_id: str | None = None,
        hint: str | None = None,
        problem: Problem | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.error_id = error_id
        self.hint = hint if hint is not None else _HINTS.get(code)
        self.problem = problem

    def __str__(self) -> str:
        text = f"{self.message} ({self.code}"
        if self.status is not None:
            text += f", HTTP {self.status}"
        if self.error_id:
            text += f", error id {self.error_id}"
        return text + ")"


class AuthenticationError(ClientError):
    """401 or 403: a wrong, revoked or missing key, or a key that may not do this."""


class NotFoundError(ClientError):
    """404: no such upload or record (another owner's upload answers the same)."""


class ConflictError(ClientError):
    """409: not now (a retry of an upload that is not failed, a result not ready, a deleted upload)."""


class RefusedError(ClientError):
    """Any other refusal (4xx): a request out of bounds (422), too large (413), a quota (429)."""


class UnreachableError(ClientError):
    """The intake or the store did not answer (connection refused, DNS, timeouts), or kept failing
    (5xx), after the retries."""


class TimedOutError(ClientError):
    """``wait`` reached its timeout before the upload reached a final state."""


def problem_of(response: httpx.Response) -> Problem | None:
    """The answer's RFC 9457 body, if it has one (a proxy's HTML page does not)."""
    try:
        body: Any = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    try:
        return Problem.model_validate(body)
    except ValidationError:
        return None


def error_for(response: httpx.Response) -> ClientError:
    """The error for an answer of 400 or more (its body read)."""
    status = response.status_code
    problem = problem_of(response)
    if problem is not None:
        code, message, error_id = problem.code, problem.detail, problem.error_id
    else:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict"}.get(status, "http_error")
        if status >= 500:
            code = "server_error"
        message, error_id = f"HTTP {status} from {response.request.url.host}", None
    kind: type[ClientError]
    if status in (401, 403):
        kind = AuthenticationError
    elif status == 404:
        kind = NotFoundError
    elif status == 409:
        kind = ConflictError
    elif status >= 500:
        kind = UnreachableError
    else:
        kind = RefusedError
    return kind(code, message, status=status, error_id=error_id, problem=problem)
