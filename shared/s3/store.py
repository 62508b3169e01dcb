"""S3 adapter: ranged streaming reads, multipart writes, presigned URLs.

boto3 speaks to both MinIO and Ceph RGW. Two settings matter for them: path-style addressing
(no wildcard DNS in front of either) and checksums only when required (botocore's newer default
CRC trailers are not understood by older RGW releases).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.domain.ports import ObjectChanged, ObjectStat
from shared.domain.reconcile import ListedObject
from shared.runtime.settings import Settings

__all__ = ["ObjectChanged", "ObjectStore", "make_client"]


_TRANSIENT = (BotoCoreError, ConnectionError)
# S3 calls that move data ride out a restarting or briefly unreachable store.
_s3_retry = retry(
    retry=retry_if_exception_type(_TRANSIENT),
    wait=wait_exponential(multiplier=0.5, max=10),
    stop=stop_after_delay(300),
    reraise=True,
)


def uploads_of_key(pages: Iterable[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The multipart uploads of exactly ``key`` among the pages of a ``ListMultipartUploads``."""
    return [upload for page in pages for upload in page.get("Uploads", []) if upload["Key"] == key]


# The one Content-Type an object PUT through a ticket may have: the ticket signs it, so a client
# that sends another (or none) is refused by the store. The intake gives it to the client with the
# ticket (``upload_headers``). The pipeline never reads it: the format is found from the content.
UPLOAD_CONTENT_TYPE = "application/octet-stream"


# What a HEAD shows of headers that a client may add to a presigned PUT, unsigned, and that the
# store keeps with the object (RGW keeps each; measured on Pacific 16.2.15). SSE, storage-class and
# object-lock headers are refused by the store itself; ACL headers are ignored (``protect_buckets``).
KEPT_UNSIGNED_HEADERS = (
    "x-amz-tagging-count",
    "x-amz-website-redirect-location",
    "cache-control",
    "content-encoding",
    "content-disposition",
    "content-language",
    "expires",
)


def unsigned_attributes(headers: dict[str, str]) -> tuple[str, ...]:
    """The names of the attributes in a HEAD's ``headers`` that no ticket signs (see ``ObjectStat``)."""
    found = [name for name in sorted(headers) if name.lower().startswith("x-amz-meta-")]
    found += [name for name in KEPT_UNSIGNED_HEADERS if headers.get(name)]
    if headers.get("content-type", UPLOAD_CONTENT_TYPE) != UPLOAD_CONTENT_TYPE:
        found.append("content-type")
    return tuple(found)


def make_client(settings: Settings, endpoint: str | None = None, credentials: tuple[str, str] | None = None) -> Any:
    access, secret = credentials or (
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint or settings.s3_endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=settings.s3_region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 5, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=settings.s3_connect_timeout_seconds,
            read_timeout=settings.s3_read_timeout_seconds,
            max_pool_connections=16,
        ),
    )


def _listed(entry: dict[str, Any]) -> ListedObject:
    return ListedObject(str(entry["Key"]), str(entry["ETag"]).strip('"'), int(entry["Size"]), entry["LastModified"])


class ObjectStore:
    """The operations the pipeline needs, and nothing else."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.client = make_client(settings)
        # Presigned URLs sign the Host header: sign with the endpoint the client will use.
        self._presigner = make_client(settings, settings.presign_endpoint)
        # Result links are signed by a user of their own, which can read results and nothing else;
        # the user that signs tickets can read nothing (shared/s3/users.py says why).
        download_access = settings.s3_download_access_key.get_secret_value()
        self._download_presigner = (
            make_client(
                settings,
                settings.presign_endpoint,
                (download_access, settings.s3_download_secret_key.get_secret_value()),
            )
            if download_access
            else self._presigner
        )

    def ensure_bucket(self, bucket: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError:
            self.client.create_bucket(Bucket=bucket)

    def protect_buckets(self, buckets: tuple[str, ...]) -> None:
        """Make the store ignore every public grant on ``buckets`` and their objects.

        A client may add ``x-amz-acl: public-read`` or an ``x-amz-grant-*`` header to a presigned
        PUT (RGW does not require them to be signed); with ``IgnorePublicAcls`` such a grant is
        kept but never honoured. The other three switches stay off: with ``BlockPublicAcls`` RGW
        Pacific refuses every PUT, even one with no ACL at all, and with ``BlockPublicPolicy`` it
        refuses the bucket policies that carry the users' grants (measured on 16.2.15). MinIO has no
        object ACLs: nothing to do there.
        """
        if self._settings.s3_kind == "minio":
            return
        for bucket in buckets:
            self.client.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": False,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": False,
                    "RestrictPublicBuckets": False,
                },
            )

    def allow_browser_uploads(self, bucket: str, origins: list[str]) -> None:
        """CORS on ``bucket`` for the upload page's origins: PUT of a file or of parts, POST to
        complete, and the parts' ETag readable (RGW's PutBucketCors; MinIO takes a server setting,
        compose.yaml's MINIO_API_CORS_ALLOW_ORIGIN)."""
        rule = {
            "AllowedOrigins": origins,
            "AllowedMethods": ["GET", "HEAD", "PUT", "POST", "DELETE"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 3600,
        }
        self.client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule]})

    def head(self, bucket: str, key: str) -> dict[str, Any]:
        return self.client.head_object(Bucket=bucket, Key=key)  # type: ignore[no-any-return]

    @_s3_retry
    def stat(self, bucket: str, key: str) -> ObjectStat | None:
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        headers = head.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return ObjectStat(str(head["ETag"]).strip('"'), int(head["ContentLength"]), unsigned_attributes(headers))

    @_s3_retry
    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def listed(self, bucket: str, key: str) -> ObjectStat | None:
        """The object as a listing of the bucket shows it (its etag and size), or None if there is none.

        The intake's use: its S3 user may list the uploads bucket but read no object, and a HEAD is
        a read (``s3:GetObject``). A listing from the key on holds the key itself first, if it exists.
        """
        listing = self.client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        for entry in listing.get("Contents", []):
            if entry["Key"] == key:
                return ObjectStat(str(entry["ETag"]).strip('"'), int(entry["Size"]))
        return None

    def list_page(self, bucket: str, start_after: str, limit: int) -> tuple[list[ListedObject], bool]:
        """One ListObjectsV2 page from ``start_after`` on (the reconciler's walk: a key, not the
        store's continuation token, so that a walk resumes anywhere, on any gateway)."""
        arguments: dict[str, Any] = {"Bucket": bucket, "MaxKeys": limit}
        if start_after:
            arguments["StartAfter"] = start_after
        listing = self.client.list_objects_v2(**arguments)
        page = [_listed(entry) for entry in listing.get("Contents", [])]
        return page, bool(listing.get("IsTruncated")) and bool(page)

    def listed_object(self, bucket: str, key: str) -> ListedObject | None:
        """The object at exactly ``key`` as a listing shows it (the reconciler's look at a ticket's
        key: its S3 user lists and reads nothing; a listing from the key holds the key first)."""
        listing = self.client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        for entry in listing.get("Contents", []):
            if entry["Key"] == key:
                return _listed(entry)
        return None

    def iter_ranges(
        self, bucket: str, key: str, size: int, etag: str, range_bytes: int, start: int = 0
    ) -> Iterator[bytes]:
        """Yield the object in ``range_bytes`` pieces, one ranged GET each, prefetching the next.

        ``If-Match`` pins every range to the etag of the event: an overwrite in the middle of a
        read raises ``ObjectChanged`` instead of mixing two generations.
        """
        if size <= start:
            return
        ranges = [(o, min(o + range_bytes, size) - 1) for o in range(start, size, range_bytes)]
        pending: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=1)
        stop = threading.Event()

        def fetch() -> None:
            try:
                for first, last in ranges:
                    if stop.is_set():
                        return
                    data = self._get_range(bucket, key, etag, first, last)
                    while not stop.is_set():
                        try:
                            pending.put(data, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                pending.put(None)
            except BaseException as exc:  # handed to the consumer thread
                pending.put(exc)

        worker = threading.Thread(target=fetch, name="s3-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                item = pending.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join(timeout=5)

    @_s3_retry
    def _get_range(self, bucket: str, key: str, etag: str, first: int, last: int) -> bytes:
        try:
            response = self.client.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={first}-{last}", IfMatch=f'"{etag}"'
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412", "NoSuchKey"):
                raise ObjectChanged(f"{bucket}/{key} no longer has etag {etag}") from exc
            raise
        body = response["Body"]
        try:
            return body.read()  # type: ignore[no-any-return]
        finally:
            body.close()

    def presign_put(self, bucket: str, key: str, ttl: int, size: int) -> str:
        """A PUT URL for exactly ``size`` bytes of ``UPLOAD_CONTENT_TYPE``: both are signed, so the
        store refuses any other body or type; the client sends ``Content-Type`` as the ticket says."""
        params = {"Bucket": bucket, "Key": key, "ContentLength": size, "ContentType": UPLOAD_CONTENT_TYPE}
        return self._presigner.generate_presigned_url(  # type: ignore[no-any-return]
            "put_object", Params=params, ExpiresIn=ttl
        )

    # --- multipart uploads of a client, signed by the intake --------------------------------------

    def start_multipart(self, bucket: str, key: str) -> str:
        """A new multipart upload of ``key``; returns its id."""
        response = self.client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=UPLOAD_CONTENT_TYPE)
        return str(response["UploadId"])

    def presign_part(self, bucket: str, key: str, upload_id: str, number: int, md5: str, size: int, ttl: int) -> str:
        """A PUT URL for part ``number`` whose MD5 (base64) and length are signed: the store refuses
        a corrupted or cut part (BadDigest, or a signature mismatch)."""
        params = {
            "Bucket": bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": number,
            "ContentMD5": md5,
            "ContentLength": size,
        }
        return self._presigner.generate_presigned_url(  # type: ignore[no-any-return]
            "upload_part", Params=params, ExpiresIn=ttl
        )

    def presign_multipart(self, operation: str, bucket: str, key: str, upload_id: str, ttl: int) -> str:
        """A URL to ``complete_multipart_upload``, ``abort_multipart_upload`` or ``list_parts``."""
        return self._presigner.generate_presigned_url(  # type: ignore[no-any-return]
            operation, Params={"Bucket": bucket, "Key": key, "UploadId": upload_id}, ExpiresIn=ttl
        )

    def parts(self, bucket: str, key: str, upload_id: str) -> list[tuple[int, str, int]]:
        """(number, etag, size) of every part the store has of a multipart upload."""
        found: list[tuple[int, str, int]] = []
        pages = self.client.get_paginator("list_parts").paginate(Bucket=bucket, Key=key, UploadId=upload_id)
        for page in pages:
            found += [(p["PartNumber"], p["ETag"].strip('"'), p["Size"]) for p in page.get("Parts", [])]
        return found

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> bool:
        """Abort it (its parts are deleted); False if the store no longer has it (completed or aborted)."""
        try:
            self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchUpload", "404"):
                return False
            raise
        return True

    def presign_get(self, bucket: str, key: str, ttl: int) -> str:
        return self._download_presigner.generate_presigned_url(  # type: ignore[no-any-return]
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl
        )

    def multipart_uploads(self, bucket: str, key: str) -> list[dict[str, Any]]:
        """The unfinished multipart uploads of exactly ``key``, on MinIO and RGW alike.

        The stores read ``Prefix`` differently: RGW as a prefix, MinIO as an exact key ("we do not
        support prefix based listing"). Asking with the key itself and keeping exact matches means
        the same on both; a prefix that is not a whole key would find nothing on MinIO.
        """
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key)
        return uploads_of_key(pages, key)

    def abort_stale_multipart(self, bucket: str, key: str) -> int:
        """Abort unfinished multipart uploads of ``key`` left by a crashed writer."""
        stale = self.multipart_uploads(bucket, key)
        for upload in stale:
            self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
        return len(stale)

    @_s3_retry
    def remove(self, bucket: str, keys: Sequence[str]) -> None:
        """Delete the objects, one request each; one already gone is no error (S3 answers 204).

        One ``DeleteObject`` per key rather than a ``DeleteObjects`` of many: RGW (16.2) checks a
        multi-object delete against the bucket, which the watchdog's grant (objects only) does not
        cover. Only the watchdog's S3 user may delete (``shared/s3/users.py``): it purges deleted
        uploads, a handful of keys each (the object, one result document per generation).
        """
        for key in keys:
            self.client.delete_object(Bucket=bucket, Key=key)

    def multipart_writer(self, bucket: str, key: str, part_bytes: int, content_type: str) -> MultipartWriter:
        return MultipartWriter(self.client, bucket, key, part_bytes, content_type)


class MultipartWriter:
    """A file-like sink that uploads fixed-size parts from a background thread.

    At most ``uploaders + 2`` parts are in memory (one filling, one queued, one per uploader), so
    the footprint is bounded whatever the document size, and producing and uploading overlap. Leaving
    the ``with`` block by an exception aborts the upload, so no orphan parts are left behind.
    """

    def __init__(
        self, client: Any, bucket: str, key: str, part_bytes: int, content_type: str, uploaders: int = 2
    ) -> None:
        if part_bytes < 5 * 1024 * 1024:
            raise ValueError("S3 parts must be at least 5 MiB")
        self._client = client
        self._bucket = bucket
        self._key = key
        self._part_bytes = part_bytes
        self._content_type = content_type
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._parts: list[dict[str, Any]] = []
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._upload_id: str | None = None
        self._threads: list[threading.Thread] = []
        self._uploaders = uploaders
        self._submitted = 0
        self.size = 0

    def __enter__(self) -> MultipartWriter:
        response = self._client.create_multipart_upload(
            Bucket=self._bucket, Key=self._key, ContentType=self._content_type
        )
        self._upload_id = response["UploadId"]
        for number in range(self._uploaders):
            thread = threading.Thread(target=self._upload_loop, name=f"s3-multipart-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def write(self, data: bytes) -> None:
        self._pieces.append(data)
        self._buffered += len(data)
        self.size += len(data)
        if self._buffered >= self._part_bytes:
            joined = b"".join(self._pieces)
            cut = len(joined) - len(joined) % self._part_bytes
            for offset in range(0, cut, self._part_bytes):
                self._submit(joined[offset : offset + self._part_bytes])
            rest = joined[cut:]
            self._pieces = [rest] if rest else []
            self._buffered = len(rest)

    def _submit(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._submitted += 1
        self._queue.put((self._submitted, data))

    def _upload_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            number, data = item
            if self._error is not None:
                continue
            try:
                response = self._upload_part(number, data)
                self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
            except BaseException as exc:
                self._error = exc

    @_s3_retry
    def _upload_part(self, number: int, data: bytes) -> dict[str, Any]:
        return self._client.upload_part(  # type: ignore[no-any-return]
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=data
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None and (self._buffered or self._submitted == 0):
                self._submit(b"".join(self._pieces))
                self._pieces = []
        finally:
            for _ in self._threads:
                self._queue.put(None)
            for thread in self._threads:
                thread.join()
        if exc is None and self._error is None:
            self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": sorted(self._parts, key=lambda p: p["PartNumber"])},
            )
            return
        self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
        if exc is None and self._error is not None:
            raise self._error
