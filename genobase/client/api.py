"""``Client``: the intake's HTTP interface as Python calls with typed answers.

Every request goes through ``Client._send``: idempotent requests (GET, DELETE, PATCH of labels,
PUT of parts, signing parts, ``POST /uploads`` with its Idempotency-Key) are retried with
exponential backoff on connection errors, 5xx and 429 (honouring Retry-After up to
``max_retry_after``), at most ``retries`` times and within ``retry_budget`` seconds in all; an
answer of 400 or more becomes a ``ClientError`` subclass carrying the problem body's code,
message and error id. The API key goes to the intake's endpoint only, never to the store's signed
URLs (those carry their own signature).
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from genobase.client.errors import ClientError, ConflictError, NotFoundError, TimedOutError, UnreachableError, error_for
from genobase.client.models import Record, TransferProgress, Upload, UploadPage, UploadSummary, UploadTicket
from genobase.client.transfer import (
    default_state_dir,
    load_state,
    put_whole,
    save_state,
    send_parts,
    state_path,
)

_M = TypeVar("_M", bound=BaseModel)

NDJSON = "application/x-ndjson"
MERGE_PATCH = "application/merge-patch+json"
DOWNLOAD_CHUNK = 1024 * 1024
RECORDS_PAGE = 1000  # the intake's largest page of records
ERROR_BODY_BYTES = 64 * 1024  # of an error answer, read for its problem body; the rest is not read
ANSWER_BYTES = 16 * 1024 * 1024  # a JSON answer (a status, a page of the listing) is far smaller
RECORD_LINE_BYTES = 1024**3  # one record of the NDJSON records (a chromosome's sequence is in it)
PART_NAME_BYTES = 200  # of the download's temporary name, so that its suffix fits in 255 bytes


class _Transient(Exception):
    """A failure worth another try: no answer (``error``) or a 5xx / 429 answer (``response``)."""

    def __init__(self, response: httpx.Response | None = None, error: httpx.TransportError | None = None) -> None:
        super().__init__(repr(error) if error is not None else f"HTTP {response.status_code if response else '?'}")
        self.response = response
        self.error = error


@dataclass
class _Tally:
    """How many attempts a request took (``retry`` tells a conflict of its own first try from one
    caused by an earlier attempt that took effect)."""

    attempts: int = 0


class Client:
    """The intake at ``endpoint`` (e.g. ``http://localhost:8000``) as the owner of ``api_key``.

    ``timeout``: seconds to connect, and between bytes read or written, per request. ``retries``:
    further attempts of an idempotent request, within ``retry_budget`` seconds in all (a closed
    port fails after that at the latest). ``state_dir``: where unfinished multipart uploads are
    remembered (``$XDG_DATA_HOME/genobase/transfers`` by default). ``transport``: an httpx
    transport for both the intake and the store (tests use ``httpx.MockTransport``). ``sleep``:
    how the retries wait (tests record it instead).
    """

    def __init__(
        self,
        endpoint: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        state_dir: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        retry_budget: float = 60.0,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.state_dir = state_dir if state_dir is not None else default_state_dir()
        self.retries = max(0, retries)
        self.retry_budget = retry_budget
        self.max_retry_after = max_retry_after
        self.backoff = backoff
        self._sleep = sleep
        headers = {"User-Agent": "genobase-client"}
        api_key = api_key.strip() if api_key else None
        if api_key:
            if any(not "\x21" <= character <= "\x7e" for character in api_key):
                # Not echoed: the HTTP library's own error would print the whole header.
                raise ClientError(
                    "invalid_api_key", "the API key has invalid characters", hint="a key is visible ASCII"
                )
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(base_url=self.endpoint, headers=headers, timeout=timeout, transport=transport)
        # The store's signed URLs: no key, no base URL.
        self._store = httpx.Client(timeout=timeout, transport=transport, headers={"User-Agent": "genobase-client"})

    # --- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()
        self._store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # --- uploads -----------------------------------------------------------------------------------

    def upload(
        self,
        path: str | Path,
        *,
        labels: Mapping[str, str] | None = None,
        mode: Literal["store", "validate"] = "store",
        format: str | None = None,
        alphabet: str = "nucleotide",
        circular: bool = False,
        wait: bool = False,
        timeout: float = 3600.0,
        parallel: int = 4,
        on_bytes: Callable[[TransferProgress], None] | None = None,
        on_status: Callable[[Upload], None] | None = None,
        idempotency_key: str | None = None,
    ) -> Upload:
        """Register ``path``, send it to the store, and return its status (at a final state when
        ``wait``). An upload interrupted earlier (same file, endpoint and mode) goes on: a multipart
        upload sends only the parts the store lacks, a single PUT is sent again to the same upload.
        The registration carries ``idempotency_key`` (a fresh one per call by default), so a
        registration retried after a lost answer registers once. ``on_bytes`` follows the bytes the
        store has; nothing is printed."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
        if path.is_dir():
            raise IsADirectoryError(f"a directory, not a file: {path}")
        state_file = state_path(self.state_dir, path, self.endpoint, mode)
        left = self._left_off(state_file)
        if isinstance(left, Upload):  # an earlier run completed it, and lost the answer
            if wait:
                return self.wait(left.id, timeout=timeout, on_status=on_status)
            if on_status is not None:
                on_status(left)
            return left
        ticket = left
        if ticket is None:
            registration: dict[str, Any] = {
                "filename": path.name,
                "size": path.stat().st_size,
                "alphabet": alphabet,
                "circular": circular,
                "mode": mode,
                "labels": dict(labels or {}),
            }
            if format is not None:
                registration["format"] = format
            key = idempotency_key or uuid.uuid4().hex
            answer = self._send(
                "POST", "/uploads", idempotent=True, json=registration, headers={"Idempotency-Key": key}
            )
            ticket = _model(UploadTicket, answer)
            # Remembered until the store has the object, whichever way it goes: a run that ends
            # before then goes on with this upload (its signed PUT lives as long as its ticket)
            # instead of registering a second one.
            save_state(state_file, ticket)
        if ticket.upload_method == "multipart":
            send_parts(_Calls(self, ticket.id), path, ticket, parallel, on_bytes)
        else:
            put_whole(_Calls(self, ticket.id), path, ticket, on_bytes)
        state_file.unlink(missing_ok=True)
        if wait:
            return self.wait(ticket.id, timeout=timeout, on_status=on_status)
        upload = self.get(ticket.id)
        if on_status is not None:
            on_status(upload)
        return upload

    def _left_off(self, state_file: Path) -> UploadTicket | Upload | None:
        """Where an earlier run left this file's upload: its ticket if it still waits for
        parts; the upload itself if its object arrived (the run completed it, but ended before it
        removed its state: uploading again would make a second upload); None if there is none to
        go on with (never started, expired, deleted, revoked, or unknown to this key)."""
        ticket = load_state(state_file)
        if ticket is None:
            return None
        try:
            upload = self.get(ticket.id)
        except NotFoundError:
            upload = None
        if upload is not None and upload.state == "awaiting_upload":
            return ticket
        state_file.unlink(missing_ok=True)
        if upload is None or upload.state in ("expired", "deleted", "revoked"):
            return None
        return upload

    def get(self, upload_id: str | uuid.UUID) -> Upload:
        """The upload's status (``GET /uploads/{id}``)."""
        return _model(Upload, self._send("GET", f"/uploads/{_id(upload_id)}", idempotent=True))

    def wait(
        self,
        upload_id: str | uuid.UUID,
        *,
        timeout: float = 3600.0,
        interval: float = 0.5,
        on_status: Callable[[Upload], None] | None = None,
    ) -> Upload:
        """Poll the status every ``interval`` seconds until a final state (done, failed, expired,
        revoked, deleted); ``on_status`` sees each status that differs from the one before.
        ``TimedOutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        shown: tuple[str, float, int] | None = None
        while True:
            upload = self.get(upload_id)
            seen = (upload.state, upload.progress.fraction, upload.generation)
            if on_status is not None and seen != shown:
                on_status(upload)
            shown = seen
            if upload.final:
                return upload
            if time.monotonic() + interval > deadline:
                raise TimedOutError(
                    "timed_out",
                    f"upload {upload.id} still {upload.state} after {timeout:g} s",
                    hint="wait again later: the upload goes on",
                )
            self._sleep(interval)

    def list(
        self,
        *,
        state: str | None = None,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        owner: str | None = None,
        limit: int | None = None,
        page_size: int = 100,
    ) -> Iterator[UploadSummary]:
        """The owner's uploads, newest first, following ``next_cursor`` page after page; at most
        ``limit`` in all when given. Filters combine: ``labels`` must all match."""
        filters = {
            "state": state,
            "name": name,
            "labels": labels,
            "created_after": created_after,
            "created_before": created_before,
            "owner": owner,
        }
        count, cursor = 0, None
        while True:
            wanted = page_size if limit is None else max(1, min(page_size, limit - count))
            page = self.page(cursor=cursor, page_size=wanted, **filters)
            for summary in page.uploads:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield summary
            cursor = page.next_cursor
            if cursor is None or (limit is not None and count >= limit):
                return

    def page(self, *, cursor: str | None = None, page_size: int = 100, **filters: Any) -> UploadPage:
        """One page of the listing (``GET /uploads``); ``filters`` as ``list``'s."""
        params: list[tuple[str, str]] = [("limit", str(page_size))]
        if cursor is not None:
            params.append(("cursor", cursor))
        unknown = set(filters) - {"state", "name", "labels", "created_after", "created_before", "owner"}
        if unknown:
            raise TypeError(f"unknown filters: {', '.join(sorted(unknown))}")
        if filters.get("state") is not None:
            params.append(("state", str(filters["state"])))
        for key in ("name", "owner"):
            if filters.get(key) is not None:
                params.append((key, str(filters[key])))
        for key in ("created_after", "created_before"):
            when = filters.get(key)
            if when is not None:
                params.append((key, when.isoformat() if isinstance(when, datetime) else str(when)))
        for label, value in (filters.get("labels") or {}).items():
            params.append(("label", f"{label}={value}"))
        return _model(UploadPage, self._send("GET", "/uploads", idempotent=True, params=params))

    def delete(self, upload_id: str | uuid.UUID) -> Upload:
        """Delete the upload (``DELETE /uploads/{id}``): its status then reads ``deleted``; the
        store's copies go at the watchdog's next sweep. Deleting again answers the same."""
        return _model(Upload, self._send("DELETE", f"/uploads/{_id(upload_id)}", idempotent=True))

    def retry(self, upload_id: str | uuid.UUID) -> Upload:
        """Process a failed upload again (``POST /uploads/{id}/retry``), as a new generation.

        Retried like an idempotent request: if an attempt took effect but its answer was lost, the
        next one is refused (409 ``not_failed``); the upload's status is then the answer. A 409 on
        the first attempt (the upload was not failed) raises ``ConflictError``."""
        tally = _Tally()
        try:
            answer = self._send("POST", f"/uploads/{_id(upload_id)}/retry", idempotent=True, tally=tally)
        except ConflictError as conflict:
            if tally.attempts > 1 and conflict.code == "not_failed":
                return self.get(upload_id)
            raise
        return _model(Upload, answer)

    def set_labels(self, upload_id: str | uuid.UUID, labels: Mapping[str, str | None]) -> Upload:
        """Merge ``labels`` into the upload's (RFC 7396): a value sets its key, None removes it."""
        answer = self._send(
            "PATCH",
            f"/uploads/{_id(upload_id)}",
            idempotent=True,
            json={"labels": dict(labels)},
            headers={"Content-Type": MERGE_PATCH},
        )
        return _model(Upload, answer)

    # --- a done upload's data ----------------------------------------------------------------------

    def result(
        self,
        upload_id: str | uuid.UUID,
        *,
        name: str | None = None,
        fields: Sequence[str] | None = None,
        page_size: int = RECORDS_PAGE,
        max_record_bytes: int = RECORD_LINE_BYTES,
    ) -> Iterator[Record]:
        """The upload's records in file order (``GET /uploads/{id}/records`` as NDJSON), a page
        at a time, each parsed as it arrives: memory holds one record (its sequence included:
        leave ``sequence`` out of ``fields`` for chromosomes). ``name``: ids starting with it.
        ``max_record_bytes`` (1 GiB by default, room for a whole human chromosome): a longer
        line is refused (``ClientError`` ``answer_too_large``) instead of filling memory."""
        cursor: str | None = None
        while True:
            params: list[tuple[str, str]] = [("limit", str(page_size))]
            if cursor is not None:
                params.append(("cursor", cursor))
            if name is not None:
                params.append(("name", name))
            if fields is not None:
                params.append(("fields", ",".join(fields)))
            response = self._send(
                "GET",
                f"/uploads/{_id(upload_id)}/records",
                idempotent=True,
                stream=True,
                params=params,
                headers={"Accept": NDJSON},
            )
            try:
                for line in _bounded_lines(response, max_record_bytes):
                    if line.strip():
                        yield Record.model_validate_json(line)
                link = response.links.get("next", {}).get("url")
            except (httpx.TransportError, ValueError) as exc:
                raise ClientError(
                    "incomplete_response",
                    "the records' answer ended short (the upload may have been processed again)",
                    hint="read the records again",
                ) from exc
            finally:
                response.close()
            cursor = _cursor_of(link)
            if cursor is None:
                return

    def record(self, upload_id: str | uuid.UUID, ordinal: int, *, fields: Sequence[str] | None = None) -> Record:
        """One record of a done upload by its 0-based position in the file."""
        params = {"fields": ",".join(fields)} if fields is not None else None
        answer = self._send("GET", f"/uploads/{_id(upload_id)}/records/{ordinal}", idempotent=True, params=params)
        return _model(Record, answer)

    def download(
        self,
        upload_id: str | uuid.UUID,
        path: str | Path,
        *,
        on_bytes: Callable[[TransferProgress], None] | None = None,
    ) -> Path:
        """Write the upload's result document to ``path``: streamed (a chunk in memory at a time)
        from a freshly signed link into a new file of its own beside ``path`` (``.NAME.RANDOM.part``,
        created exclusively: a link or a file already there is never written through or over, and
        a run cut short leaves nothing in the way of the next), its size and SHA-256 checked against the
        upload's ``result``, then renamed. A document recorded without a digest (written before
        the assembler recorded them: ``result.sha256`` is null) has its size checked only.
        ``ClientError`` ``checksum_mismatch`` when either differs (``path`` is then untouched)."""
        path = Path(path)
        upload = self.get(upload_id)
        if upload.result is None:
            raise ConflictError(
                "result_not_ready", f"upload {upload.id} is {upload.state}: it has no result document", status=409
            )
        expected_size, expected_sha256 = upload.result.size, upload.result.sha256
        attempt = 0
        while True:  # a body cut short is read again from the start, on a freshly signed link
            attempt += 1
            partial, descriptor = _new_partial(path)
            try:
                with os.fdopen(descriptor, "wb") as out:
                    written, digest = self._fetch_result(upload.id, out, path, expected_size, on_bytes)
                break
            except httpx.TransportError as exc:
                partial.unlink(missing_ok=True)
                if attempt > self.retries:
                    raise UnreachableError(
                        "incomplete_download", "the store's answer ended short", hint="download again"
                    ) from exc
                self._sleep(_backoff(self.backoff, attempt))
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        mismatch = None
        if written != expected_size:
            mismatch = f"{written} bytes received, {expected_size} expected"
        elif expected_sha256 is not None and digest != expected_sha256:
            mismatch = f"SHA-256 {digest} received, {expected_sha256} expected"
        if mismatch is not None:
            partial.unlink(missing_ok=True)
            raise ClientError("checksum_mismatch", f"the result document of {upload.id} differs: {mismatch}")
        os.replace(partial, path)
        return path

    def _fetch_result(
        self,
        upload_id: uuid.UUID,
        out: BinaryIO,
        path: Path,
        expected_size: int,
        on_bytes: Callable[[TransferProgress], None] | None,
    ) -> tuple[int, str]:
        """Stream the result document from a freshly signed link into ``out`` (the empty file
        ``_new_partial`` made); its size and SHA-256 (hex). A transport error in the body is
        raised as it is (``download`` retries)."""
        link = self._send("GET", f"/uploads/{upload_id}/result", idempotent=True, follow_redirects=False)
        location = link.headers.get("location")
        if link.status_code not in (301, 302, 303, 307) or not location:
            raise ClientError(
                "unexpected_answer",
                f"the result link answered HTTP {link.status_code}",
                hint="is the endpoint a Genobase intake?",
            )
        digest = hashlib.sha256()
        written = 0
        response = self._send("GET", location, idempotent=True, stream=True, store=True)
        try:
            for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                written += len(chunk)
                if on_bytes is not None:
                    on_bytes(TransferProgress(path, written, expected_size, 0))
        finally:
            response.close()
        return written, digest.hexdigest()

    # --- the service -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok", "checks": {...}}``, or ``"unavailable"`` with the
        checks when a dependency is away (a 503). ``UnreachableError`` when nothing answers."""
        answer = self._send("GET", "/healthz", idempotent=True, retry_statuses=False, check=False)
        try:
            body: Any = answer.json() if answer.content else {}
        except ValueError:
            raise ClientError(
                "unexpected_answer",
                f"HTTP {answer.status_code} from {answer.request.url.host} is not the intake's answer",
                status=answer.status_code,
                hint="is the endpoint a Genobase intake?",
            ) from None
        if answer.status_code == 200:
            return dict(body)
        if answer.status_code == 503 and isinstance(body, dict):
            return {"status": "unavailable", "checks": body.get("checks", {}), "error_id": body.get("error_id")}
        raise error_for(answer)

    # --- the plumbing ------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        stream: bool = False,
        store: bool = False,
        retry_statuses: bool = True,
        check: bool = True,
        tally: _Tally | None = None,
        content: Any = None,
        follow_redirects: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request, retried when ``idempotent``; an answer of 400 or more raised as its error
        (unless not ``check``). ``store``: a signed URL of the store (no key sent). ``content``
        may be a function giving the body afresh for each attempt (a file's chunks)."""
        http = self._store if store else self._http
        started = time.monotonic()

        def attempt() -> httpx.Response:
            if tally is not None:
                tally.attempts += 1
            body = content() if callable(content) else content
            try:
                request = http.build_request(method, url, content=body, **kwargs)
                # Always streamed: an answer is read here within its bound, never whole at once
                # (and a body cut short while read is retried as a connection error is).
                response = http.send(request, stream=True, follow_redirects=follow_redirects)
                if retry_statuses and (response.status_code >= 500 or response.status_code == 429):
                    raise _Transient(response=_read_bounded(response, ERROR_BODY_BYTES, refuse=False))
                if response.status_code >= 400:
                    response = _read_bounded(response, ERROR_BODY_BYTES, refuse=False)
                elif not stream:
                    response = _read_bounded(response, ANSWER_BYTES, refuse=True)
            except httpx.LocalProtocolError:
                # A request that cannot be sent (a header with a CR or a non-ASCII character):
                # sending it again will not help, and the library's message quotes the header
                # (the key with it), so it is not chained.
                raise ClientError(
                    "invalid_request",
                    "the request could not be sent: a header or the URL has invalid characters",
                    hint="check the API key and the endpoint",
                ) from None
            except httpx.TransportError as exc:
                raise _Transient(error=exc) from exc
            return response

        attempts = self.retries + 1 if idempotent else 1

        def spent(state: RetryCallState) -> float:
            # The waits count in full even when ``sleep`` does not really sleep (the tests').
            return max(time.monotonic() - started, state.idle_for)

        def stop(state: RetryCallState) -> bool:
            return state.attempt_number >= attempts or spent(state) >= self.retry_budget

        def pause(state: RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome is not None else None
            left = max(0.0, self.retry_budget - spent(state))
            if isinstance(failure, _Transient) and failure.response is not None:
                after = _retry_after(failure.response)
                if after is not None:
                    return min(after, self.max_retry_after, left)
            return min(_backoff(self.backoff, state.attempt_number), left)

        retrying = Retrying(
            stop=stop,
            wait=pause,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            response = retrying(attempt)
        except _Transient as failure:
            if failure.response is not None:
                raise error_for(failure.response) from None
            where = "the store" if store else self.endpoint
            raise UnreachableError(
                "unreachable", f"no answer from {where}: {type(failure.error).__name__}"
            ) from failure.error
        if check and response.status_code >= 400:
            raise error_for(response)
        return response


class _Calls:
    """The transfer's requests, through the client's retries; the parts' routes are the intake's
    own (under the endpoint), never a URL from a ticket, so the key goes nowhere else."""

    def __init__(self, client: Client, upload_id: uuid.UUID) -> None:
        self._client = client
        self._parts = f"/uploads/{upload_id}/parts"

    def call(self, method: str, url: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response:
        return self._client._send(method, self._parts, idempotent=idempotent, **kwargs)

    def store_call(self, method: str, url: str, *, retry: bool = True, **kwargs: Any) -> httpx.Response:
        return self._client._send(method, url, idempotent=retry, store=True, **kwargs)


def _read_bounded(response: httpx.Response, limit: int, *, refuse: bool) -> httpx.Response:
    """Read the answer's body, at most ``limit`` bytes, and close it; returns the answer with
    that body (decoded: ``.content``, ``.json()`` as usual). Beyond ``limit``: ``refuse`` raises ``ClientError``
    ``answer_too_large``, else the body is cut there (an error body is read for its problem
    document only: a proxy's 300 MB error page is not kept)."""
    try:
        declared = int(response.headers.get("content-length", ""))
    except ValueError:
        declared = None
    chunks: list[bytes] = []
    size = 0
    try:
        if refuse and declared is not None and declared > limit:
            raise _too_large(response, limit)
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                if refuse:
                    raise _too_large(response, limit)
                break
    finally:
        response.close()
    # The same answer with the body read so far (already decoded: no content coding applies).
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
    return httpx.Response(
        response.status_code, headers=headers, content=b"".join(chunks)[:limit], request=response.request
    )


_BODY_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})


def _too_large(response: httpx.Response, limit: int) -> ClientError:
    return ClientError(
        "answer_too_large",
        f"the answer from {response.request.url.host} is larger than {limit:,} bytes",
        status=response.status_code,
        hint="is the endpoint a Genobase intake?",
    )


def _bounded_lines(response: httpx.Response, limit: int) -> Iterator[bytes]:
    """The body's lines (without their ``\\n``), each at most ``limit`` bytes (``ClientError``
    ``answer_too_large`` beyond: one line of NDJSON is one record, held in memory)."""
    pending = bytearray()
    scanned = 0  # bytes of ``pending`` known to hold no newline: each byte is searched once
    for chunk in response.iter_bytes():
        pending += chunk
        while (end := pending.find(b"\n", scanned)) >= 0:
            if end > limit:
                raise _too_large(response, limit)
            yield bytes(pending[:end])
            del pending[: end + 1]
            scanned = 0
        scanned = len(pending)
        if len(pending) > limit:
            raise _too_large(response, limit)
    if pending:
        yield bytes(pending)  # within ``limit``: checked above


def _model(kind: type[_M], response: httpx.Response) -> _M:
    """The answer as ``kind``; an answer that is not one (a redirect, an HTML page of a proxy,
    another service's JSON) is ``ClientError`` ``unexpected_answer``, not a parser's traceback."""
    problem = None
    if 200 <= response.status_code < 300:
        try:
            return kind.model_validate_json(response.content)
        except ValidationError as exc:
            problem = exc
    kind_of = response.headers.get("content-type", "no content type").split(";")[0]
    raise ClientError(
        "unexpected_answer",
        f"HTTP {response.status_code} ({kind_of[:60]}) from {response.request.url.host} is not the intake's answer",
        status=response.status_code,
        hint="is the endpoint a Genobase intake?",
    ) from problem


def _new_partial(path: Path) -> tuple[Path, int]:
    """A new empty file beside ``path`` for a download to write into: a random name (a leftover
    of a run cut short is never in the way), created exclusively and without following a link
    (``O_EXCL | O_NOFOLLOW``: nothing planted there is written through or over), mode 644 less
    the umask. Its name is shortened to fit the 255 bytes of a file name."""
    stem = path.name.encode()[:PART_NAME_BYTES].decode("utf-8", errors="ignore")
    for _ in range(100):
        candidate = path.with_name(f".{stem}.{secrets.token_hex(4)}.part")
        try:
            descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            continue
        return candidate, descriptor
    raise FileExistsError(f"no free temporary name beside {path}")


def _id(upload_id: str | uuid.UUID) -> str:
    """An upload id as a path segment: a UUID, checked here (a stray ``/`` never reaches a URL)."""
    try:
        return str(uuid.UUID(str(upload_id)))
    except ValueError:
        raise NotFoundError("not_found", f"not an upload id: {str(upload_id)[:64]!r}", status=None) from None


def _cursor_of(link: str | None) -> str | None:
    if not link:
        return None
    values = parse_qs(urlsplit(link).query).get("cursor")
    return values[0] if values else None


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the intake sends seconds; an HTTP date is not followed)."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _backoff(base: float, attempt: int) -> float:
    """Exponential backoff with jitter: ``base``, twice that, ... up to 30 s, plus up to ``base``
    at random (clients failed together do not come back together)."""
    grown: float = base * 2.0 ** (attempt - 1)
    return min(30.0, grown) + random.uniform(0, base)
