"""The read API: GA4GH refget v2.0 sequences and sequence collections (seqcol), over what the
pipeline stored. Read-only. A route parses its request, calls its use case
(``shared/usecases/refget.py``) and shapes the answer; the use cases read the store through the read
ports (``shared/domain/read_ports.py``), which ``create_app`` wires to Postgres
(``shared/postgres/refget.py``) and ``build_app`` takes from its caller (fakes in the unit tests).

Where the refget compliance suite (written for v1.0) and the v2.0 specification differ, this
follows v2.0 and also answers the suite (docs/api.md "Read API"): the v1.0 media types are accepted
as well as v2.0's, and service-info carries the v1 ``service`` object beside v2's ``refget``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Security
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from services.refget.posted import MAX_DEPTH, PostLimits, parse_collection
from services.refget.ranges import Refused, requested_slice
from services.refget.schemas import (
    AttributeValue,
    Collection,
    Comparison,
    DigestPage,
    Healthy,
    SeqcolServiceInfo,
    SequenceMetadata,
    SequenceServiceInfo,
)
from shared.domain.access import KeyStore
from shared.domain.read_ports import CollectionReads, SequenceReads, StoreHealth
from shared.postgres.keys import PostgresKeys
from shared.postgres.refget import PostgresReads
from shared.runtime import metrics
from shared.runtime.settings import Settings
from shared.usecases import refget as reads
from shared.usecases.refget import CollectionLimits, NotFound, Page, Reader, ReadRefused, TooLarge
from shared.web import problems
from shared.web.body_limit import BodyLimit
from shared.web.guard import AuthBeforeBody, RequestId, api_key_caller, caller_or_refusal
from shared.web.headers import PageHeaders
from shared.web.problems import problem_response

log = structlog.get_logger()

V2_TEXT = "text/vnd.ga4gh.refget.v2.0.0+plain"
V2_JSON = "application/vnd.ga4gh.refget.v2.0.0+json"
_TEXT_TYPES = {V2_TEXT, "text/vnd.ga4gh.refget.v1.0.0+plain", "text/plain", "text/*", "*/*"}
_JSON_TYPES = {V2_JSON, "application/vnd.ga4gh.refget.v1.0.0+json", "application/json", "application/*", "*/*"}


def _refuse(status_code: int, code: str, message: str) -> HTTPException:
    return HTTPException(status_code, {"code": code, "message": message})


def _answers(model: type[BaseModel], *media_types: str, **errors: str) -> dict[str, Any]:
    """A route's declared answers: ``model`` for its 200 (under each of ``media_types``, JSON by
    default), and the refusals of its own (``e406="…"``); the errors every route can give, and the
    problem shape of all of them, come from ``problems.document``. The answer is returned as the
    use case built it (``response_model=None``): a large collection is not validated on each read."""
    ref = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    content = {media: ref for media in media_types or ("application/json",)}
    responses: dict[int | str, dict[str, Any]] = {200: {"model": model, "content": content}}
    responses.update({int(code[1:]): {"description": text} for code, text in errors.items()})
    return {"response_model": None, "responses": responses}


_JSON_MEDIA = (V2_JSON, "application/json")
_RESIDUES = {"schema": {"type": "string", "description": "upper-case residues, no line breaks"}}
_SEQUENCE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "the sequence, or the slice start/end asked for",
          "content": {V2_TEXT: _RESIDUES, "text/plain": _RESIDUES}},
    206: {"description": "the bytes a Range header asked for",
          "content": {V2_TEXT: _RESIDUES, "text/plain": _RESIDUES}},
    400: {"description": "start or end not a non-negative integer, a malformed Range, or both forms (bad_request)"},
    406: {"description": "an Accept this route cannot answer (not_acceptable)"},
    416: {"description": "out of the sequence's bounds, or start after end on a linear sequence "
          "(range_not_satisfiable)"},
}  # fmt: skip


def _accepted(accept: str | None, offered: set[str]) -> str | None:
    """The media type to answer with, or None if the client accepts none of ``offered``."""
    if not accept:
        return "*/*"
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in offered:
            return media
    return None


Authenticate = Callable[[str | None], Reader]


def reader_authentication(settings: Settings, keys: KeyStore) -> Authenticate:
    """Who reads, from the ``Authorization`` header: public reading needs (and checks) no key;
    otherwise a missing, unknown or revoked key is ``Unauthorized``."""

    def authenticate(header: str | None) -> Reader:
        return None if settings.refget_public else api_key_caller(keys, header)

    return authenticate


@dataclass(frozen=True)
class ReadPorts:
    """The store the routes read, one port per kind of read (one object may be all three)."""

    sequences: SequenceReads
    collections: CollectionReads
    health: StoreHealth


class Services:
    """What the routes are given: the read ports, the key check and the limits, from the settings."""

    def __init__(self, settings: Settings, ports: ReadPorts, authenticate: Authenticate) -> None:
        self.settings = settings
        self.sequences = ports.sequences
        self.collections = ports.collections
        self.health = ports.health
        self.authenticate = authenticate
        self.post_limits = PostLimits(settings.seqcol_max_elements, settings.max_header_bytes)
        self.collection_limits = CollectionLimits.of(settings)


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


sequences = APIRouter(prefix="/sequence", tags=["refget sequences"])


@sequences.get("/service-info", **_answers(SequenceServiceInfo))
def sequence_service_info() -> dict[str, Any]:
    return reads.sequence_service_info()


@sequences.get("/{sequence_id}", response_class=Response, responses=_SEQUENCE_ANSWERS)
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
    found = reads.find_sequence(services.sequences, sequence_id, reader)
    try:
        wanted = requested_slice(found.length, found.circular, start, end, range_header)
    except Refused as refused:
        raise _refuse(refused.status, refused.code, refused.message) from None
    size = wanted.size_in(found.length)
    headers = {"Content-Length": str(size), "Accept-Ranges": "bytes"}
    if wanted.partial:
        headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end - 1}/{found.length}"
    content_type = "text/plain" if media == "text/plain" else V2_TEXT
    body = reads.residues(services.sequences, found, wanted.start, wanted.end, wraps=wanted.wraps)
    return StreamingResponse(
        body,
        status_code=206 if wanted.partial else 200,
        media_type=f"{content_type}; charset=us-ascii",
        headers=headers,
    )


@sequences.get(
    "/{sequence_id}/metadata",
    **_answers(SequenceMetadata, *_JSON_MEDIA, e406="an Accept this route cannot answer (not_acceptable)"),
)
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
    found = reads.find_sequence(services.sequences, sequence_id, reader)
    metadata = reads.sequence_metadata(services.sequences, found, reader)
    content_type = "application/json" if media == "application/json" else V2_JSON
    return JSONResponse({"metadata": metadata}, media_type=content_type)


# --- sequence collections ---------------------------------------------------------------------------

collections = APIRouter(tags=["sequence collections"])


@collections.get("/service-info", **_answers(SeqcolServiceInfo))
def seqcol_service_info() -> dict[str, Any]:
    return reads.seqcol_service_info()


# The deepest page a listing serves: OFFSET stays far inside Postgres's bigint.
MAX_PAGE = 1_000_000


_TOO_LARGE = "more elements than GENOBASE_SEQCOL_MAX_ELEMENTS to serve at level 2 (collection_too_large)"


@collections.get("/collection/{digest}", **_answers(Collection, e413=_TOO_LARGE))
def get_collection(
    digest: str,
    services: ServicesDep,
    reader: ReaderDep,
    level: Annotated[int, Query(ge=1, le=2)] = 2,
) -> dict[str, Any]:
    return reads.collection(services.collections, digest, reader, level, services.collection_limits)


@collections.get("/attribute/collection/{attribute}/{digest}", **_answers(AttributeValue, e413=_TOO_LARGE))
def get_attribute(attribute: str, digest: str, services: ServicesDep, reader: ReaderDep) -> list[Any]:
    return reads.attribute(services.collections, attribute, digest, reader, services.collection_limits)


@collections.get("/comparison/{digest_a}/{digest_b}", **_answers(Comparison, e413=_TOO_LARGE))
def compare_two(digest_a: str, digest_b: str, services: ServicesDep, reader: ReaderDep) -> dict[str, Any]:
    return reads.compare_stored(services.collections, digest_a, digest_b, reader, services.collection_limits)


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


@collections.post(
    "/comparison/{digest_a}",
    openapi_extra=_POSTED_COLLECTION,
    **_answers(
        Comparison,
        e400="not a level-2 collection, or an element of the wrong type (bad_request), or nested too deep (too_deep)",
        e413="a body over GENOBASE_SEQCOL_MAX_POST_BYTES (request_too_large), an element over "
        "GENOBASE_MAX_HEADER_BYTES (element_too_large), too many elements (collection_too_large)",
    ),
)
def compare_with_posted(
    digest_a: str, body: Annotated[bytes, Depends(_posted_body)], services: ServicesDep, reader: ReaderDep
) -> dict[str, Any]:
    """Compare a stored collection with a posted level-2 one (every element typed and bounded)."""
    try:
        posted = parse_collection(body, services.post_limits)
    except Refused as refused:
        raise _refuse(refused.status, refused.code, refused.message) from None
    return reads.compare_with_posted(services.collections, digest_a, posted, reader, services.collection_limits)


def _page(page: Page) -> dict[str, Any]:
    return {
        "results": page.results,
        "pagination": {"page": page.page, "page_size": page.page_size, "total": page.total},
    }


PageDep = Annotated[int, Query(ge=0, le=MAX_PAGE)]
PageSizeDep = Annotated[int, Query(ge=1, le=1000)]


@collections.get("/list/collection", **_answers(DigestPage))
def list_collections(
    request: Request, services: ServicesDep, reader: ReaderDep, page: PageDep = 0, page_size: PageSizeDep = 100
) -> dict[str, Any]:
    """Collections of finished uploads the reader sees; any attribute given (``names=<digest>``…)
    must match (AND). A value that is not a digest matches nothing."""
    return _page(reads.list_collections(services.collections, request.query_params, page, page_size, reader))


@collections.get("/list/attributes/{attribute}", **_answers(DigestPage))
def list_attributes(
    attribute: str, services: ServicesDep, reader: ReaderDep, page: PageDep = 0, page_size: PageSizeDep = 100
) -> dict[str, Any]:
    return _page(reads.list_attribute_digests(services.collections, attribute, page, page_size, reader))


# --- errors: problem details (shared/web/problems.py), a use case's refusal among them ---------------


async def _read_refused(_request: Request, exc: Exception) -> JSONResponse:
    """A use case's refusal: not found (404), a collection too large to serve (413), any other 400."""
    assert isinstance(exc, ReadRefused)
    status_code = 404 if isinstance(exc, NotFound) else 413 if isinstance(exc, TooLarge) else 400
    return problem_response(status_code, exc.code, exc.message)


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(settings: Settings) -> FastAPI:
    """The service: its reads from Postgres, keys checked against the same pool."""
    store = PostgresReads(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.open()
        try:
            yield
        finally:
            store.close()

    ports = ReadPorts(sequences=store, collections=store, health=store)
    return build_app(
        settings, ports, reader_authentication(settings, PostgresKeys.from_pool(store.pool)), lifespan=lifespan
    )


def build_app(
    settings: Settings, ports: ReadPorts, authenticate: Authenticate, lifespan: Lifespan | None = None
) -> FastAPI:
    """The read API over any store that has the read ports (``create_app``: Postgres; the unit
    tests: in-memory fakes) and any key check; ``lifespan`` opens and closes the store."""
    app = FastAPI(
        title="Genobase refget",
        description="GA4GH refget v2.0 sequences and sequence collections, read from what Genobase stored.",
        lifespan=lifespan,
        generate_unique_id_function=problems.operation_id,
        # Swagger UI and ReDoc load their scripts from a CDN: not served; /openapi.json stays
        docs_url=None,
        redoc_url=None,
    )
    services = Services(settings, ports, authenticate)
    app.state.services = services
    # Outermost last: a request id for everything; metrics; a key before any body is read; the body
    # bounded by bytes and nesting before anything parses it (POST /comparison).
    app.add_middleware(BodyLimit, max_bytes=settings.seqcol_max_post_bytes, max_json_depth=MAX_DEPTH)
    app.add_middleware(AuthBeforeBody, authenticate=services.authenticate)
    app.add_middleware(metrics.HttpMetrics)
    app.add_middleware(PageHeaders)  # a policy that lets nothing load from elsewhere, no framing, nosniff
    app.add_middleware(RequestId)
    problems.install(app)
    app.add_exception_handler(ReadRefused, _read_refused)
    app.include_router(sequences)
    app.include_router(collections)

    @app.get("/healthz", tags=["health"], **_answers(Healthy, e500="the store does not answer (internal_error)"))
    def healthz() -> dict[str, str]:
        """Public: 200 when the store answers."""
        ports.health.ping()
        return {"status": "ok"}

    return app
