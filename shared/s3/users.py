"""Who may do what in the buckets: each service's and each owner's S3 user and its grants.

The grants are defined once, as data (``service_grants``, ``owner_grants``), and applied the way
each object store takes them:

* Ceph RGW: users through the admin ops API (``rgwadmin``, signed by the stack's admin user, so no
  secret is on a command line), each unable to create buckets; the grants become statements of
  the buckets' policies, with the user as principal. RGW also lets an object's writer read it
  through the object's ACL, so an owner's grants carry an explicit deny of reads.
* MinIO: users and policies through its admin API (``minio.MinioAdmin``); the grants become the
  user's own policy.

Only the stack's set-up (``genobase up``, compose's ``minio-notify``) and ``genobase keys`` use
this module, with the admin credentials; no service does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from botocore.exceptions import ClientError

from shared.runtime.settings import Settings

# The users the services run as, and what each does: the parser reads uploads; the assembler writes
# results (multipart, and aborts its own unfinished attempts); the intake signs the clients' uploads
# and checks that the uploads bucket answers; "downloads" is the intake's second user, which signs
# the links to results and nothing else; the watchdog aborts the multipart uploads of expired
# tickets, removes the objects of validated uploads once they are parsed, and purges deleted
# uploads: it is the one user that may delete objects, in both buckets (an upload's object, its
# result documents and their unfinished multipart uploads). Its reconciler lists the uploads bucket
# to find objects whose notification never came (services/watchdog/reconcile.py), and reads none.
# The intake, which answers
# ``DELETE /uploads/{id}``, only records the delete: its users sign what clients send to the
# store, and a signer's rights are what a client's request may reach, so they stay without any
# delete right. The parser, which reads untrusted input, keeps no right to delete anything either.
# The persister uses no S3.
#
# The intake's two users keep a ticket from reading anything: a presigned PUT carries its signer's
# rights, and a client may add headers the signature does not cover. With ``x-amz-copy-source`` a
# ticket would copy any object its signer can read into the ticket's key, so the signer of tickets
# can read nothing at all, and the signer of result links can write nothing.
S3_SERVICES = ("intake", "downloads", "parser", "assembler", "watchdog")

# What no user may do to an object beyond what its grants allow, whoever wrote the object. On RGW
# an object's writer owns it and its ACL lets the writer read it (the intake's user writes every
# object that arrives through a ticket), and a writer may add grants for others (``x-amz-grant-*``):
# an explicit Deny in the bucket's policy outweighs every ACL.
# A request that names a version (``versionId=null`` too, on a bucket that never had versioning)
# is checked against the ``*Version*`` action instead: each is denied alongside its plain twin.
OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectAcl",
    "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:GetObjectTorrent",
    "s3:GetObjectVersionTorrent",
)


@dataclass(frozen=True)
class Grant:
    """One statement: ``effect`` on ``actions`` over ``resources`` (bucket names, or ``bucket/prefix*``)."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]
    effect: Literal["Allow", "Deny"] = "Allow"

    def statement(self, sid: str, principal: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Sid": sid,
            "Effect": self.effect,
            "Action": list(self.actions),
            "Resource": [f"arn:aws:s3:::{r}" for r in self.resources],
        }
        if principal is not None:
            body["Principal"] = {"AWS": [principal]}
        return body


_WRITE_OBJECTS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")


def _with_denials(allowed: tuple[Grant, ...], buckets: tuple[str, ...]) -> tuple[Grant, ...]:
    """``allowed``, then a Deny of every object action that ``allowed`` does not give, per bucket.

    A bucket where the user may read some prefix only (none today) keeps its reads: the denial is
    per bucket, so it never takes back what ``allowed`` gives.
    """
    denials = []
    for bucket in buckets:
        given = {a for g in allowed if g.effect == "Allow" and bucket in buckets_of([g]) for a in g.actions}
        refused = tuple(a for a in OBJECT_ACTIONS if a not in given)
        if refused:
            denials.append(Grant(refused, (f"{bucket}/*",), effect="Deny"))
    return (*allowed, *denials)


def service_grants(uploads_bucket: str, results_bucket: str) -> dict[str, tuple[Grant, ...]]:
    allowed: dict[str, tuple[Grant, ...]] = {
        "parser": (Grant(("s3:GetObject",), (f"{uploads_bucket}/*",)),),
        "assembler": (
            Grant(_WRITE_OBJECTS, (f"{results_bucket}/*",)),
            Grant(("s3:ListBucketMultipartUploads",), (results_bucket,)),
        ),
        "watchdog": (
            Grant(("s3:AbortMultipartUpload", "s3:DeleteObject"), (f"{uploads_bucket}/*",)),
            Grant(("s3:AbortMultipartUpload", "s3:DeleteObject"), (f"{results_bucket}/*",)),
            Grant(("s3:ListBucketMultipartUploads",), (results_bucket,)),
            # The reconciler lists the uploads bucket (etag, size, time): it reads no object.
            Grant(("s3:ListBucket",), (uploads_bucket,)),
        ),
        "intake": (
            Grant(_WRITE_OBJECTS, (f"{uploads_bucket}/*",)),
            Grant(("s3:ListBucket",), (uploads_bucket,)),
        ),
        "downloads": (Grant(("s3:GetObject",), (f"{results_bucket}/*",)),),
    }
    buckets = (uploads_bucket, results_bucket)
    return {service: _with_denials(grants, buckets) for service, grants in allowed.items()}


def owner_grants(owner: str, uploads_bucket: str, results_bucket: str) -> tuple[Grant, ...]:
    """Write under ``<owner>/`` in the uploads bucket, and nothing else: not even read back."""
    return _with_denials((Grant(_WRITE_OBJECTS, (f"{uploads_bucket}/{owner}/*",)),), (uploads_bucket, results_bucket))


def service_user(service: str) -> str:
    return f"genobase-{service}"


def owner_user(owner: str) -> str:
    return f"owner-{owner}"


def buckets_of(grants: Iterable[Grant]) -> set[str]:
    return {resource.split("/", 1)[0] for grant in grants for resource in grant.resources}


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str


class S3Users(Protocol):
    """An object store's users and their grants (``RgwUsers``, ``MinioUsers``)."""

    def ensure_user(self, user: str, secret: str | None = None) -> S3Credentials:
        """The user, made if missing (RGW generates the keys; MinIO takes ``secret``)."""

    def grant(self, user: str, grants: tuple[Grant, ...]) -> None:
        """Replace whatever ``user`` was granted with ``grants``."""

    def remove_user(self, user: str) -> bool:
        """Delete the user and its grants; False if there was none."""

    def keep_admin_access(self, buckets: tuple[str, ...]) -> None:
        """Let the admin user (the buckets' owner) still read and delete every object in them."""


def _sid_prefix(user: str) -> str:
    """The start of every statement id of ``user``'s grants: its name in hex, ended by ``x``.

    Statement ids are alphanumeric; hex keeps names apart ("owner-a2" and "owner-a-2" would both
    read "ownera2" with the other characters dropped) and ``x`` ends it, so no prefix is another's.
    """
    return f"G{user.encode().hex()}x"


def _sid(user: str, index: int) -> str:
    return f"{_sid_prefix(user)}{index}"


class RgwUsers:
    """Users through RGW's admin ops API; grants as statements of each bucket's policy."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1") -> None:
        from urllib.parse import urlsplit

        import boto3
        from botocore.config import Config
        from rgwadmin.rgw import RGWAdmin

        url = urlsplit(endpoint)
        self._access_key = access_key
        admin: Any = RGWAdmin  # untyped library
        self._admin: Any = admin(
            access_key=access_key, secret_key=secret_key, server=url.netloc, secure=url.scheme == "https"
        )
        self._s3: Any = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def ensure_user(self, user: str, secret: str | None = None) -> S3Credentials:
        from rgwadmin.exceptions import NoSuchUser

        try:
            info = self._admin.get_user(uid=user)
        except NoSuchUser:
            info = self._admin.create_user(uid=user, display_name=user, generate_key=True, max_buckets=-1)
        keys = next(k for k in info["keys"] if k["user"] == user)
        return S3Credentials(keys["access_key"], keys["secret_key"])

    def grant(self, user: str, grants: tuple[Grant, ...]) -> None:
        principal = f"arn:aws:iam:::user/{user}"
        prefix = _sid_prefix(user)
        for bucket in self._buckets_with(user) | buckets_of(grants):
            statements = [s for s in self._policy(bucket) if not str(s.get("Sid", "")).startswith(prefix)]
            statements += [
                g.statement(_sid(user, i), principal) for i, g in enumerate(grants) if bucket in buckets_of([g])
            ]
            self._put_policy(bucket, statements)

    def remove_user(self, user: str) -> bool:
        from rgwadmin.exceptions import NoSuchUser

        self.grant(user, ())
        try:
            self._admin.remove_user(uid=user, purge_data=False)
        except NoSuchUser:
            return False
        return True

    def keep_admin_access(self, buckets: tuple[str, ...]) -> None:
        """On RGW an object belongs to its writer: without this, the buckets' owner could not read
        an object a service or an owner wrote, nor see or abort another user's multipart upload
        (operators, ``dead-letters --replay``, the tests)."""
        admin = self._admin.get_user(access_key=self._access_key)["user_id"]
        actions = ("s3:GetObject", "s3:DeleteObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload")
        self.grant(admin, (Grant(actions, tuple(f"{b}/*" for b in buckets)),))

    def _buckets_with(self, user: str) -> set[str]:
        """Buckets whose policy names ``user`` (so that a grant taken away leaves no statement)."""
        response = self._s3.list_buckets()
        principal = f"arn:aws:iam:::user/{user}"
        return {b["Name"] for b in response["Buckets"] if principal in json.dumps(self._policy(b["Name"]))}

    def _policy(self, bucket: str) -> list[dict[str, Any]]:
        try:
            document = self._s3.get_bucket_policy(Bucket=bucket)["Policy"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchBucketPolicy", "NoSuchBucket"):
                return []
            raise
        statements: list[dict[str, Any]] = json.loads(document).get("Statement", [])
        return statements

    def _put_policy(self, bucket: str, statements: list[dict[str, Any]]) -> None:
        if statements:
            policy = {"Version": "2012-10-17", "Statement": statements}
            self._s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        else:
            self._s3.delete_bucket_policy(Bucket=bucket)


class MinioUsers:
    """Users and their own policies through MinIO's admin API (compose's object store)."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str) -> None:
        from urllib.parse import urlsplit

        from minio.credentials.providers import StaticProvider
        from minio.minioadmin import MinioAdmin

        url = urlsplit(endpoint)
        self._admin = MinioAdmin(
            endpoint=url.netloc, credentials=StaticProvider(access_key, secret_key), secure=url.scheme == "https"
        )

    def ensure_user(self, user: str, secret: str | None = None) -> S3Credentials:
        if secret is None:
            import secrets

            secret = secrets.token_hex(20)
        self._admin.user_add(user, secret)  # adds, or sets the secret of an existing user
        return S3Credentials(user, secret)

    def grant(self, user: str, grants: tuple[Grant, ...]) -> None:
        policy = {"Version": "2012-10-17", "Statement": [g.statement(_sid(user, i)) for i, g in enumerate(grants)]}
        self._admin.policy_add(user, policy=policy)
        self._admin.policy_set(user, user=user)

    def remove_user(self, user: str) -> bool:
        from minio.error import MinioAdminException

        try:
            self._admin.user_remove(user)
        except MinioAdminException:
            return False
        with contextlib.suppress(MinioAdminException):  # a user made without a grant has no policy
            self._admin.policy_remove(user)
        return True

    def keep_admin_access(self, buckets: tuple[str, ...]) -> None:
        """MinIO's root user can do everything already."""


def s3_users(settings: Settings) -> S3Users:
    """The admin of the configured store, acting with the settings' (admin) credentials."""
    access, secret = settings.s3_access_key.get_secret_value(), settings.s3_secret_key.get_secret_value()
    if settings.s3_kind == "minio":
        return MinioUsers(settings.s3_endpoint, access, secret)
    return RgwUsers(settings.s3_endpoint, access, secret, settings.s3_region)


def provision_services(settings: Settings, secrets: dict[str, str] | None = None) -> dict[str, S3Credentials]:
    """Each S3-using service's user with its grants; returns their credentials by service.

    ``secrets`` (MinIO: chosen by the caller, e.g. compose's .env) by service name.
    """
    users = s3_users(settings)
    users.keep_admin_access((settings.uploads_bucket, settings.results_bucket))
    grants = service_grants(settings.uploads_bucket, settings.results_bucket)
    made = {}
    for service in S3_SERVICES:
        made[service] = users.ensure_user(service_user(service), (secrets or {}).get(service))
        users.grant(service_user(service), grants[service])
    return made
