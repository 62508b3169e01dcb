"""HTTP routes of the intake service: register an upload, poll its status, check health.

There is deliberately no "file uploaded" route: processing starts from the bucket notification,
so an upload made with any S3 client is processed the same way.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pika
import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Security, status
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field, field_validator

from services.intake.multipart import MAX_PARTS
from services.intake.multipart import plan as multipart_plan
from shared.domain.access import Caller, can_see, owner_prefix
from shared.domain.uploads import (
    ERROR_CODES,
    ErrorCode,
    QuotaRefusal,
    Quotas,
    State,
    Upload,
    new_error_id,
    quota_refusal,
    quotas_of,
)
from shared.parsing.alphabet import AlphabetName
from shared.postgres import refget as collections
from shared.postgres import uploads as queries
from shared.postgres.connection import ping, request_pool
from shared.rabbitmq.broker import connect as amqp_connect
from shared.runtime import metrics
from shared.runtime.settings import Settings
from shared.s3.store import UPLOAD_CONTENT_TYPE, ObjectStore
from shared.web.body_limit import BodyLimit
from shared.web.guard import AuthBeforeBody, RequestId, api_key_caller, caller_or_refusal
from shared.web.headers import PageHeaders

# S3's own bounds: a key is at most 1,024 bytes of UTF-8 and an object at most 5 TiB. The key is
# ``<owner>/<upload id>/<name>`` (a key name is at most 63 bytes, an id 36), so a name of 512 bytes
# keeps it inside (tests/unit/test_assembly_and_intake.py checks the longest one).
STATIC = Path(__file__).parent / "static"
MAX_KEY_BYTES = 1024
MAX_FILENAME_BYTES = 512
MAX_OBJECT_BYTES = 5 * 1024**4
# A registration is a few hundred bytes of JSON: anything much larger is refused unread.
MAX_REQUEST_BYTES = 64 * 1024
MAX_JSON_DEPTH = 3  # the deepest request schema: {"parts": [{"number", "md5", "size"}]}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
# A look-up by object: what S3 allows (a bucket name is 3-63 characters, a key at most 1,024 bytes)
# and nothing Postgres cannot hold in text (NUL), so that no query string reaches it unchecked.
_BUCKET_NAME = r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"
_OBJECT_KEY = r"^[^\x00-\x1f\x7f]+$"

log = structlog.get_logger()


class UploadRequest(BaseModel):
    filename: str = Field(
        min_length=1,
        max_length=255,
        examples=["sample.fasta"],
        description=f"at most 255 characters and {MAX_FILENAME_BYTES} bytes of UTF-8, no control characters",
    )
    size: int = Field(
        ge=0,
        le=MAX_OBJECT_BYTES,
        description="the file's exact size in bytes: it is signed into the upload URL, so the store "
        "refuses a body of any other length (at most GENOBASE_MAX_UPLOAD_BYTES)",
    )
    format: Literal["fasta", "fastq", "csv", "tsv"] | None = Field(
        default=None, description="skip content detection and parse as this format"
    )
    alphabet: AlphabetName = AlphabetName.NUCLEOTIDE
    circular: bool = Field(
        default=False,
        description="the file's sequences are circular (a plasmid, a mitochondrion): the refget API then "
        "serves a slice whose start is after its end across the origin",
    )

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, filename: str) -> str:
        if _UNSAFE.search(filename):
            raise ValueError("a file name may not contain control characters")
        if len(filename.encode("utf-8")) > MAX_FILENAME_BYTES:
            raise ValueError(f"a file name may be at most {MAX_FILENAME_BYTES} bytes of UTF-8")
        return filename


class MultipartTicket(BaseModel):
    """A multipart upload: ask ``parts_url`` for signed part URLs (with each part's MD5), PUT the
    parts, then POST the CompleteMultipartUpload XML to ``complete_url`` -- straight to the store,
    whose own notification then starts the pipeline."""

    upload_id: str
    part_size: int
    part_count: int
    parts_url: str = Field(description="POST {parts: [{number, md5}]} for signed part URLs; GET: the parts stored")
    complete_url: str
    abort_url: str
    list_parts_url: str


class UploadTicket(BaseModel):
    id: uuid.UUID
    bucket: str
    key: str
    upload_method: Literal["PUT", "multipart"] = "PUT"
    upload_url: str | None = Field(default=None, description="PUT: the presigned URL for the whole file")
    upload_headers: dict[str, str] = Field(
        default_factory=dict, description="PUT: headers to send with upload_url, exactly (they are signed)"
    )
    multipart: MultipartTicket | None = None
    expires_at: datetime
    status_url: str


class PartWanted(BaseModel):
    number: int = Field(ge=1, le=MAX_PARTS)
    md5: str = Field(pattern=r"^[A-Za-z0-9+/]{22}==$", description="the part's MD5, base64 (as Content-MD5)")


class PartsRequest(BaseModel):
    parts: list[PartWanted] = Field(min_length=1, max_length=1000)


class SignedPart(BaseModel):
    number: int
    size: int
    md5: str
    url: str


class StoredPart(BaseModel):
    number: int
    etag: str
    size: int


class PartsAnswer(BaseModel):
    parts: list[SignedPart] | list[StoredPart]


class Progress(BaseModel):
    bytes_done: int
    bytes_total: int | None
    records_done: int
    records_total: int | None
    records_assembled: int
    fraction: float = Field(ge=0, le=1)


class UploadError(BaseModel):
    code: ErrorCode = Field(description=f"why the upload failed; one of: {', '.join(ERROR_CODES)}")
    message: str
    line: int | None
    column: int | None
    error_id: str | None = Field(description="quote it to an operator: the service's log has the detail under it")


class UploadResult(BaseModel):
    url: str
    expires_at: datetime
    bucket: str
    key: str
    size: int
    records: int


class StageTimes(BaseModel):
    """When the stages of the current generation started and ended (UTC)."""

    parsing_started_at: datetime | None
    parsed_at: datetime | None
    assembly_started_at: datetime | None
    finished_at: datetime | None


class Stall(BaseModel):
    """Whether the current stage has stopped moving, and how often the watchdog re-issued its work."""

    stalled: bool = Field(description="no progress for longer than the configured stall time")
    idle_seconds: float = Field(description="seconds since the upload last made progress")
    pickups: int = Field(description="times the watchdog issued the stage's message again")
    last_pickup_at: datetime | None


class Source(BaseModel):
    """The object this generation was made from; its digests once the parser has read it whole."""

    bucket: str
    key: str
    etag: str | None
    size: int | None
    md5: str | None
    sha256: str | None


class UploadStatus(BaseModel):
    id: uuid.UUID
    bucket: str
    key: str
    filename: str
    registered: bool
    state: State
    generation: int
    format: str | None
    progress: Progress
    duplicate_names: int | None
    empty_sequences: int | None
    error: UploadError | None
    result: UploadResult | None
    times: StageTimes
    stall: Stall
    source: Source
    collection_digest: str | None = Field(
        default=None, description="the GA4GH sequence collection digest of the upload's records, once done"
    )
    created_at: datetime
    updated_at: datetime


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, str]


def object_key(upload_id: uuid.UUID, filename: str, owner: str | None = None) -> str:
    """One key per upload, under its owner's prefix and its id; the name keeps only its last path component."""
    name = _UNSAFE.sub("", filename.replace("\\", "/")).rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        name = "upload"
    return f"{owner_prefix(owner) if owner else ''}{upload_id}/{name}"


def progress_fraction(upload: Upload) -> float:
    """Parsing and loading are the first 80 %, writing the result the last 20 %."""
    if upload.state is State.DONE:
        return 1.0
    loaded = upload.bytes_done / upload.bytes_total if upload.bytes_total else 0.0
    if upload.state is State.ASSEMBLING and upload.records_total:
        return 0.8 + 0.2 * min(upload.records_assembled / upload.records_total, 1.0)
    return round(0.8 * min(loaded, 1.0), 4)


class BrokerProbe:
    """One AMQP connection kept for health checks, opened again only when it was lost.

    A new connection per ``/healthz`` call costs the broker a login each time; pika connections
    are not thread-safe, and routes run on a thread pool, hence the lock. No heartbeats: it is
    only touched by checks, and a dead socket shows as an error on the next one.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None

    def ping(self) -> None:
        """Raise if the broker does not answer. A kept connection the broker dropped since (a restart)
        is replaced and tried once more: only a fresh connection's failure says the broker is away."""
        with self._lock:
            while True:
                fresh = self._connection is None or not self._connection.is_open
                try:
                    if self._connection is None or not self._connection.is_open:
                        self._connection = amqp_connect(self._settings, heartbeat=0)
                    self._connection.process_data_events(time_limit=0)
                    return
                except (pika.exceptions.AMQPError, OSError):
                    self._connection = None
                    if fresh:
                        raise

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._connection.is_open:
                self._connection.close()
            self._connection = None


class Services:
    def __init__(self, settings: Settings, pool: ConnectionPool[Any], store: ObjectStore) -> None:
        self.settings = settings
        self.pool = pool
        self.store = store
        self.broker = BrokerProbe(settings)

    def authenticate(self, header: str | None) -> Caller:
        """The caller behind an ``Authorization`` header (``AuthBeforeBody`` runs it before a body is read)."""
        return api_key_caller(self.pool, header)


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]
_bearer = HTTPBearer(auto_error=False, description="an API key (genobase keys create NAME)")


def get_caller(
    request: Request,
    services: ServicesDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Caller:
    """The owner behind the request's key: a missing, unknown or revoked key is a 401. A request
    with a body was already authenticated, before its body was read (``AuthBeforeBody``)."""
    caller: Caller = caller_or_refusal(request, services.authenticate)  # type: ignore[assignment]
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]
router = APIRouter()


def to_status(upload: Upload, services: Services, collection_digest: str | None = None) -> UploadStatus:
    now = datetime.now(UTC)
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
    if upload.state is State.DONE and upload.result_bucket and upload.result_key:
        ttl = services.settings.presign_ttl_seconds
        result = UploadResult(
            url=services.store.presign_get(upload.result_bucket, upload.result_key, ttl),
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
            bucket=upload.result_bucket,
            key=upload.result_key,
            size=upload.result_size or 0,
            records=upload.result_records or 0,
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
            fraction=progress_fraction(upload),
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
            stalled=upload.stalled(now, timedelta(seconds=services.settings.stall_after_seconds)),
            idle_seconds=round(upload.idle(now).total_seconds(), 1),
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
        collection_digest=collection_digest,
        created_at=upload.created_at,
        updated_at=upload.updated_at,
    )


def quota_exceeded(refusal: QuotaRefusal, owner: str) -> HTTPException:
    """429 with Retry-After for a count or a rate (waiting helps), 413 for the stored bytes."""
    error_id = new_error_id()
    log.info("registration refused by a quota", owner=owner, code=refusal.code.value, error_id=error_id)
    body = {"code": refusal.code.value, "message": refusal.message, "error_id": error_id}
    if refusal.retry_after is None:
        return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, body)
    seconds = max(1, math.ceil(refusal.retry_after.total_seconds()))
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, body, headers={"Retry-After": str(seconds)})


_REFUSALS: dict[int | str, dict[str, Any]] = {
    413: {"description": "larger than GENOBASE_MAX_UPLOAD_BYTES (upload_too_large), or beyond the owner's stored "
          "bytes (storage_quota_exceeded)"},
    429: {"description": "beyond the owner's uploads in flight, open multipart uploads or registrations a minute "
          "(too_many_uploads_in_flight, too_many_multipart_uploads, registration_rate_exceeded); "
          "the Retry-After header says when to try again"},
}  # fmt: skip


@router.post("/uploads", status_code=status.HTTP_201_CREATED, response_model=UploadTicket, responses=_REFUSALS)
def create_upload(body: UploadRequest, services: ServicesDep, caller: CallerDep) -> UploadTicket:
    """Register an upload and get a presigned PUT URL for one object key of exactly the declared size.

    The key is under the caller's prefix. A ticket not used within its lifetime (plus
    GENOBASE_TICKET_GRACE_SECONDS) ends as ``expired``. An owner's quotas (``GENOBASE_QUOTA_*``;
    admin keys have none) refuse a registration beyond them: 429 with Retry-After, or 413.
    """
    settings = services.settings
    if body.size > settings.max_upload_bytes:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            {"code": "upload_too_large", "message": f"uploads are limited to {settings.max_upload_bytes} bytes"},
        )
    upload_id = uuid.uuid4()
    key = object_key(upload_id, body.filename, caller.name)
    multipart = body.size > settings.multipart_threshold_bytes
    quotas = None if caller.admin else quotas_of(settings)
    if quotas is not None:
        # A first look, without the lock: a refused caller costs the store nothing (no multipart
        # upload started and aborted); the decision that counts is taken again in the registration.
        with services.pool.connection() as conn:
            refusal = quota_refusal(queries.owner_usage(conn, caller.name), quotas, body.size, multipart=multipart)
        if refusal is not None:
            raise quota_exceeded(refusal, caller.name)
    ttl = settings.multipart_ttl_seconds if multipart else settings.presign_ttl_seconds
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    bucket = settings.uploads_bucket
    store_upload_id = services.store.start_multipart(bucket, key) if multipart else None
    try:
        _register(services, body, caller, upload_id, key, expires_at, store_upload_id, quotas)
    except queries.QuotaExceeded as exc:
        if store_upload_id is not None:
            with contextlib.suppress(Exception):
                services.store.abort_multipart(bucket, key, store_upload_id)
        raise quota_exceeded(exc.refusal, caller.name) from None
    except BaseException:
        if store_upload_id is not None:  # no row: nothing else would ever abort it
            with contextlib.suppress(Exception):
                services.store.abort_multipart(bucket, key, store_upload_id)
        raise
    status_url = f"{settings.status_base_url}/uploads/{upload_id}"
    if store_upload_id is None:
        return UploadTicket(
            id=upload_id,
            bucket=bucket,
            key=key,
            upload_url=services.store.presign_put(bucket, key, ttl, body.size),
            upload_headers={"Content-Type": UPLOAD_CONTENT_TYPE},
            expires_at=expires_at,
            status_url=status_url,
        )
    parts = multipart_plan(body.size, settings.multipart_min_part_bytes)
    sign = functools.partial(
        services.store.presign_multipart, bucket=bucket, key=key, upload_id=store_upload_id, ttl=ttl
    )
    return UploadTicket(
        id=upload_id,
        bucket=bucket,
        key=key,
        upload_method="multipart",
        multipart=MultipartTicket(
            upload_id=store_upload_id,
            part_size=parts.part_size,
            part_count=parts.count,
            parts_url=f"{status_url}/parts",
            complete_url=sign("complete_multipart_upload"),
            abort_url=sign("abort_multipart_upload"),
            list_parts_url=sign("list_parts"),
        ),
        expires_at=expires_at,
        status_url=status_url,
    )


def _register(
    services: Services,
    body: UploadRequest,
    caller: Caller,
    upload_id: uuid.UUID,
    key: str,
    expires_at: datetime,
    store_upload_id: str | None,
    quotas: Quotas | None,
) -> None:
    with services.pool.connection() as conn:
        queries.register_upload(
            conn,
            upload_id,
            services.settings.uploads_bucket,
            key,
            body.filename,
            body.format,
            body.alphabet.value,
            body.size,
            caller.name,
            expires_at,
            body.circular,
            store_upload_id,
            quotas,
        )


def _multipart_upload(services: Services, caller: Caller, upload_id: uuid.UUID) -> Upload:
    """A multipart upload of the caller's that still waits for its parts (else 404 or 409)."""
    with services.pool.connection() as conn:
        upload = queries.get_upload(conn, upload_id)
    if upload is None or not can_see(caller, upload.owner):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no upload {upload_id}")
    if upload.multipart_upload_id is None or upload.state is not State.AWAITING_UPLOAD:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {"code": "not_awaiting_parts", "message": f"upload {upload_id} does not wait for parts ({upload.state})"},
        )
    return upload


@router.post("/uploads/{upload_id}/parts", response_model=PartsAnswer)
def sign_parts(upload_id: uuid.UUID, body: PartsRequest, services: ServicesDep, caller: CallerDep) -> PartsAnswer:
    """Signed PUT URLs for parts of a multipart upload, each for its MD5 and its exact size."""
    upload = _multipart_upload(services, caller, upload_id)
    assert upload.multipart_upload_id is not None and upload.bytes_total is not None
    parts = multipart_plan(upload.bytes_total, services.settings.multipart_min_part_bytes)
    ttl = int(
        max((upload.ticket_expires_at or datetime.now(UTC)) - datetime.now(UTC), timedelta(seconds=60)).total_seconds()
    )
    signed = []
    for wanted in body.parts:
        if wanted.number > parts.count:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                {"code": "no_such_part", "message": f"this upload has {parts.count} parts"},
            )
        size = parts.length(wanted.number)
        url = services.store.presign_part(
            upload.bucket, upload.key, upload.multipart_upload_id, wanted.number, wanted.md5, size, ttl
        )
        signed.append(SignedPart(number=wanted.number, size=size, md5=wanted.md5, url=url))
    return PartsAnswer(parts=signed)


@router.get("/uploads/{upload_id}/parts", response_model=PartsAnswer)
def stored_parts(upload_id: uuid.UUID, services: ServicesDep, caller: CallerDep) -> PartsAnswer:
    """The parts the store already has: a client that was interrupted sends only the others."""
    upload = _multipart_upload(services, caller, upload_id)
    assert upload.multipart_upload_id is not None
    found = services.store.parts(upload.bucket, upload.key, upload.multipart_upload_id)
    return PartsAnswer(parts=[StoredPart(number=n, etag=e, size=s) for n, e, s in found])


@router.get("/uploads/{upload_id}", response_model=UploadStatus)
def upload_status(upload_id: uuid.UUID, services: ServicesDep, caller: CallerDep) -> UploadStatus:
    with services.pool.connection() as conn:
        upload = queries.get_upload(conn, upload_id)
        if upload is None or not can_see(caller, upload.owner):  # another owner's: as if it did not exist
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no upload {upload_id}")
        return to_status(upload, services, _collection_digest(conn, upload))


@router.get("/uploads", response_model=UploadStatus)
def find_upload(
    services: ServicesDep,
    caller: CallerDep,
    bucket: Annotated[str, Query(min_length=3, max_length=63, pattern=_BUCKET_NAME)],
    key: Annotated[str, Query(min_length=1, max_length=MAX_KEY_BYTES, pattern=_OBJECT_KEY)],
) -> UploadStatus:
    """Look an upload up by its object, e.g. one written straight to the bucket without registering."""
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            {"code": "key_too_long", "message": f"an object key is at most {MAX_KEY_BYTES} bytes of UTF-8"},
        )
    with services.pool.connection() as conn:
        upload = queries.find_upload(conn, bucket, key)
        if upload is None or not can_see(caller, upload.owner):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no upload for s3://{bucket}/{key}")
        return to_status(upload, services, _collection_digest(conn, upload))


def _collection_digest(conn: Any, upload: Upload) -> str | None:
    if upload.state is not State.DONE:
        return None
    collection = collections.collection_of_upload(conn, upload.id, upload.generation)
    return collection.digest if collection else None


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(services: ServicesDep) -> Any:
    """Public: each dependency is "ok" or "unavailable" with an error id; the detail (addresses,
    user names, a server's own words) goes to the intake's log under that id, never to the caller."""

    def postgres() -> None:
        with services.pool.connection(timeout=5) as conn:
            ping(conn)

    probes: dict[str, Callable[[], object]] = {
        "postgres": postgres,
        "rabbitmq": services.broker.ping,
        "s3": lambda: services.store.client.head_bucket(Bucket=services.settings.uploads_bucket),
    }
    checks: dict[str, str] = {}
    for name, probe in probes.items():
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


def create_app(settings: Settings) -> FastAPI:
    pool = request_pool(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True, timeout=60)
        try:
            yield
        finally:
            app.state.services.broker.close()
            pool.close()

    # No Swagger UI or ReDoc: FastAPI's pages load their scripts and styles from a CDN, and these
    # pages load nothing from elsewhere. The OpenAPI document stays at /openapi.json.
    app = FastAPI(
        title="Genobase intake",
        version="0.1.0",
        description="Register genome sequence uploads and follow them through the pipeline.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = Services(settings, pool, ObjectStore(settings))
    app.add_middleware(BodyLimit, max_bytes=MAX_REQUEST_BYTES, max_json_depth=MAX_JSON_DEPTH)
    # looked up per request: whatever authenticates the app's services (a test's stand-in too)
    app.add_middleware(AuthBeforeBody, authenticate=lambda header: app.state.services.authenticate(header))
    app.add_middleware(metrics.HttpMetrics)
    app.add_middleware(PageHeaders, store_origin=settings.presign_endpoint)
    app.add_middleware(RequestId)  # outermost: every answer, refusals included, carries its id
    app.include_router(router)
    # The upload page: static, public (it holds nothing; every call it makes needs the user's key).
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app
