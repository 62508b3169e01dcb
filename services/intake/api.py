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
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Security, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.intake.schemas import (
    BUCKET_NAME,
    MAX_KEY_BYTES,
    OBJECT_KEY,
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
)
from shared.domain.access import Caller
from shared.domain.uploads import QuotaExceeded, QuotaRefusal, new_error_id
from shared.s3.store import UPLOAD_CONTENT_TYPE
from shared.usecases import uploads as usecases
from shared.usecases.uploads import Intake, NoSuchPart, NoSuchUpload, NotAwaitingParts, UploadTooLarge, UploadView
from shared.web.guard import caller_or_refusal

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
router = APIRouter()


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
    if isinstance(refused, NoSuchUpload):  # a plain message, as for a route that does not exist
        return HTTPException(status.HTTP_404_NOT_FOUND, refused.message)
    statuses = {
        UploadTooLarge: status.HTTP_413_CONTENT_TOO_LARGE,
        NotAwaitingParts: status.HTTP_409_CONFLICT,
        NoSuchPart: status.HTTP_422_UNPROCESSABLE_CONTENT,
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
        deletion=None
        if upload.deleted_at is None
        else Deletion(deleted_at=upload.deleted_at, purged=upload.purged_at is not None, purged_at=upload.purged_at),
        created_at=upload.created_at,
        updated_at=upload.updated_at,
    )


# --- the routes ------------------------------------------------------------------------------------


@router.post("/uploads", status_code=status.HTTP_201_CREATED, response_model=UploadTicket, responses=_REFUSALS)
def create_upload(body: UploadRequest, deps: DepsDep, caller: CallerDep) -> UploadTicket:
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
    )
    try:
        ticket = usecases.register_upload(deps.intake, caller, wanted)
    except QuotaExceeded as exc:
        raise quota_exceeded(exc.refusal, caller.name) from None
    except usecases.Refused as refused:
        raise _refusal(refused) from None
    return ticket_answer(ticket, deps.intake.settings.status_base_url)


@router.post("/uploads/{upload_id}/parts", response_model=PartsAnswer)
def sign_parts(upload_id: uuid.UUID, body: PartsRequest, deps: DepsDep, caller: CallerDep) -> PartsAnswer:
    """Signed PUT URLs for parts of a multipart upload, each for its MD5 and its exact size."""
    wanted = [usecases.PartWanted(part.number, part.md5) for part in body.parts]
    try:
        signed = usecases.sign_parts(deps.intake, caller, upload_id, wanted)
    except usecases.Refused as refused:
        raise _refusal(refused) from None
    return PartsAnswer(parts=[SignedPart(number=p.number, size=p.size, md5=p.md5, url=p.url) for p in signed])


@router.get("/uploads/{upload_id}/parts", response_model=PartsAnswer)
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


@router.get("/uploads", response_model=UploadStatus)
def find_upload(
    deps: DepsDep,
    caller: CallerDep,
    bucket: Annotated[str, Query(min_length=3, max_length=63, pattern=BUCKET_NAME)],
    key: Annotated[str, Query(min_length=1, max_length=MAX_KEY_BYTES, pattern=OBJECT_KEY)],
) -> UploadStatus:
    """Look an upload up by its object, e.g. one written straight to the bucket without registering."""
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            {"code": "key_too_long", "message": f"an object key is at most {MAX_KEY_BYTES} bytes of UTF-8"},
        )
    try:
        return status_answer(usecases.find_upload(deps.intake, caller, bucket, key))
    except usecases.Refused as refused:
        raise _refusal(refused) from None


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(deps: DepsDep) -> Any:
    """Public: each dependency is "ok" or "unavailable" with an error id; the detail (addresses,
    user names, a server's own words) goes to the intake's log under that id, never to the caller."""
    checks: dict[str, str] = {}
    for name, probe in deps.probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:
            error_id = new_error_id()
            log.warning("health check failed", check=name, error=repr(exc), error_id=error_id)
            checks[name] = f"unavailable (error id {error_id})"
    healthy = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if healthy else "degraded", checks=checks)
    if healthy:
        return body
    return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


# --- deleting an upload ----------------------------------------------------------------------------


@router.delete(
    "/uploads/{upload_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadStatus,
    responses={404: {"description": "no such upload, or another owner's (no_such_upload)"}},
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
