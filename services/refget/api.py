"""The read API: GA4GH refget v2.0 sequences and sequence collections (seqcol), over what the
pipeline stored. Read-only; every query is in ``shared/postgres/refget.py``.

Where the refget compliance suite (written for v1.0) and the v2.0 specification differ, this
follows v2.0 and also answers the suite (docs/api.md "Read API"): the v1.0 media types are accepted
as well as v2.0's, and service-info carries the v1 ``service`` object beside v2's ``refget``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from psycopg_pool import ConnectionPool
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.refget.posted import MAX_DEPTH, PostLimits, parse_collection
from services.refget.ranges import Refused, Slice, requested_slice
from shared.domain.access import Caller
from shared.domain.seqcol import ATTRIBUTES, Collection, compare
from shared.postgres import refget as queries
from shared.postgres.connection import request_pool
from shared.runtime import metrics
from shared.runtime.settings import Settings
from shared.web.body_limit import BodyLimit
from shared.web.guard import (
    AuthBeforeBody,
    RequestId,
    api_key_caller,
    caller_or_refusal,
    error_body,
)
from shared.web.headers import PageHeaders

log = structlog.get_logger()

V2_TEXT = "text/vnd.ga4gh.refget.v2.0.0+plain"
V2_JSON = "application/vnd.ga4gh.refget.v2.0.0+json"
_TEXT_TYPES = {V2_TEXT, "text/vnd.ga4gh.refget.v1.0.0+plain", "text/plain", "text/*", "*/*"}
_JSON_TYPES = {V2_JSON, "application/vnd.ga4gh.refget.v1.0.0+json", "application/json", "application/*", "*/*"}
_MD5 = 32  # hex digits
STREAM_CHUNK = 1024 * 1024


def _refuse(status_code: int, code: str, message: str) -> HTTPException:
    return HTTPException(status_code, {"code": code, "message": message})


def _accepted(accept: str | None, offered: set[str]) -> str | None:
    """The media type to answer with, or None if the client accepts none of ``offered``."""
    if not accept:
        return "*/*"
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in offered:
            return media
    return None


# A reader: the owner behind a key, or None when reads are public (GENOBASE_REFGET_PUBLIC=true).
Reader = Caller | None
Authenticate = Callable[[str | None], Reader]


def reader_authentication(settings: Settings, pool: ConnectionPool[Any]) -> Authenticate:
    """Who reads, from the ``Authorization`` header: public reading needs (and checks) no key;
    otherwise a missing, unknown or revoked key is ``Unauthorized``."""

    def authenticate(header: str | None) -> Reader:
        return None if settings.refget_public else api_key_caller(pool, header)

    return authenticate


class Services:
    def __init__(self, settings: Settings, pool: ConnectionPool[Any]) -> None:
        self.settings = settings
        self.pool = pool
        self.authenticate = reader_authentication(settings, pool)
        self.post_limits = PostLimits(settings.seqcol_max_elements, settings.max_header_bytes)


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]
# Declared for the OpenAPI page; the key itself is read by ``get_reader`` (or ``AuthBeforeBody``).
_bearer = HTTPBearer(auto_error=False, description="an API key (not needed when GENOBASE_REFGET_PUBLIC=true)")


def get_reader(request: Request, services: ServicesDep, _key: Annotated[Any, Security(_bearer)]) -> Reader:
    """The reader of this request (401 without a valid key, unless reads are public)."""
    reader: Reader = caller_or_refusal(request, services.authenticate)  # type: ignore[assignment]
    return reader


ReaderDep = Annotated[Reader, Depends(get_reader)]


def _owner(reader: Reader) -> str | None:
    """Whose uploads a reader sees: everyone's (public reading, or an admin key) or its owner's."""
    return None if reader is None or reader.admin else reader.name


def _sequence_id(raw: str) -> str | None:
    """An id as stored: ``md5:``/``ga4gh:`` prefixes dropped; None if it cannot be a digest."""
    value = raw
    for prefix in ("md5:", "ga4gh:"):
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
    if value.startswith("SQ.") and len(value) == 35:
        return value
    if len(value) == _MD5 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    return None


sequences = APIRouter(prefix="/sequence", tags=["refget sequences"])


@sequences.get("/service-info")
def sequence_service_info(services: ServicesDep) -> dict[str, Any]:
    refget = {
        "circular_supported": True,
        "subsequence_limit": None,
        "algorithms": ["md5", "ga4gh"],
        "identifier_types": ["md5", "ga4gh"],
    }
    return {
        "id": "org.genobase.refget",
        "name": "Genobase refget",
        "type": {"group": "org.ga4gh", "artifact": "refget", "version": "2.0.0"},
        "organization": {"name": "Genobase", "url": "https://github.com/genobase"},
        "version": "2.0.0",
        "refget": refget,
        # v1.0's shape, for clients (and the compliance suite) written against it
        "service": {**refget, "supported_api_versions": ["1.0", "2.0"]},
    }


def _find(services: Services, raw_id: str, reader: Reader) -> queries.StoredSequence:
    """The sequence, if an upload the reader sees holds it: another owner's is 404 like an unknown one."""
    digest = _sequence_id(raw_id)
    found = None
    if digest is not None:
        with services.pool.connection() as conn:
            found = queries.find_sequence(conn, digest, _owner(reader))
    if found is None:
        raise _refuse(404, "not_found", f"no sequence {raw_id[:80]}")
    return found


@sequences.get("/{sequence_id}", response_class=Response)
def get_sequence(
    sequence_id: str,
    services: ServicesDep,
    reader: ReaderDep,
    start: str | None = None,
    end: str | None = None,
    accept: Annotated[str | None, Header()] = None,
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """The sequence, or a slice of it (start/end, or a Range header), as plain text."""
    media = _accepted(accept, _TEXT_TYPES)
    if media is None:
        raise _refuse(406, "not_acceptable", f"this endpoint answers {V2_TEXT} or text/plain")
    found = _find(services, sequence_id, reader)
    try:
        wanted = requested_slice(found.length, found.circular, start, end, range_header)
    except Refused as refused:
        raise _refuse(refused.status, refused.code, refused.message) from None
    size = wanted.size_in(found.length)
    headers = {"Content-Length": str(size), "Accept-Ranges": "bytes"}
    if wanted.partial:
        headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end - 1}/{found.length}"
    content_type = "text/plain" if media == "text/plain" else V2_TEXT
    body = _residues(services, found, wanted)
    return StreamingResponse(
        body,
        status_code=206 if wanted.partial else 200,
        media_type=f"{content_type}; charset=us-ascii",
        headers=headers,
    )


def _residues(services: Services, found: queries.StoredSequence, wanted: Slice) -> Iterator[bytes]:
    """Upper-cased (the digests are of the upper-cased sequence), a few parts at a time. Each query
    takes a pooled session and gives it back before its parts are sent: a client that reads slowly
    holds one query's parts in memory, never a session other requests wait for."""
    ends = [(wanted.start, found.length), (0, wanted.end)] if wanted.wraps else [(wanted.start, wanted.end)]
    for first, last in ends:
        for span in queries.read_spans(found, first, last):
            with services.pool.connection() as conn:
                pieces = queries.read_span(conn, found, span)
            for piece in pieces:
                yield piece.upper()


@sequences.get("/{sequence_id}/metadata")
def get_metadata(
    sequence_id: str,
    services: ServicesDep,
    reader: ReaderDep,
    accept: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """The sequence's digests and length, and the names it has in the uploads the reader sees."""
    media = _accepted(accept, _JSON_TYPES)
    if media is None:
        raise _refuse(406, "not_acceptable", f"this endpoint answers {V2_JSON} or application/json")
    found = _find(services, sequence_id, reader)
    with services.pool.connection() as conn:
        names = queries.aliases(conn, found, _owner(reader))
    metadata = {
        "md5": found.md5,
        "ga4gh": found.refget,
        "length": found.length,
        "aliases": [{"alias": name, "naming_authority": "genobase"} for name in names],
    }
    content_type = "application/json" if media == "application/json" else V2_JSON
    return JSONResponse({"metadata": metadata}, media_type=content_type)


# --- sequence collections ---------------------------------------------------------------------------

collections = APIRouter(tags=["sequence collections"])


def _schema() -> dict[str, Any]:
    text = (resources.files("refget") / "schemas" / "seqcol.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@collections.get("/service-info")
def seqcol_service_info() -> dict[str, Any]:
    return {
        "id": "org.genobase.seqcol",
        "name": "Genobase sequence collections",
        "type": {"group": "org.ga4gh", "artifact": "refget-seqcol", "version": "1.0.0"},
        "organization": {"name": "Genobase", "url": "https://github.com/genobase"},
        "version": "1.0.0",
        "seqcol": {"schema": _schema(), "sorted_name_length_pairs": True},
    }


# A seqcol digest (of a collection or of one attribute): 32 base64url characters. Anything else is
# answered 404 without a query (a NUL byte, say, would be a database error).
_DIGEST = re.compile(r"[A-Za-z0-9_-]{32}")
# The deepest page a listing serves: OFFSET stays far inside Postgres's bigint.
MAX_PAGE = 1_000_000


def _stored(services: Services, digest: str, reader: Reader) -> tuple[uuid.UUID, Collection]:
    found = None
    if _DIGEST.fullmatch(digest):
        with services.pool.connection() as conn:
            found = queries.find_collection(conn, digest, _owner(reader))
    if found is None:
        raise _refuse(404, "not_found", f"no collection {digest[:80]}")
    return found


def _arrays(services: Services, upload_id: uuid.UUID, collection: Collection) -> dict[str, list[Any]]:
    """Level 2, bounded before it is read: by its count, and by its names' bytes (a name can be as
    long as a FASTA header)."""
    limit = services.settings.seqcol_max_elements
    if collection.count > limit:
        raise _refuse(413, "collection_too_large", f"collections above {limit} sequences are served at level 1 only")
    with services.pool.connection() as conn:
        if queries.names_bytes(conn, upload_id) > services.settings.seqcol_max_post_bytes:
            raise _refuse(
                413,
                "collection_too_large",
                f"collections whose names exceed {services.settings.seqcol_max_post_bytes} bytes "
                "are served at level 1 only",
            )
        return queries.collection_arrays(conn, upload_id)


@collections.get("/collection/{digest}")
def get_collection(
    digest: str,
    services: ServicesDep,
    reader: ReaderDep,
    level: Annotated[int, Query(ge=1, le=2)] = 2,
) -> dict[str, Any]:
    upload_id, collection = _stored(services, digest, reader)
    if level == 1:
        return collection.level1()
    return _arrays(services, upload_id, collection)


@collections.get("/attribute/collection/{attribute}/{digest}")
def get_attribute(attribute: str, digest: str, services: ServicesDep, reader: ReaderDep) -> list[Any]:
    if attribute not in ATTRIBUTES:  # unknown, or transient (sorted_name_length_pairs): never served alone
        raise _refuse(404, "not_found", f"no attribute {attribute[:80]}")
    found = None
    if _DIGEST.fullmatch(digest):
        with services.pool.connection() as conn:
            found = queries.find_collection(conn, digest, _owner(reader), attribute=attribute)
    if found is None:
        raise _refuse(404, "not_found", f"no {attribute} {digest[:80]}")
    return _arrays(services, *found)[attribute]


@collections.get("/comparison/{digest_a}/{digest_b}")
def compare_two(digest_a: str, digest_b: str, services: ServicesDep, reader: ReaderDep) -> dict[str, Any]:
    a = _arrays(services, *_stored(services, digest_a, reader))
    b = _arrays(services, *_stored(services, digest_b, reader))
    return {"digests": {"a": digest_a, "b": digest_b}, **compare(a, b)}


async def _posted_body(request: Request) -> bytes:
    """The body as bytes, already bounded by bytes and nesting (``BodyLimit``); parsed by the route,
    on a worker thread, not by FastAPI on the event loop."""
    return await request.body()


_POSTED_COLLECTION = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "description": "a level-2 collection"}}},
    }
}


@collections.post("/comparison/{digest_a}", openapi_extra=_POSTED_COLLECTION)
def compare_with_posted(
    digest_a: str, body: Annotated[bytes, Depends(_posted_body)], services: ServicesDep, reader: ReaderDep
) -> dict[str, Any]:
    """Compare a stored collection with a posted level-2 one (every element typed and bounded)."""
    try:
        posted = parse_collection(body, services.post_limits)
    except Refused as refused:
        raise _refuse(refused.status, refused.code, refused.message) from None
    a = _arrays(services, *_stored(services, digest_a, reader))
    return {"digests": {"a": digest_a, "b": "POSTed seqcol"}, **compare(a, posted)}


def _page(results: list[str], total: int, page: int, page_size: int) -> dict[str, Any]:
    return {"results": results, "pagination": {"page": page, "page_size": page_size, "total": total}}


PageDep = Annotated[int, Query(ge=0, le=MAX_PAGE)]
PageSizeDep = Annotated[int, Query(ge=1, le=1000)]


@collections.get("/list/collection")
def list_collections(
    request: Request, services: ServicesDep, reader: ReaderDep, page: PageDep = 0, page_size: PageSizeDep = 100
) -> dict[str, Any]:
    """Collections of finished uploads the reader sees; any attribute given (``names=<digest>``…)
    must match (AND). A value that is not a digest matches nothing."""
    filters = {k: v for k, v in request.query_params.items() if k in (*ATTRIBUTES, "sorted_name_length_pairs")}
    if not all(_DIGEST.fullmatch(v) for v in filters.values()):
        return _page([], 0, page, page_size)
    with services.pool.connection() as conn:
        results, total = queries.list_collections(conn, filters, page, page_size, _owner(reader))
    return _page(results, total, page, page_size)


@collections.get("/list/attributes/{attribute}")
def list_attributes(
    attribute: str, services: ServicesDep, reader: ReaderDep, page: PageDep = 0, page_size: PageSizeDep = 100
) -> dict[str, Any]:
    if attribute not in ATTRIBUTES:
        raise _refuse(404, "not_found", f"no attribute {attribute[:80]}")
    with services.pool.connection() as conn:
        results, total = queries.list_attribute_digests(conn, attribute, page, page_size, _owner(reader))
    return _page(results, total, page, page_size)


# --- errors: every answer a code and a safe message ---------------------------------------------------


def _status_code_name(status_code: int) -> str:
    names = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "request_too_large"}
    return names.get(status_code, "bad_request" if status_code < 500 else "internal_error")


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (no route, wrong method) in the shape of the routes' own."""
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if not (isinstance(detail, dict) and "code" in detail):
        detail = error_body(_status_code_name(exc.status_code), str(detail)[:200])["detail"]
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """A parameter out of its bounds: 422 naming the parameter and the rule, never echoing the input."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
        for error in exc.errors()[:5]
    ]
    return JSONResponse(error_body("invalid_request", "; ".join(problems)[:500]), status_code=422)


def create_app(settings: Settings) -> FastAPI:
    pool = request_pool(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True, timeout=60)
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="Genobase refget",
        description="GA4GH refget v2.0 sequences and sequence collections, read from what Genobase stored.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load their scripts from a CDN: not served; /openapi.json stays
        docs_url=None,
        redoc_url=None,
    )
    services = Services(settings, pool)
    app.state.services = services
    # Outermost last: a request id for everything; metrics; a key before any body is read; the body
    # bounded by bytes and nesting before anything parses it (POST /comparison).
    app.add_middleware(BodyLimit, max_bytes=settings.seqcol_max_post_bytes, max_json_depth=MAX_DEPTH)
    app.add_middleware(AuthBeforeBody, authenticate=services.authenticate)
    app.add_middleware(metrics.HttpMetrics)
    app.add_middleware(PageHeaders)  # a policy that lets nothing load from elsewhere, no framing, nosniff
    app.add_middleware(RequestId)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(sequences)
    app.include_router(collections)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        with pool.connection() as conn:
            conn.execute("SELECT 1")
        return {"status": "ok"}

    return app
