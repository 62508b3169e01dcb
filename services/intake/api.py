"""HTTP routes of the intake service: register an upload, poll its status, sign parts, check health.

Thin: each route parses its request, calls a use case (``shared/usecases/uploads.py``) and shapes
its answer (``schemas.py``); a use case's refusal becomes its status code here. There is
deliberately no "file uploaded" route: processing starts from the bucket notification, so an
upload made with any S3 client is processed the same way.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.intake.schemas import (
    Deletion,
    Health,
    MultipartTicket,
    PartsAnswer,
    PartsRequest,
    Progress,
    SignedPart,
    Source,
    StageTimes,
    Stall,
    StoredPart,
    UploadError,
    UploadRequest,
    UploadResult,
    UploadStatus,
    UploadTicket,
    ValidationReport,
)
from shared.domain.access import Caller
from shared.domain.read_ports import RecordReads
from shared.domain.uploads import Mode, QuotaExceeded, QuotaRefusal, new_error_id
from shared.s3.store import UPLOAD_CONTENT_TYPE
from shared.usecases import uploads as usecases
from shared.usecases.uploads import (
    CannotRetry,
    Intake,
    NoSuchPart,
    NoSuchUpload,
    NotAwaitingParts,
    RetryNotPublished,
    UploadTooLarge,
    UploadView,
)
from shared.web.guard import caller_or_refusal
from shared.web.problems import problem_response

log = structlog.get_logger()


@dataclass(frozen=True)
class IntakeDeps:
    """What the routes are given: the use cases' ports, the key check, and the health probes.

    ``authenticate`` turns an ``Authorization`` header into the caller behind it (``Unauthorized``
    otherwise); ``AuthBeforeBody`` runs it before a request's body is read. ``probes``: each
    dependency's check, by name, raising when it is away.
    """

    intake: Intake
    authenticate: Callable[[str | None], Caller]
    probes: Mapping[str, Callable[[], object]]
    records: RecordReads  # a done upload's records, read back by services/intake/records.py


def get_deps(request: Request) -> IntakeDeps:
    return request.app.state.deps  # type: ignore[no-any-return]


DepsDep = Annotated[IntakeDeps, Depends(get_deps)]
_bearer = HTTPBearer(auto_error=False, description="an API key (genobase keys create NAME)")


def get_caller(
    request: Request,
    deps: DepsDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Caller:
    """The owner behind the request's key: a missing, unknown or revoked key is a 401. A request
    with a body was already authenticated, before its body was read (``AuthBeforeBody``)."""
    caller: Caller = caller_or_refusal(request, deps.authenticate)  # type: ignore[assignment]
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]
router = APIRouter(tags=["uploads"])
health = APIRouter(tags=["health"])


# --- refusals as HTTP ------------------------------------------------------------------------------


def quota_exceeded(refusal: QuotaRefusal, owner: str) -> HTTPException:
    """429 with Retry-After for a count or a rate (waiting helps), 413 for the stored bytes."""
    error_id = new_error_id()
    log.info("registration refused by a quota", owner=owner, code=refusal.code.value, error_id=error_id)
    body = {"code": refusal.code.value, "message": refusal.message, "error_id": error_id}
    if refusal.retry_after is None:
        return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, body)
    seconds = max(1, math.ceil(refusal.retry_after.total_seconds()))
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, body, headers={"Retry-After": str(seconds)})


def _refusal(refused: usecases.Refused) -> HTTPException:
    if isinstance(refused, NoSuchUpload):  # the code of a route that does not exist: nothing told apart
        return HTTPException(status.HTTP_404_NOT_FOUND, {"code": "not_found", "message": refused.message})
    if isinstance(refused, CannotRetry):  # the state too: a client sees what it is waiting for
        body = {"code": refused.code, "message": refused.message, "state": refused.state.value}
        return HTTPException(status.HTTP_409_CONFLICT, body)
    statuses = {
        UploadTooLarge: status.HTTP_413_CONTENT_TOO_LARGE,
        NotAwaitingParts: status.HTTP_409_CONFLICT,
        NoSuchPart: status.HTTP_422_UNPROCESSABLE_CONTENT,
        usecases.LabelsRefused: status.HTTP_422_UNPROCESSABLE_CONTENT,
        usecases.InvalidIdempotencyKey: status.HTTP_422_UNPROCESSABLE_CONTENT,
        usecases.IdempotencyKeyConflict: status.HTTP_409_CONFLICT,
        usecases.InvalidListing: status.HTTP_422_UNPROCESSABLE_CONTENT,
        usecases.NotAdmin: status.HTTP_403_FORBIDDEN,
        usecases.UploadDeleted: status.HTTP_409_CONFLICT,
    }
    # A refusal without a status of its own is the caller's request refused, never a 500.
    code = next((code for kind, code in statuses.items() if isinstance(refused, kind)), status.HTTP_400_BAD_REQUEST)
    return HTTPException(code, {"code": refused.code, "message": refused.message})


_REFUSALS: dict[int | str, dict[str, Any]] = {
    413: {"description": "larger than GENOBASE_MAX_UPLOAD_BYTES (upload_too_large), or beyond the owner's stored "
          "bytes (storage_quota_exceeded)"},
    429: {"description": "beyond the owner's uploads in flight, open multipart uploads or registrations a minute "
          "(too_many_uploads_in_flight, too_many_multipart_uploads, registration_rate_exceeded); "
          "the Retry-After header says when to try again"},
}  # fmt: skip


# --- answers from the use cases' values -----------------------------------------------------------


def ticket_answer(ticket: usecases.Ticket, status_base_url: str) -> UploadTicket:
    status_url = f"{status_base_url}/uploads/{ticket.upload_id}"
    if ticket.multipart is None:
        return UploadTicket(
            id=ticket.upload_id,
            bucket=ticket.bucket,
            key=ticket.key,
            expires_at=ticket.expires_at,
            upload_url=ticket.upload_url,
            upload_headers={"Content-Type": UPLOAD_CONTENT_TYPE},
            status_url=status_url,
        )
    links = ticket.multipart
    return UploadTicket(
        id=ticket.upload_id,
        bucket=ticket.bucket,
        key=ticket.key,
        expires_at=ticket.expires_at,
        upload_method="multipart",
        multipart=MultipartTicket(
            upload_id=links.upload_id,
            part_size=links.part_size,
            part_count=links.part_count,
            parts_url=f"{status_url}/parts",
            complete_url=links.complete_url,
            abort_url=links.abort_url,
            list_parts_url=links.list_parts_url,
        ),
        status_url=status_url,
    )


def status_answer(view: UploadView) -> UploadStatus:
    upload = view.upload
    failure = upload.failure
    error = None
    if failure is not None:
        error = UploadError(
            code=failure.code,
            message=failure.message,
            line=failure.line,
            column=failure.column,
            error_id=failure.error_id or None,
        )
    result = None
    if view.result is not None:
        link = view.result
        result = UploadResult(
            url=link.url,
            expires_at=link.expires_at,
            bucket=link.bucket,
            key=link.key,
            size=link.size,
            records=link.records,
            sha256=link.sha256,
        )
    return UploadStatus(
        id=upload.id,
        bucket=upload.bucket,
        key=upload.key,
        filename=upload.filename,
        registered=upload.registered,
        state=upload.state,
        generation=upload.generation,
        format=upload.format,
        progress=Progress(
            bytes_done=upload.bytes_done,
            bytes_total=upload.bytes_total,
            records_done=upload.records_done,
            records_total=upload.records_total,
            records_assembled=upload.records_assembled,
            fraction=view.fraction,
        ),
        duplicate_names=upload.duplicate_names,
        empty_sequences=upload.empty_sequences,
        error=error,
        result=result,
        times=StageTimes(
            parsing_started_at=upload.parsing_started_at,
            parsed_at=upload.parsed_at,
            assembly_started_at=upload.assembly_started_at,
            finished_at=upload.finished_at,
        ),
        stall=Stall(
            stalled=view.stalled,
            idle_seconds=view.idle_seconds,
            pickups=upload.pickups,
            last_pickup_at=upload.picked_up_at,
        ),
        source=Source(
            bucket=upload.bucket,
            key=upload.key,
            etag=upload.etag,
            size=upload.bytes_total,
            md5=upload.source_md5,
            sha256=upload.source_sha256,
        ),
        collection_digest=view.collection_digest,
        mode=Mode(upload.mode),
        validation=ValidationReport(**report.to_json()) if (report := upload.report) is not None else None,
        labels=dict(upload.labels),
        deletion=None
        if upload.deleted_at is None
        else Deletion(deleted_at=upload.deleted_at, purged=upload.purged_at is not None, purged_at=upload.purged_at),
        created_at=upload.created_at,
        updated_at=upload.updated_at,
    )


# --- the routes ------------------------------------------------------------------------------------


_REGISTRATION_ANSWERS: dict[int | str, dict[str, Any]] = {
    **_REFUSALS,
    200: {"model": UploadTicket, "description": "a replay: the upload registered before under the same "
          "Idempotency-Key and the same request, signed afresh until its ticket's end"},
    409: {"description": "idempotency_key_reused: the Idempotency-Key was used with another request"},
    422: {"description": "an invalid request: invalid_labels, invalid_idempotency_key, or a field out of bounds"},
}  # fmt: skip


@router.post(
    "/uploads", status_code=status.HTTP_201_CREATED, response_model=UploadTicket, responses=_REGISTRATION_ANSWERS
)
def create_upload(
    body: UploadRequest,
    deps: DepsDep,
    caller: CallerDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="1 to 255 printable ASCII characters, per owner: the same key with the same request "
            "registers once (200 with the same upload), with another request 409; kept with the upload",
        ),
    ] = None,
) -> UploadTicket:
    """Register an upload and get a presigned PUT URL for one object key of exactly the declared size.

    The key is under the caller's prefix. A ticket not used within its lifetime (plus
    GENOBASE_TICKET_GRACE_SECONDS) ends as ``expired``. An owner's quotas (``GENOBASE_QUOTA_*``;
    admin keys have none) refuse a registration beyond them: 429 with Retry-After, or 413.
    """
    wanted = usecases.UploadWanted(
        filename=body.filename,
        size=body.size,
        declared_format=body.format.value if body.format is not None else None,
        alphabet=body.alphabet.value,
        circular=body.circular,
        mode=body.mode,
        labels=body.labels,
        idempotency_key=idempotency_key,
    )
    try:
        ticket = usecases.register_upload(deps.intake, caller, wanted)
    except QuotaExceeded as exc:
        raise quota_exceeded(exc.refusal, caller.name) from None
    except usecases.Refused as refused:
        raise _refusal(refused) from None
    if ticket.replayed:
        response.status_code = status.HTTP_200_OK
    return ticket_answer(ticket, deps.intake.settings.status_base_url)


_NOT_AWAITING: dict[int | str, dict[str, Any]] = {
    409: {"description": "not a multipart upload waiting for its parts (not_awaiting_parts)"}
}


@router.post(
    "/uploads/{upload_id}/parts",
    response_model=PartsAnswer,
    responses={
        **_NOT_AWAITING,
        422: {
            "description": "a part number beyond the upload's (no_such_part), or a body "
            "field that does not validate (invalid_request)"
        },
    },
)
def sign_parts(upload_id: uuid.UUID, body: PartsRequest, deps: DepsDep, caller: CallerDep) -> PartsAnswer:
    """Signed PUT URLs for parts of a multipart upload, each for its MD5 and its exact size."""
    wanted = [usecases.PartWanted(part.number, part.md5) for part in body.parts]
    try:
        signed = usecases.sign_parts(deps.intake, caller, upload_id, wanted)
    except usecases.Refused as refused:
        raise _refusal(refused) from None
    return PartsAnswer(parts=[SignedPart(number=p.number, size=p.size, md5=p.md5, url=p.url) for p in signed])


@router.get("/uploads/{upload_id}/parts", response_model=PartsAnswer, responses=_NOT_AWAITING)
def stored_parts(upload_id: uuid.UUID, deps: DepsDep, caller: CallerDep) -> PartsAnswer:
    """The parts the store already has: a client that was interrupted sends only the others."""
    try:
        found = usecases.stored_parts(deps.intake, caller, upload_id)
    except usecases.Refused as refused:
        raise _refusal(refused) from None
    return PartsAnswer(parts=[StoredPart(number=p.number, etag=p.etag, size=p.size) for p in found])


@router.get("/uploads/{upload_id}", response_model=UploadStatus)
def upload_status(upload_id: uuid.UUID, deps: DepsDep, caller: CallerDep) -> UploadStatus:
    try:
        return status_answer(usecases.show_upload(deps.intake, caller, upload_id))
    except usecases.Refused as refused:
        raise _refusal(refused) from None


@health.get(
    "/healthz",
    response_model=Health,
    responses={503: {"description": "a dependency is unavailable (unavailable); the problem's checks name each"}},
)
def healthz(deps: DepsDep) -> Any:
    """Public: each dependency is "ok" or "unavailable" with an error id; the detail (addresses,
    user names, a server's own words) goes to the intake's log under that id, never to the caller.
    Unhealthy, the answer is a 503 problem whose ``checks`` member holds the same."""
    checks: dict[str, str] = {}
    for name, probe in deps.probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:
            error_id = new_error_id()
            log.warning("health check failed", check=name, error=repr(exc), error_id=error_id)
            checks[name] = f"unavailable (error id {error_id})"
    unavailable = [name for name, check in checks.items() if check != "ok"]
    if not unavailable:
        return Health(status="ok", checks=checks)
    return problem_response(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "unavailable",
        f"unavailable: {', '.join(unavailable)}",
        extensions={"checks": checks},
    )


# --- retry ----------------------------------------------------------------------------------------

_RETRY_REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such upload (or another owner's)"},
    409: {"description": "not retried: not_failed (the body names the upload's state), object_gone (the object is "
          "no longer in the store), object_changed (another object under the key: its own event makes it a new "
          "generation)"},
    429: {"description": "beyond the owner's uploads in flight (too_many_uploads_in_flight); see Retry-After"},
}  # fmt: skip


@router.post(
    "/uploads/{upload_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadStatus,
    responses=_RETRY_REFUSALS,
)
def retry_upload(upload_id: uuid.UUID, deps: DepsDep, caller: CallerDep) -> UploadStatus:
    """Drive a failed upload again from its object, as a new generation (late messages of the failed
    one are ignored); the answer is its status, ``queued``, with the new generation."""
    try:
        retried = usecases.retry_upload(deps.intake, caller, upload_id)
    except QuotaExceeded as exc:
        raise quota_exceeded(exc.refusal, caller.name) from None
    except RetryNotPublished as exc:
        # Committed: the upload is queued, and the watchdog re-issues its message when it stalls.
        log.warning(
            "retry committed, its parse message not published: left to the watchdog",
            upload_id=str(exc.upload.id),
            generation=exc.upload.generation,
            error=repr(exc.__cause__),
        )
        retried = exc.upload
    except usecases.Refused as refused:
        raise _refusal(refused) from None
    log.info("upload retried", upload_id=str(retried.id), generation=retried.generation)
    return status_answer(usecases.upload_view(deps.intake, retried))


# --- deleting an upload ----------------------------------------------------------------------------


@router.delete(
    "/uploads/{upload_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadStatus,
    responses={404: {"description": "no such upload, or another owner's (not_found)"}},
)
def delete_upload(upload_id: uuid.UUID, deps: DepsDep, caller: CallerDep) -> UploadStatus:
    """Delete an upload wherever it is: its rows at once (refget stops serving what no other upload
    holds), its object, multipart upload and result documents at the watchdog's next sweep
    (``deletion.purged``). The status then reads ``deleted``, a tombstone with no data; deleting
    again answers the same. 202: the store's part is still to come when this answers."""
    try:
        view = usecases.delete_upload(deps.intake, caller, upload_id)
    except usecases.Refused as refused:
        raise _refusal(refused) from None
    log.info("upload deleted", upload_id=str(upload_id), generation=view.upload.generation, owner=caller.name)
    return status_answer(view)
