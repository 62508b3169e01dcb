"""HTTP routes of a done upload's data: its result document (a redirect to a fresh signed link) and
its records from Postgres, a page at a time, as JSON or NDJSON, streamed.

Thin, like ``api.py``: the use cases are ``shared/usecases/records.py``. A page's body is written
as its records are read (``RecordsPage.records`` reads a group at a time, each on a session of its
own), so a slow client holds no database session and the intake holds a few MiB per stream
whatever the page's size. The next page's cursor is known before the body starts: in the JSON
body's ``next_cursor`` (after the records) and, for both forms, in a ``Link: <…>; rel="next"``
header. If the upload is processed again while a page streams, the body stops short (the JSON does
not parse, an NDJSON line is cut): a client never reads two generations' records as one page.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import RedirectResponse, StreamingResponse

from services.intake.api import CallerDep, DepsDep, _refusal
from shared.domain.reads import RecordsChanged
from shared.domain.record_schema import QUALITY_KEY, RECORD_KEYS, SEQUENCE_KEY
from shared.usecases import records as usecases
from shared.usecases.records import RecordOut
from shared.usecases.uploads import Refused

log = structlog.get_logger()
router = APIRouter(tags=["records"])

JSON = "application/json"
NDJSON = "application/x-ndjson"
FLUSH_BYTES = 64 * 1024  # small records are sent together, about this many bytes at a time
_NEEDS_ESCAPING = re.compile(rb'["\\\x00-\x1f\x7f-\xff]')

_STATUSES: dict[type[Refused], int] = {
    usecases.ResultNotReady: status.HTTP_409_CONFLICT,
    usecases.RecordsNotReady: status.HTTP_409_CONFLICT,
    usecases.RecordsMoved: status.HTTP_409_CONFLICT,
    usecases.BadCursor: status.HTTP_422_UNPROCESSABLE_CONTENT,
    usecases.BadLimit: status.HTTP_422_UNPROCESSABLE_CONTENT,
    usecases.UnknownField: status.HTTP_422_UNPROCESSABLE_CONTENT,
    usecases.BadNamePrefix: status.HTTP_422_UNPROCESSABLE_CONTENT,
    usecases.NoSuchRecord: status.HTTP_404_NOT_FOUND,
}


def _refused(refused: Refused) -> HTTPException:
    for kind, code in _STATUSES.items():
        if isinstance(refused, kind):
            return HTTPException(code, {"code": refused.code, "message": refused.message})
    return _refusal(refused)  # no such upload (another owner's), and the intake's other refusals


_NOT_FOUND = {"description": "no such upload (another owner's answers the same), or no such record"}
_REFUSALS: dict[int | str, dict[str, Any]] = {
    404: _NOT_FOUND,
    409: {"description": "the upload is not done (records_not_ready), or was processed again since the "
          "cursor was given (records_changed)"},
    406: {"description": "an Accept that admits neither application/json nor application/x-ndjson (not_acceptable)"},
    422: {"description": "a malformed cursor (invalid_cursor), an unknown field (unknown_field, naming the fields), "
          "a limit out of 1..1000, a name prefix with control characters or over 1024 bytes (invalid_name)"},
}  # fmt: skip

LimitQuery = Annotated[int, Query(ge=1, le=usecases.MAX_LIMIT, description="records on the page")]
CursorQuery = Annotated[
    str | None, Query(max_length=64, description="next_cursor of the previous page (opaque), none for the first")
]
NameQuery = Annotated[
    str | None,
    Query(max_length=usecases.MAX_NAME_PREFIX_BYTES, description="only records whose id starts with this"),
]
FieldsQuery = Annotated[
    str | None,
    Query(
        max_length=512,
        description=f"a comma-separated subset of {', '.join(RECORD_KEYS)} (all when absent)",
    ),
]


# --- routes ------------------------------------------------------------------------------------------


@router.get(
    "/uploads/{upload_id}/result",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses={
        302: {
            "description": "Location: a signed GET of the result document, fresh, valid GENOBASE_PRESIGN_TTL_SECONDS"
        },
        404: {"description": "no such upload (another owner's answers the same)"},
        409: {"description": "the upload is not done: no result (result_not_ready)"},
    },
)
def upload_result(upload_id: uuid.UUID, deps: DepsDep, caller: CallerDep) -> RedirectResponse:
    """A stable link to a done upload's result document (``curl -L``): each call answers 302 to a
    newly signed URL, signed by the store user that may only read results, never cached."""
    try:
        link = usecases.result_link(deps.intake, caller, upload_id)
    except Refused as refused:
        raise _refused(refused) from None
    return RedirectResponse(link.url, status_code=status.HTTP_302_FOUND, headers={"Cache-Control": "no-store"})


@router.get(
    "/uploads/{upload_id}/records",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": 'JSON: {"records": [...], "next_cursor"}; NDJSON: one record a line. Both: '
            'Link: <…>; rel="next" unless this is the last page',
            "content": {JSON: {}, NDJSON: {}},
        },
        **_REFUSALS,
    },
)
def list_records(
    request: Request,
    upload_id: uuid.UUID,
    deps: DepsDep,
    caller: CallerDep,
    limit: LimitQuery = usecases.DEFAULT_LIMIT,
    cursor: CursorQuery = None,
    name: NameQuery = None,
    fields: FieldsQuery = None,
) -> StreamingResponse:
    """A done upload's records in file order, a page at a time (keyset on the ordinal), streamed:
    the same keys as the result document's records (``fields`` chooses some)."""
    media = _negotiate(request.headers.get("accept"))
    try:
        chosen = usecases.choose_fields(fields)
        page = usecases.records_page(
            deps.intake,
            deps.records,
            caller,
            upload_id,
            limit=limit,
            cursor=cursor,
            name_prefix=name,
            fields=chosen,
        )
    except Refused as refused:
        raise _refused(refused) from None
    headers = {"Cache-Control": "no-store"}
    if page.next_cursor is not None:
        headers["Link"] = f'<{request.url.include_query_params(cursor=page.next_cursor)}>; rel="next"'
    if media == NDJSON:
        body = _batched(piece for record in page.records for piece in (*_record_json(record), b"\n"))
    else:
        body = _batched(_page_json(page.records, page.next_cursor))
    return StreamingResponse(_cut_short_on_change(body, page), media_type=media, headers=headers)


@router.get(
    "/uploads/{upload_id}/records/{ordinal}",
    response_class=StreamingResponse,
    responses={200: {"description": "the record", "content": {JSON: {}}}, **_REFUSALS},
)
def get_record(
    upload_id: uuid.UUID,
    ordinal: Annotated[int, Path(ge=0, le=2**63 - 1, description="0-based position in the file")],
    deps: DepsDep,
    caller: CallerDep,
    fields: FieldsQuery = None,
) -> StreamingResponse:
    """One record of a done upload, with its digests (``md5``, ``refget``: the GA4GH digest refget
    serves it by), streamed like a page's."""
    try:
        record = usecases.one_record(
            deps.intake, deps.records, caller, upload_id, ordinal, usecases.choose_fields(fields)
        )
    except Refused as refused:
        raise _refused(refused) from None
    return StreamingResponse(_batched(_record_json(record)), media_type=JSON, headers={"Cache-Control": "no-store"})


# --- negotiation and the streamed bodies ------------------------------------------------------------------


def _negotiate(accept: str | None) -> str:
    """JSON unless the client prefers NDJSON (``Accept: application/x-ndjson``); 406 when it
    accepts neither. Ties go to JSON."""
    if not accept or not accept.strip():
        return JSON
    quality: dict[str, float] = {JSON: 0.0, NDJSON: 0.0}
    specificity: dict[str, int] = {JSON: -1, NDJSON: -1}
    for item in accept.split(",")[:32]:
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        for offer in (JSON, NDJSON):
            rank = 2 if media == offer else 1 if media == "application/*" else 0 if media == "*/*" else -1
            if rank > specificity[offer]:
                specificity[offer], quality[offer] = rank, q
    if quality[NDJSON] > quality[JSON]:
        return NDJSON
    if quality[JSON] > 0:
        return JSON
    raise HTTPException(
        status.HTTP_406_NOT_ACCEPTABLE,
        {"code": "not_acceptable", "message": f"records are served as {JSON} or {NDJSON}"},
    )


def _residue_piece(piece: bytes) -> bytes:
    """Residues inside a JSON string: as they are (letters, almost always), escaped otherwise."""
    if _NEEDS_ESCAPING.search(piece) is None:
        return piece
    return orjson.dumps(piece.decode("latin-1"))[1:-1]


def _record_json(record: RecordOut) -> Iterator[bytes]:
    """One record's JSON object in pieces: its fields, then its residues as they are read, then its
    qualities; the same keys and order as the result document's records."""
    head = orjson.dumps(record.fields)[:-1]  # '{' and the fields, without the closing brace
    separator = b"," if len(head) > 1 else b""
    if record.sequence is not None:
        yield head + separator + b'"' + SEQUENCE_KEY.encode() + b'":"'
        for piece in record.sequence:
            yield _residue_piece(piece)
        yield b'"'
        head, separator = b"", b","
    if record.quality is not None:
        yield head + separator + b'"' + QUALITY_KEY.encode() + b'":' + orjson.dumps(record.quality)
        head = b""
    yield head + b"}"


def _page_json(records: Iterator[RecordOut], next_cursor: str | None) -> Iterator[bytes]:
    yield b'{"records":['
    separator = b""
    for record in records:
        yield separator
        separator = b","
        yield from _record_json(record)
    yield b'],"next_cursor":' + orjson.dumps(next_cursor) + b"}\n"


def _cut_short_on_change(body: Iterator[bytes], page: usecases.RecordsPage) -> Iterator[bytes]:
    """The body, said in the log when it ends short because the upload was processed again (the
    exception goes on: the server then drops the connection before the body's end, so that no
    client takes a cut page, NDJSON included, for a whole one)."""
    try:
        yield from body
    except RecordsChanged:
        log.info("records page cut short", upload_id=str(page.upload_id), generation=page.generation)
        raise


def _batched(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Small pieces joined into sends of about ``FLUSH_BYTES``; a large piece (a part of residues)
    goes on its own, never copied into a larger one."""
    held: list[bytes] = []
    size = 0
    for piece in pieces:
        if len(piece) >= FLUSH_BYTES:
            if held:
                yield b"".join(held)
                held, size = [], 0
            yield piece
            continue
        held.append(piece)
        size += len(piece)
        if size >= FLUSH_BYTES:
            yield b"".join(held)
            held, size = [], 0
    if held:
        yield b"".join(held)
