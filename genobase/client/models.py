"""The client's own answer models: what the intake's OpenAPI document describes, as pydantic models.

They mirror ``services/intake/schemas.py`` field by field (``tests/unit/test_client_models.py``
checks the names and which are required against the intake's OpenAPI document, so a drift fails a
test) without importing it: the client depends on the HTTP interface, never on the service's code.
Enumerations (a state, a mode, an error code) are plain strings, so that a value the intake adds
later reads as it is instead of failing the whole answer; unknown fields are ignored for the same
reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# The states an upload stays in once it got there (wait() returns at them).
FINAL_STATES = frozenset({"done", "failed", "expired", "revoked", "deleted"})


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Progress(_Answer):
    bytes_done: int
    bytes_total: int | None
    records_done: int
    records_total: int | None
    records_assembled: int
    fraction: float


class UploadError(_Answer):
    """Why an upload failed: ``code`` to branch on, ``message`` to show, ``line``/``column`` in the file."""

    code: str
    message: str
    line: int | None
    column: int | None
    error_id: str | None


class UploadResult(_Answer):
    """Where a done upload's result document is. ``sha256`` is null for a document written before
    the assembler recorded digests: ``Client.download`` then checks its size only."""

    url: str
    expires_at: datetime
    bucket: str
    key: str
    size: int
    records: int
    sha256: str | None = None


class StageTimes(_Answer):
    parsing_started_at: datetime | None
    parsed_at: datetime | None
    assembly_started_at: datetime | None
    finished_at: datetime | None


class Stall(_Answer):
    stalled: bool
    idle_seconds: float
    pickups: int
    last_pickup_at: datetime | None


class Deletion(_Answer):
    deleted_at: datetime
    purged: bool
    purged_at: datetime | None


class Source(_Answer):
    bucket: str
    key: str
    etag: str | None
    size: int | None
    md5: str | None
    sha256: str | None


class ValidationReport(_Answer):
    records: int
    format: str
    bytes: int
    source_md5: str
    source_sha256: str
    collection_digest: str


class Upload(_Answer):
    """An upload's status (``GET /uploads/{id}``): the intake's ``UploadStatus``."""

    id: uuid.UUID
    bucket: str
    key: str
    filename: str
    registered: bool
    state: str
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
    collection_digest: str | None = None
    mode: str = "store"
    validation: ValidationReport | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    deletion: Deletion | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def final(self) -> bool:
        """The upload will not move again by itself (done, failed, expired, revoked, deleted)."""
        return self.state in FINAL_STATES


class UploadSummary(_Answer):
    """An upload in a listing: no signed URLs (``Client.get`` has them)."""

    id: uuid.UUID
    owner: str | None
    filename: str
    bucket: str
    key: str
    state: str
    format: str | None
    generation: int
    mode: str
    size: int | None
    records: int | None
    result_size: int | None
    labels: dict[str, str]
    error_code: str | None
    created_at: datetime
    updated_at: datetime
    status_url: str


class UploadPage(_Answer):
    """One page of a listing (the intake's ``UploadList``): pass ``next_cursor`` for the next."""

    uploads: list[UploadSummary]
    next_cursor: str | None


class Record(BaseModel):
    """One record of a done upload, as ``/uploads/{id}/records`` shows it. Every key is optional:
    ``fields`` chooses a subset (``sequence`` is absent unless chosen, ``quality`` is FASTQ's)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    ordinal: int | None = None
    line_number: int | None = None
    gene_name: str | None = None
    id: str | None = None
    description: str | None = None
    length: int | None = None
    md5: str | None = None
    refget: str | None = None
    attributes: dict[str, Any] | None = None
    sequence: str | None = None
    quality: str | list[int] | None = None


class FieldError(_Answer):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An error answer (RFC 9457 ``application/problem+json``) with the intake's extension members;
    other members (``checks``, ``state``) stay readable through ``model_extra``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    title: str
    status: int
    detail: str
    code: str
    error_id: str
    errors: list[FieldError] | None = None


class MultipartTicket(_Answer):
    upload_id: str
    part_size: int
    part_count: int
    parts_url: str
    complete_url: str
    abort_url: str
    list_parts_url: str


class UploadTicket(_Answer):
    """What a registration answers (``POST /uploads``): where to send the file."""

    id: uuid.UUID
    bucket: str
    key: str
    upload_method: str = "PUT"
    upload_url: str | None = None
    upload_headers: dict[str, str] = Field(default_factory=dict)
    multipart: MultipartTicket | None = None
    expires_at: datetime
    status_url: str


@dataclass(frozen=True)
class TransferProgress:
    """Bytes of ``path`` the store has: ``sent`` of ``total``, ``resumed`` of them by an earlier run.

    A multipart upload also counts its parts: ``parts_done`` of ``parts`` (``parts_resumed`` of them
    stored before this run); both are 0 for a single PUT and a download."""

    path: Path
    sent: int
    total: int
    resumed: int
    parts: int = 0
    parts_done: int = 0
    parts_resumed: int = 0
