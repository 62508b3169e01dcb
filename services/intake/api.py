"""HTTP routes of the intake service: register an upload, poll its status, check health.

There is deliberately no "file uploaded" route: processing starts from the bucket notification,
so an upload made with any S3 client is processed the same way.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import pika
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field

from shared.broker import connect as amqp_connect
from shared.parsing.alphabet import AlphabetName
from shared.postgres import uploads as queries
from shared.postgres.connection import dict_row, ping
from shared.settings import Settings
from shared.storage import ObjectStore
from shared.uploads import ERROR_CODES, ErrorCode, State, Upload


class UploadRequest(BaseModel):
    filename: str = Field(min_length=1, max_length=255, examples=["sample.fasta"])
    size: int | None = Field(default=None, ge=0, description="expected size in bytes, for progress")
    format: Literal["fasta", "fastq", "csv", "tsv"] | None = Field(
        default=None, description="skip content detection and parse as this format"
    )
    alphabet: AlphabetName = AlphabetName.NUCLEOTIDE


class UploadTicket(BaseModel):
    id: uuid.UUID
    bucket: str
    key: str
    upload_url: str
    upload_method: Literal["PUT"] = "PUT"
    expires_at: datetime
    status_url: str


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
    created_at: datetime
    updated_at: datetime


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, str]


_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def object_key(upload_id: uuid.UUID, filename: str) -> str:
    """One key per upload, under its id; the name keeps only its last path component."""
    name = _UNSAFE.sub("", filename.replace("\\", "/")).rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        name = "upload"
    return f"{upload_id}/{name}"


def progress_fraction(upload: Upload) -> float:
    """Parsing and loading are the first 80 %, writing the result the last 20 %."""
    if upload.state is State.DONE:
        return 1.0
    loaded = upload.bytes_done / upload.bytes_total if upload.bytes_total else 0.0
    if upload.state is State.ASSEMBLING and upload.records_total:
        return 0.8 + 0.2 * min(upload.records_assembled / upload.records_total, 1.0)
    return round(0.8 * min(loaded, 1.0), 4)


class Services:
    def __init__(self, settings: Settings, pool: ConnectionPool[Any], store: ObjectStore) -> None:
        self.settings = settings
        self.pool = pool
        self.store = store


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]
router = APIRouter()


def to_status(upload: Upload, services: Services) -> UploadStatus:
    now = datetime.now(UTC)
    failure = upload.failure
    error = None
    if failure is not None:
        error = UploadError(code=failure.code, message=failure.message, line=failure.line, column=failure.column)
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
        created_at=upload.created_at,
        updated_at=upload.updated_at,
    )


@router.post("/uploads", status_code=status.HTTP_201_CREATED, response_model=UploadTicket)
def create_upload(body: UploadRequest, services: ServicesDep) -> UploadTicket:
    """Register an upload and get a presigned PUT URL for exactly one object key."""
    settings = services.settings
    upload_id = uuid.uuid4()
    key = object_key(upload_id, body.filename)
    with services.pool.connection() as conn:
        queries.register_upload(
            conn,
            upload_id,
            settings.uploads_bucket,
            key,
            body.filename,
            body.format,
            body.alphabet.value,
            body.size,
        )
    ttl = settings.presign_ttl_seconds
    return UploadTicket(
        id=upload_id,
        bucket=settings.uploads_bucket,
        key=key,
        upload_url=services.store.presign_put(settings.uploads_bucket, key, ttl),
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        status_url=f"{settings.status_base_url}/uploads/{upload_id}",
    )


@router.get("/uploads/{upload_id}", response_model=UploadStatus)
def upload_status(upload_id: uuid.UUID, services: ServicesDep) -> UploadStatus:
    with services.pool.connection() as conn:
        upload = queries.get_upload(conn, upload_id)
    if upload is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no upload {upload_id}")
    return to_status(upload, services)


@router.get("/uploads", response_model=UploadStatus)
def find_upload(services: ServicesDep, bucket: Annotated[str, Query()], key: Annotated[str, Query()]) -> UploadStatus:
    """Look an upload up by its object, e.g. one written straight to the bucket without registering."""
    with services.pool.connection() as conn:
        upload = queries.find_upload(conn, bucket, key)
    if upload is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no upload for s3://{bucket}/{key}")
    return to_status(upload, services)


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(services: ServicesDep) -> Any:
    checks: dict[str, str] = {}
    try:
        with services.pool.connection(timeout=5) as conn:
            ping(conn)
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"error: {exc}"
    try:
        connection = amqp_connect(services.settings)
        connection.close()
        checks["rabbitmq"] = "ok"
    except (pika.exceptions.AMQPError, OSError) as exc:
        checks["rabbitmq"] = f"error: {exc!r}"
    try:
        services.store.client.head_bucket(Bucket=services.settings.uploads_bucket)
        checks["s3"] = "ok"
    except Exception as exc:
        checks["s3"] = f"error: {exc}"
    healthy = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if healthy else "degraded", checks=checks)
    if healthy:
        return body
    from fastapi.responses import JSONResponse

    return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


def create_app(settings: Settings) -> FastAPI:
    pool: ConnectionPool[Any] = ConnectionPool(
        settings.pg_dsn.get_secret_value(),
        min_size=1,
        max_size=8,
        kwargs={"autocommit": True, "row_factory": dict_row},
        # A connection broken by a Postgres restart is replaced before a request gets it.
        check=ConnectionPool.check_connection,
        open=False,
    )
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True, timeout=60)
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="Genobase intake",
        version="0.1.0",
        description="Register genome sequence uploads and follow them through the pipeline.",
        lifespan=lifespan,
    )
    app.state.services = Services(settings, pool, ObjectStore(settings))
    app.include_router(router)
    return app
