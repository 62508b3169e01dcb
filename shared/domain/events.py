"""Turns bucket notifications of MinIO and Ceph RGW into ``ObjectCreated``.

This is the only place that knows which object store sent an event. The two differ in ways that
matter (measured and documented in the design brief):

* MinIO prefixes event names with ``s3:`` and URL-encodes ``s3.object.key`` (``/`` as ``%2F``,
  space as ``+``); RGW sends the key plain and the name without prefix.
* MinIO's ``s3:ObjectCreated:*`` also fires for tagging and retention changes; only the four kinds
  that create content are taken.

The events exchange is writable by the object store's own broker user, so a body here is untrusted
input: every field is checked for its type and size, and anything else is a ``MalformedEvent``
(never a ``ValueError``/``TypeError`` that a consumer would not recognise as "dead-letter it").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import orjson

from shared.domain.reconcile import ListedObject
from shared.domain.uploads import ObjectCreated, Upload

CREATION_EVENTS = frozenset({"Put", "Post", "Copy", "CompleteMultipartUpload"})
MAX_KEY_BYTES = 1024  # S3's limit on an object key
# No string field of a genuine notification comes near this (a URL-encoded key is at most 3x 1024).
MAX_FIELD_CHARS = 4 * MAX_KEY_BYTES


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
    name = _text(record, "eventName", default="")
    kind, _, detail = name.removeprefix("s3:").partition(":")
    if kind != "ObjectCreated" or detail not in CREATION_EVENTS:
        return None
    s3, obj, bucket_doc = record.get("s3"), None, None
    if isinstance(s3, dict):
        obj, bucket_doc = s3.get("object"), s3.get("bucket")
    if not isinstance(obj, dict) or not isinstance(bucket_doc, dict):
        raise MalformedEvent("creation record lacks s3.object or s3.bucket")
    bucket, raw_key = _text(bucket_doc, "name"), _text(obj, "key")
    if not bucket or not raw_key:
        raise MalformedEvent("creation record lacks a bucket name or an object key")
    source = _text(record, "eventSource", default="")
    # AWS and MinIO URL-encode keys; only Ceph sends them as they are.
    key = raw_key if source.startswith("ceph") else unquote_plus(raw_key)
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise MalformedEvent(f"object key longer than S3's {MAX_KEY_BYTES} bytes")
    return ObjectCreated(
        bucket=bucket,
        key=key,
        size=_size(obj.get("size")),
        etag=_text(obj, "eTag", default="").strip('"'),
        sequencer=_text(obj, "sequencer", default="") or None,
        event_time=_parse_time(record.get("eventTime")),
    )


def _text(doc: dict[str, Any], field: str, default: str | None = None) -> str:
    """A string field as it was sent: a number, list or object where text belongs is a forgery.

    Absent or null gives ``default`` (a required field has none and is malformed when missing).
    """
    value = doc.get(field)
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS:
        raise MalformedEvent(f"{field} is not a string of at most {MAX_FIELD_CHARS} characters")
    return value


def _size(value: Any) -> int:
    """The object's size as stores send it: a JSON integer (absent or null: 0, the store is asked anyway)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise MalformedEvent("object size is not a non-negative integer")
    return value


def replay_event(upload: Upload) -> bytes:
    """A notification for an upload's object as it is known, to process it again.

    The watchdog and ``genobase dead-letters --replay`` send it. Written in the S3 event format with
    the key URL-encoded, as AWS and MinIO send it.
    """
    if upload.etag is None:
        raise ValueError(f"upload {upload.id} has no object yet")
    return _event_body("genobase:replay", upload.bucket, upload.key, upload.bytes_total or 0, upload.etag, None)


def reconcile_event(bucket: str, listed: ListedObject) -> bytes:
    """A notification for an object the reconciler found in a listing (shared/domain/reconcile.py).

    The same shape as the store's and the replay's, so that the parser checks it as any other: a
    HEAD must show the etag before a generation starts. Its time is the object's write time, not
    the time it was found, so that a genuine event of a later overwrite never looks older.
    """
    return _event_body("genobase:reconcile", bucket, listed.key, listed.size, listed.etag, listed.last_modified)


def _event_body(source: str, bucket: str, key: str, size: int, etag: str, when: datetime | None) -> bytes:
    record = {
        "eventSource": source,
        "eventName": "ObjectCreated:Put",
        "eventTime": (when or datetime.now(UTC)).isoformat(),
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
