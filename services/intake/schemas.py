"""The intake's request and answer models (pydantic): what its OpenAPI document describes.

The upload page (``static/upload.js``), the CLI and the end-to-end tests read these shapes; the
routes (``api.py``) fill them from the use cases' domain values.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.domain.listing import LABEL_KEY, MAX_LABEL_VALUE_BYTES, MAX_LABELS, MAX_LABELS_BYTES
from shared.domain.multipart import MAX_PARTS
from shared.domain.uploads import ERROR_CODES, ErrorCode, Mode, State, unprintable
from shared.parsing.alphabet import AlphabetName
from shared.parsing.formats import Format

# S3's own bounds: a key is at most 1,024 bytes of UTF-8 and an object at most 5 TiB. The key is
# ``<owner>/<upload id>/<name>`` (a key name is at most 63 bytes, an id 36), so a name of 512 bytes
# keeps it inside (tests/unit/test_assembly_and_intake.py checks the longest one).
MAX_KEY_BYTES = 1024
MAX_FILENAME_BYTES = 512
MAX_OBJECT_BYTES = 5 * 1024**4
# A registration is a few hundred bytes of JSON: anything much larger is refused unread.
MAX_REQUEST_BYTES = 64 * 1024
MAX_JSON_DEPTH = 3  # the deepest request schema: {"parts": [{"number", "md5", "size"}]}
# A look-up by object: what S3 allows (a bucket name is 3-63 characters, a key at most 1,024 bytes)
# and nothing Postgres cannot hold in text (NUL), so that no query string reaches it unchecked.
BUCKET_NAME = r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"
OBJECT_KEY = r"^[^\x00-\x1f\x7f]+$"


LABELS_DESCRIPTION = (
    f"what the upload is (sample, run, project): at most {MAX_LABELS} labels, each key matching "
    f"{LABEL_KEY.pattern}, each value at most {MAX_LABEL_VALUE_BYTES} bytes of UTF-8 without control "
    f"characters, {MAX_LABELS_BYTES} bytes in all (beyond: 422 invalid_labels)"
)


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
    format: Format | None = Field(default=None, description="skip content detection and parse as this format")
    alphabet: AlphabetName = AlphabetName.NUCLEOTIDE
    circular: bool = Field(
        default=False,
        description="the file's sequences are circular (a plasmid, a mitochondrion): the refget API then "
        "serves a slice whose start is after its end across the origin",
    )
    mode: Mode = Field(
        default=Mode.STORE,
        description="store: parse and store the records and a result document; validate: parse with the same "
        "engine and limits, report the records, format and digests (or the first error with its line and "
        "column), store nothing, and remove the object afterwards",
    )
    labels: dict[str, str] = Field(default_factory=dict, description=LABELS_DESCRIPTION)

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, filename: str) -> str:
        if unprintable(filename):
            raise ValueError("a file name may not contain control or format characters")
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
    sha256: str | None = Field(
        default=None,
        description="the document's SHA-256 (hex), computed as it was written; null for a document written "
        "before digests were recorded (check its size only)",
    )


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


class Deletion(BaseModel):
    """A deleted upload (state ``deleted``): its rows went when it was deleted; its object and result
    documents go at the watchdog's next sweep (``purged``)."""

    deleted_at: datetime
    purged: bool = Field(description="the object, any multipart upload and the result documents are removed")
    purged_at: datetime | None


class Source(BaseModel):
    """The object this generation was made from; its digests once the parser has read it whole."""

    bucket: str
    key: str
    etag: str | None
    size: int | None
    md5: str | None
    sha256: str | None


class ValidationReport(BaseModel):
    """What the parse of a validated upload (``mode: validate``) found; nothing of it was stored."""

    records: int
    format: str = Field(description="the detected format, with .gz when compressed")
    bytes: int = Field(description="bytes of the object read")
    source_md5: str
    source_sha256: str
    collection_digest: str = Field(description="the GA4GH sequence collection digest the records would have")


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
    mode: Mode = Mode.STORE
    validation: ValidationReport | None = Field(
        default=None, description="a validated upload's report, once done (its result is null)"
    )
    labels: dict[str, str] = Field(default_factory=dict, description=LABELS_DESCRIPTION)
    deletion: Deletion | None = Field(default=None, description="set once the upload is deleted")
    created_at: datetime
    updated_at: datetime = Field(description="when the pipeline last moved the upload (a labels change does not)")


class UploadSummary(BaseModel):
    """An upload in a listing: what it is and where it stands, without signed URLs (the status has them)."""

    id: uuid.UUID
    owner: str | None
    filename: str
    bucket: str
    key: str
    state: State
    format: str | None
    generation: int
    mode: Mode
    size: int | None = Field(description="the object's size in bytes (declared, until it is written)")
    records: int | None = Field(description="records parsed (every one, once the parse ended)")
    result_size: int | None = Field(description="the result document's size in bytes, once done")
    labels: dict[str, str]
    error_code: ErrorCode | None = Field(description="why it failed (or was refused), when it did")
    created_at: datetime
    updated_at: datetime
    status_url: str


class UploadList(BaseModel):
    uploads: list[UploadSummary]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last page")


class LabelsPatch(BaseModel):
    """A JSON merge patch (RFC 7396) of an upload: only ``labels`` may change. A key set to a string
    is set, to null removed; ``"labels": null`` removes every label."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str | None] | None = Field(default_factory=dict)


class Health(BaseModel):
    status: Literal["ok"]
    checks: dict[str, str]
