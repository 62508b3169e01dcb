"""The read API: GA4GH refget v2.0 sequences and sequence collections (seqcol), over what the
pipeline stored. Read-only; every query is in ``shared/postgres/refget.py``.

Where the refget compliance suite (written for v1.0) and the v2.0 specification differ, this
follows v2.0 and also answers the suite (README "Read API"): the v1.0 media types are accepted
as well as v2.0's, and service-info carries the v1 ``service`` object beside v2's ``refget``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Security, status
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from services.refget.ranges import Refused, Slice, requested_slice
from shared import metrics
from shared.access import Caller
from shared.body_limit import BodyLimit
from shared.postgres import keys
from shared.postgres import refget as queries
from shared.postgres.connection import request_pool
from shared.seqcol import ATTRIBUTES, Collection, compare
from shared.settings import Settings

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


class Services:
    def __init__(self, settings: Settings, pool: ConnectionPool[Any]) -> None:
        self.settings = settings
        self.pool = pool


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]
_bearer = HTTPBearer(auto_error=False, description="an API key, when GENOBASE_REFGET_REQUIRE_KEY=true")


def get_reader(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> Caller | None:
    """None: reads are public. With GENOBASE_REFGET_REQUIRE_KEY, the key's owner (401 without one)."""
    if not services.settings.refget_require_key:
        return None
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        {"code": "unauthorized", "message": "an API key is required: Authorization: Bearer KEY"},
        headers={"WWW-Authenticate": 'Bearer realm="genobase"'},
    )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized
    with services.pool.connection() as conn:
        found = keys.find_key(conn, credentials.credentials)
    if found is None or found.revoked:
        raise unauthorized
    return Caller(found.name, found.admin)


ReaderDep = Annotated[Caller | None, Depends(get_reader)]


def _owner(reader: Caller | None) -> str | None:
    """Whose collections a reader may list: everyone's (public, or an admin key) or its own."""
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


def _find(services: Services, raw_id: str) -> queries.StoredSequence:
    digest = _sequence_id(raw_id)
    found = None
    if digest is not None:
        with services.pool.connection() as conn:
            found = queries.find_sequence(conn, digest)
    if found is None:
        raise _refuse(404, "not_found", f"no sequence {raw_id[:80]}")
    return found


@sequences.get("/{sequence_id}", response_class=Response)
def get_sequence(
    sequence_id: str,
    services: ServicesDep,
    _reader: ReaderDep,
    start: str | None = None,
    end: str | None = None,
    accept: Annotated[str | None, Header()] = None,
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    """The sequence, or a slice of it (start/end, or a Range header), as plain text."""
    media = _accepted(accept, _TEXT_TYPES)
    if media is None:
        raise _refuse(406, "not_acceptable", f"this endpoint answers {V2_TEXT} or text/plain")
    found = _find(services, sequence_id)
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
    """Upper-cased (the digests are of the upper-cased sequence), a few parts at a time."""
    spans = [(wanted.start, found.length), (0, wanted.end)] if wanted.wraps else [(wanted.start, wanted.end)]
    with services.pool.connection() as conn:
        for first, last in spans:
            for piece in queries.read_residues(conn, found, first, last):
                yield piece.upper()


@sequences.get("/{sequence_id}/metadata")
def get_metadata(
    sequence_id: str,
    services: ServicesDep,
    _reader: ReaderDep,
    accept: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    media = _accepted(accept, _JSON_TYPES)
    if media is None:
        raise _refuse(406, "not_acceptable", f"this endpoint answers {V2_JSON} or application/json")
    found = _find(services, sequence_id)
    with services.pool.connection() as conn:
        names = queries.aliases(conn, found)
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


def _stored(services: Services, digest: str, reader: Caller | None) -> tuple[uuid.UUID, Collection]:
    with services.pool.connection() as conn:
        found = queries.find_collection(conn, digest, owner=_owner(reader))
    if found is None:
        raise _refuse(404, "not_found", f"no collection {digest[:80]}")
    return found


def _arrays(services: Services, upload_id: uuid.UUID, collection: Collection) -> dict[str, list[Any]]:
    if collection.count > services.settings.seqcol_max_elements:
        raise _refuse(
            413,
            "collection_too_large",
            f"collections above {services.settings.seqcol_max_elements} sequences are served at level 1 only",
        )
    with services.pool.connection() as conn:
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
    with services.pool.connection() as conn:
        found = queries.find_collection(conn, digest, attribute=attribute, owner=_owner(reader))
    if found is None:
        raise _refuse(404, "not_found", f"no {attribute} {digest[:80]}")
    return _arrays(services, *found)[attribute]


@collections.get("/comparison/{digest_a}/{digest_b}")
def compare_two(digest_a: str, digest_b: str, services: ServicesDep, reader: ReaderDep) -> dict[str, Any]:
    a = _arrays(services, *_stored(services, digest_a, reader))
    b = _arrays(services, *_stored(services, digest_b, reader))
    return {"digests": {"a": digest_a, "b": digest_b}, **compare(a, b)}


@collections.post("/comparison/{digest_a}")
def compare_with_posted(
    digest_a: str, body: dict[str, list[Any]], services: ServicesDep, reader: ReaderDep
) -> dict[str, Any]:
    if sum(len(v) for v in body.values()) > 6 * services.settings.seqcol_max_elements:
        raise _refuse(413, "collection_too_large", "the posted collection is too large to compare")
    a = _arrays(services, *_stored(services, digest_a, reader))
    return {"digests": {"a": digest_a, "b": "POSTed seqcol"}, **compare(a, body)}


def _page(results: list[str], total: int, page: int, page_size: int) -> dict[str, Any]:
    return {"results": results, "pagination": {"page": page, "page_size": page_size, "total": total}}


@collections.get("/list/collection")
def list_collections(
    request: Request,
    services: ServicesDep,
    reader: ReaderDep,
    page: Annotated[int, Query(ge=0)] = 0,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Collections of finished uploads; any attribute given (``names=<digest>``…) must match (AND)."""
    filters = {k: v for k, v in request.query_params.items() if k in (*ATTRIBUTES, "sorted_name_length_pairs")}
    with services.pool.connection() as conn:
        results, total = queries.list_collections(conn, filters, page, page_size, _owner(reader))
    return _page(results, total, page, page_size)


@collections.get("/list/attributes/{attribute}")
def list_attributes(
    attribute: str,
    services: ServicesDep,
    reader: ReaderDep,
    page: Annotated[int, Query(ge=0)] = 0,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    if attribute not in ATTRIBUTES:
        raise _refuse(404, "not_found", f"no attribute {attribute[:80]}")
    with services.pool.connection() as conn:
        results, total = queries.list_attribute_digests(conn, attribute, page, page_size, _owner(reader))
    return _page(results, total, page, page_size)


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
    )
    app.state.services = Services(settings, pool)
    app.add_middleware(BodyLimit, max_bytes=settings.seqcol_max_post_bytes)  # POST /comparison: unparsed
    app.add_middleware(metrics.HttpMetrics)
    app.include_router(sequences)
    app.include_router(collections)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        with pool.connection() as conn:
            conn.execute("SELECT 1")
        return {"status": "ok"}

    return app
