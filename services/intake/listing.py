"""HTTP routes of the intake over many uploads and an upload's labels: the listing, the look-up
by object, and the labels' merge patch.

Their own router, included before ``api.py``'s: ``/uploads/lookup`` must be matched before
``/uploads/{upload_id}`` would take ``lookup`` for an id. Thin, like ``api.py``: each parses its
request, calls a use case (``shared/usecases/uploads.py``) and shapes the answer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, status

from services.intake.api import CallerDep, DepsDep, _refusal, status_answer
from services.intake.schemas import (
    BUCKET_NAME,
    MAX_KEY_BYTES,
    OBJECT_KEY,
    LabelsPatch,
    UploadList,
    UploadStatus,
    UploadSummary,
)
from shared.domain.listing import DEFAULT_PAGE, MAX_LABEL_FILTERS, MAX_PAGE
from shared.domain.uploads import Mode, Upload
from shared.usecases import uploads as usecases

listing_router = APIRouter(tags=["uploads"])

_LISTING_REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"description": "admin_only: a key that is not an admin's named another owner"},
    422: {"description": "invalid_cursor, invalid_state, invalid_name, invalid_label_filter, invalid_owner, "
          "use_lookup, or a parameter out of bounds"},
}  # fmt: skip


def summary_answer(upload: Upload, status_base_url: str) -> UploadSummary:
    failure = upload.failure
    return UploadSummary(
        id=upload.id,
        owner=upload.owner,
        filename=upload.filename,
        bucket=upload.bucket,
        key=upload.key,
        state=upload.state,
        format=upload.format,
        generation=upload.generation,
        mode=Mode(upload.mode),
        size=upload.bytes_total,
        records=upload.result_records if upload.result_records is not None else upload.records_done,
        result_size=upload.result_size,
        labels=dict(upload.labels),
        error_code=failure.code if failure is not None else None,
        created_at=upload.created_at,
        updated_at=upload.updated_at,
        status_url=f"{status_base_url}/uploads/{upload.id}",
    )


@listing_router.get("/uploads", response_model=UploadList, responses=_LISTING_REFUSALS)
def list_uploads(
    deps: DepsDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="uploads a page")] = DEFAULT_PAGE,
    # Bounded by the use case, which answers with a code (invalid_cursor, invalid_name, ...).
    cursor: Annotated[str | None, Query(description="the previous page's next_cursor (opaque)")] = None,
    state: Annotated[list[str], Query(description="only these states (repeatable)")] = [],  # noqa: B006
    name: Annotated[str | None, Query(description="the file name starts with this (a plain prefix)")] = None,
    label: Annotated[
        list[str], Query(description=f"key=value, repeatable (at most {MAX_LABEL_FILTERS}): all must match")
    ] = [],  # noqa: B006
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    owner: Annotated[str | None, Query(max_length=63, description="admin keys: one owner's uploads")] = None,
    bucket: Annotated[str | None, Query(include_in_schema=False)] = None,
    key: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> UploadList:
    """The caller's uploads, newest first, a page at a time (keyset: each page costs the same).

    An admin key lists every owner's, or one ``owner``'s; another key naming an owner other than
    its own is refused (403). Without ``state``, every state is listed (a deleted upload's
    tombstone excepted). No signed URLs: each upload's ``status_url`` has them.
    """
    if bucket is not None or key is not None:  # the look-up by object moved: say so, never list instead
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            {"code": "use_lookup", "message": "look an upload up by its object at /uploads/lookup?bucket=…&key=…"},
        )
    wanted = usecases.ListWanted(
        states=state,
        name_prefix=name,
        labels=label,
        created_after=created_after,
        created_before=created_before,
        owner=owner,
        cursor=cursor,
        limit=limit,
    )
    try:
        page = usecases.list_uploads(deps.intake, caller, wanted)
    except usecases.Refused as refused:
        raise _refusal(refused) from None
    base = deps.intake.settings.status_base_url
    return UploadList(uploads=[summary_answer(u, base) for u in page.uploads], next_cursor=page.next_cursor)


@listing_router.get("/uploads/lookup", response_model=UploadStatus)
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


_MERGE_PATCH = {
    "requestBody": {
        "content": {
            media: {"schema": {"$ref": "#/components/schemas/LabelsPatch"}}
            for media in ("application/merge-patch+json", "application/json")
        }
    }
}


@listing_router.patch(
    "/uploads/{upload_id}",
    response_model=UploadStatus,
    openapi_extra=_MERGE_PATCH,
    responses={
        409: {"description": "upload_deleted: a deleted upload's tombstone holds no labels"},
        422: {"description": "invalid_labels: the labels after the patch are beyond their bounds"},
    },
)
def patch_upload(
    upload_id: uuid.UUID, body: Annotated[LabelsPatch, Body()], deps: DepsDep, caller: CallerDep
) -> UploadStatus:
    """Change an upload's labels with a JSON merge patch (RFC 7396): ``{"labels": {"run": "7",
    "old": null}}`` sets ``run`` and removes ``old``; ``{"labels": null}`` removes every label.
    The owner's keys or an admin's; another owner's upload is a 404. A result document already
    written keeps the labels it was written with."""
    try:
        return status_answer(usecases.change_labels(deps.intake, caller, upload_id, body.labels))
    except usecases.Refused as refused:
        raise _refusal(refused) from None
