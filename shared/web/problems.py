"""One shape for every error answer of the HTTP services: RFC 9457 problem details.

Every refusal and failure of the intake and refget, whoever answers it (a route's
``HTTPException``, FastAPI's request validation, Starlette's unknown route or method, the ASGI
guards in front of the routes, an exception nobody handled), is ``application/problem+json``::

    {"type": "https://genobase.dev/problems/not_found", "title": "Not found", "status": 404,
     "detail": "no upload 0b6f…", "code": "not_found", "error_id": "5f0c2a…"}

* ``type`` is a stable absolute URI per ``code`` (RFC 9457 recommends absolute URIs: a relative
  one resolves against each service's own origin, so the same problem would have two types).
  It identifies the problem; clients should not fetch it. ``about:blank`` is not used: it allows
  only the status phrase as a title, and every problem here has a code of its own.
* ``title`` is made from the code alone, so it never changes from one occurrence to the next.
* ``status`` is the answer's own status code; ``detail`` a message written to be shown (never an
  exception's text, never the request's input beyond a bounded excerpt).
* Extension members: ``code`` (what a client branches on), ``error_id`` (fresh for each error; the
  line logged with the detail on the server carries it, so a user can quote it), ``errors`` on
  ``invalid_request`` (which fields were wrong: a bounded list of ``loc``/``msg``/``type``, the
  input never echoed), ``checks`` on an unhealthy ``/healthz``. Headers a status calls for stay:
  ``WWW-Authenticate`` on 401, ``Retry-After`` on 429, ``Allow`` on 405.

``install(app)`` puts the exception handlers on an app and makes its OpenAPI document declare the
shape for every error response of every route (``document``); ``operation_id`` names each
operation after its function.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from shared.domain.uploads import new_error_id

log = structlog.get_logger()

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://genobase.dev/problems/"
MAX_DETAIL_CHARS = 1000
MAX_FIELD_ERRORS = 10  # of a 422's ``errors``
_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code", "error_id"})

# The code of an error that has none of its own (Starlette's refusals, a route's plain message).
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}
# What to say when the one refusing gave no message of its own (Starlette: only the status phrase).
_DEFAULT_DETAILS: dict[int, str] = {
    404: "nothing is served at this path",
    405: "this path does not answer this method (the Allow header lists those it does)",
    500: "the request failed",
}


class FieldError(BaseModel):
    """One part of a request that did not validate: where (``loc``), and the rule it broke."""

    loc: list[str | int] = Field(description='where: ["body", "size"], ["query", "limit"], …')
    msg: str = Field(description="the rule the value broke (never the value itself)")
    type: str = Field(description="pydantic's name for the rule, e.g. int_parsing, string_too_long")


class Problem(BaseModel):
    """An error answer (RFC 9457, ``application/problem+json``), with Genobase's extension members."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description=f"{PROBLEM_TYPE_BASE}<code>: identifies the problem (not fetched)")
    title: str = Field(description="a short summary of the problem's code; the same for every occurrence")
    status: int = Field(ge=400, le=599, description="the answer's HTTP status code")
    detail: str = Field(description="what went wrong this time, safe to show")
    code: str = Field(description="what a client branches on, e.g. not_found, upload_too_large")
    error_id: str = Field(description="this error's id; the server's log line with the detail carries it")
    errors: list[FieldError] | None = Field(
        default=None, description=f"invalid_request only: up to {MAX_FIELD_ERRORS} fields that did not validate"
    )


def problem_type(code: str) -> str:
    return PROBLEM_TYPE_BASE + code


def title_of(code: str) -> str:
    """``too_many_failed_keys`` → ``Too many failed keys``: from the code alone, so stable."""
    return code.replace("_", " ").capitalize()


def code_of_status(status: int) -> str:
    return STATUS_CODES.get(status, "bad_request" if status < 500 else "internal_error")


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    error_id: str | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """The answer for one error. A fresh ``error_id`` is logged here with the detail; one given
    (minted by a caller that logged its own line, e.g. with the exception) is used as it is."""
    detail = detail[:MAX_DETAIL_CHARS]
    if error_id is None:
        error_id = new_error_id()
        # A refusal a caller without a valid key can cause at will (401, 404, 405, 429) is logged at
        # debug: at info, anyone could fill the log at the rate the failed-key limiter allows.
        quiet = status in (401, 404, 405, 429)
        (log.debug if quiet else log.info)(
            "request refused", status=status, code=code, error_id=error_id, detail=detail
        )
    problem = Problem(
        type=problem_type(code),
        title=title_of(code),
        status=status,
        detail=detail,
        code=code,
        error_id=error_id,
        **{k: v for k, v in (extensions or {}).items() if k not in _STANDARD_MEMBERS},
    )
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 200)


async def http_exception(_request: Request, exc: Exception) -> JSONResponse:
    """A route's ``HTTPException`` (``{"code", "message", "error_id"?, …}`` or a plain message)
    and Starlette's own (no route, wrong method), as a problem. Short scalar members beside
    ``code`` and ``message`` become extension members."""
    assert isinstance(exc, StarletteHTTPException)
    status, detail = exc.status_code, exc.detail
    code, message, error_id = code_of_status(status), None, None
    extensions: dict[str, Any] = {}
    if isinstance(detail, dict):
        code = str(detail.get("code") or code)
        message = detail.get("message")
        given_id = detail.get("error_id")
        error_id = given_id if isinstance(given_id, str) and given_id else None
        extensions = {k: v for k, v in detail.items() if k not in {"code", "message"} and _scalar(v)}
    elif isinstance(detail, str) and detail and detail != _phrase(status):
        message = detail
    if not isinstance(message, str) or not message:
        message = _DEFAULT_DETAILS.get(status, _phrase(status) or code)
    return problem_response(status, code, message, headers=exc.headers, error_id=error_id, extensions=extensions)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _field_error(error: Mapping[str, Any]) -> dict[str, Any]:
    loc = [part if isinstance(part, int) else str(part)[:64] for part in list(error.get("loc", ()))[:8]]
    return {"loc": loc, "msg": str(error.get("msg", "invalid"))[:200], "type": str(error.get("type", ""))[:64]}


async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """422 ``invalid_request``: which fields were wrong and the rule each broke, never the input
    (pydantic's ``input`` and ``ctx`` are dropped; names from the body are cut to 64 characters)."""
    assert isinstance(exc, RequestValidationError)
    everything = exc.errors()
    errors = [_field_error(error) for error in everything[:MAX_FIELD_ERRORS]]
    summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:3])
    more = f" (and {len(everything) - 3} more)" if len(everything) > 3 else ""
    return problem_response(
        422, "invalid_request", f"the request is not valid: {summary}{more}", extensions={"errors": errors}
    )


def operation_id(route: APIRoute) -> str:
    """An operation's id: its function's name (stable, and unique within a service: the OpenAPI
    test checks)."""
    return route.name


def install(app: FastAPI) -> None:
    """Problem answers for the app's HTTP exceptions and validation errors, declared in its OpenAPI
    document. (Unhandled exceptions: ``guard.RequestId``; the ASGI guards answer with
    ``problem_response`` themselves.)"""
    app.add_exception_handler(StarletteHTTPException, http_exception)
    app.add_exception_handler(RequestValidationError, invalid_request)
    built = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(built())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# --- the OpenAPI document ---------------------------------------------------------------------------

_REF = "#/components/schemas/Problem"
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
# Errors every operation of a kind can answer, whether or not its route declares them.
_IMPLIED: dict[str, str] = {
    "400": "a request body nested deeper than the service's schemas (too_deep)",
    "401": "no API key, or an unknown or revoked one (unauthorized); WWW-Authenticate: Bearer",
    "404": "nothing the caller may see has this id (not_found); another owner's is answered the same",
    "413": "a request body over the service's limit (request_too_large)",
    "422": "a parameter or a body field that does not validate (invalid_request, with errors)",
    "429": "too many unknown keys from this address (too_many_failed_keys); Retry-After says when to try again",
    "500": "the request failed (internal_error); the detail is in the server's log under error_id",
}
_HEADERS: dict[str, dict[str, Any]] = {
    "401": {"WWW-Authenticate": {"description": 'Bearer realm="genobase"', "schema": {"type": "string"}}},
    "429": {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}},
}


def _implied(operation: Mapping[str, Any]) -> set[str]:
    codes = {"500"}
    parameters = operation.get("parameters", [])
    if operation.get("security"):
        codes |= {"401", "429"}
    if parameters or "requestBody" in operation:
        codes.add("422")
    if any(parameter.get("in") == "path" for parameter in parameters):
        codes.add("404")
    if "requestBody" in operation:
        codes |= {"400", "413"}
    return codes


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with every operation's 4xx and 5xx answers as problems: those its route
    declares (their descriptions kept) and those every route of its kind can give (``_IMPLIED``:
    401 and 429 where a key is required, 404 with a path parameter, 422 with any parameter or body,
    400 and 413 with a body, 500 everywhere). FastAPI's own 422 schema goes."""
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for code in sorted(_implied(operation)):
                responses.setdefault(code, {"description": _IMPLIED[code]})
            for code, response in responses.items():
                if code[:1] in {"4", "5"}:
                    if response.get("description") in {"Validation Error", None}:
                        response["description"] = _IMPLIED.get(code, "an error")
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF}}}
                    if code == "429" or (code == "401" and operation.get("security")):
                        response.setdefault("headers", _HEADERS[code])
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for unused in ("HTTPValidationError", "ValidationError"):  # in this order: the first refers to the second
        if f'"#/components/schemas/{unused}"' not in json.dumps(schema):
            schemas.pop(unused, None)
    return schema
