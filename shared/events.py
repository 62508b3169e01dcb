"""Turns bucket notifications of MinIO and Ceph RGW into ``ObjectCreated``.

This is the only place that knows which object store sent an event. The two differ in ways that
matter (measured and documented in the design brief):

* MinIO prefixes event names with ``s3:`` and URL-encodes ``s3.object.key`` (``/`` as ``%2F``,
  space as ``+``); RGW sends the key plain and the name without prefix.
* MinIO's ``s3:ObjectCreated:*`` also fires for tagging and retention changes; only the four kinds
  that create content are taken.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import orjson

from shared.uploads import ObjectCreated, Upload

CREATION_EVENTS = frozenset({"Put", "Post", "Copy", "CompleteMultipartUpload"})


class MalformedEvent(ValueError):
    """The body is not a bucket notification at all: dead-letter it, it will never parse."""


def normalise_event(body: bytes) -> list[ObjectCreated]:
    """Return one ``ObjectCreated`` per content-creating record; other records are dropped."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"event body is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("Records"), list):
        raise MalformedEvent("event body has no Records list")
    return [created for record in doc["Records"] if (created := _record_to_created(record)) is not None]


def _record_to_created(record: Any) -> ObjectCreated | None:
    if not isinstance(record, dict):
        raise MalformedEvent("a record is not an object")
    name = str(record.get("eventName", ""))
    kind, _, detail = name.removeprefix("s3:").partition(":")
    if kind != "ObjectCreated" or detail not in CREATION_EVENTS:
        return None
    try:
        s3 = record["s3"]
        obj = s3["object"]
        bucket = s3["bucket"]["name"]
        raw_key = obj["key"]
    except (KeyError, TypeError) as exc:
        raise MalformedEvent(f"creation record lacks {exc}") from exc
    source = str(record.get("eventSource", ""))
    # AWS and MinIO URL-encode keys; only Ceph sends them as they are.
    key = raw_key if source.startswith("ceph") else unquote_plus(raw_key)
    return ObjectCreated(
        bucket=bucket,
        key=key,
        size=int(obj.get("size") or 0),
        etag=str(obj.get("eTag") or "").strip('"'),
        sequencer=obj.get("sequencer") or None,
        event_time=_parse_time(record.get("eventTime")),
    )


def replay_event(upload: Upload) -> bytes:
    """A notification for an upload's object as it is known, to process it again.

    The watchdog and ``genobase dead-letters --replay`` send it. Written in the S3 event format with
    the key URL-encoded, as AWS and MinIO send it.
    """
    if upload.etag is None:
        raise ValueError(f"upload {upload.id} has no object yet")
    bucket, key, size, etag = upload.bucket, upload.key, upload.bytes_total or 0, upload.etag
    record = {
        "eventSource": "genobase:replay",
        "eventName": "ObjectCreated:Put",
        "eventTime": datetime.now(UTC).isoformat(),
        "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe=""), "size": size, "eTag": etag}},
    }
    return orjson.dumps({"Records": [record]})


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
