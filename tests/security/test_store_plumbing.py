"""The object store's plumbing against the running stack: its notification wiring, and what a ticket
lets a client do beyond the one PUT it was given for.

Each attack here was first tried against the stack as an attacker would: an owner's S3 keys and an
anonymous caller reading the broker user's password out of the notification topic, or deleting
the topic; a ticket used to copy another owner's object and publish it; the intake's own S3 user
reading what owners uploaded through its tickets.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from genobase import stack
from shared.runtime.settings import Settings
from shared.s3.store import UPLOAD_CONTENT_TYPE, ObjectStore
from tests.conftest import Pipeline
from tests.security.helpers import client, keys_cli, make_s3_owner, s3_as, service_s3
from tests.stack import NativeProvider, StackProvider

pytestmark = pytest.mark.e2e
FASTA = b">secret\nACGTACGTTTGACCA\n"


def sns_as(settings: Settings, access: str, secret: str) -> Any:
    sns = boto3.client(
        "sns",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=settings.s3_region,
        config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
    )
    # what an attacker adds: the header that made the gateway hand out topics' passwords
    sns.meta.events.register("before-sign.sns.*", _claim_https)
    return sns


def _claim_https(request: Any, **_: Any) -> None:
    request.headers["X-Forwarded-Proto"] = "https"


def outcome(call: Callable[[], object]) -> str:
    """'ok' when the call went through, else the store's error code."""
    try:
        call()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    except ResponseParserError:  # RGW's refusal of an API it does not serve: 405, as JSON
        return "refused (unparsed answer)"
    return "ok"


@pytest.fixture(scope="module")
def s3_owner(pipeline: Pipeline, settings: Settings) -> Iterator[dict[str, str]]:
    owner = make_s3_owner(settings, f"plumb-{uuid.uuid4().hex[:8]}")
    yield owner
    keys_cli(settings, "revoke", owner["name"])


@pytest.fixture(scope="module")
def api_owners(pipeline: Pipeline, settings: Settings) -> Iterator[tuple[str, str]]:
    """Two owners' API keys: a victim and an attacker."""
    names = [f"victim-{uuid.uuid4().hex[:6]}", f"thief-{uuid.uuid4().hex[:6]}"]
    keys = []
    for name in names:
        made = keys_cli(settings, "create", name)
        assert made.returncode == 0, made.stderr
        keys.append(made.stdout.strip().splitlines()[-1])
    yield keys[0], keys[1]
    for name in names:
        keys_cli(settings, "revoke", name)


def upload_through_ticket(pipeline: Pipeline, key: str, body: bytes, name: str = "mine.fa") -> dict[str, Any]:
    ticket: dict[str, Any] = (
        client(pipeline, key).post("/uploads", json={"filename": name, "size": len(body)}).raise_for_status().json()
    )
    put = httpx.put(ticket["upload_url"], content=body, headers=ticket["upload_headers"], timeout=30)
    assert put.status_code == 200, put.text
    return ticket


def test_no_owner_reads_or_changes_the_notification_wiring(
    pipeline: Pipeline, settings: Settings, s3_owner: dict[str, str]
) -> None:
    sns = sns_as(settings, s3_owner["access"], s3_owner["secret"])
    s3 = s3_as(settings, s3_owner["access"], s3_owner["secret"])
    arn = f"arn:aws:sns:default::{settings.events_routing_key}"
    bucket = settings.uploads_bucket
    attempts = {
        "list topics": lambda: sns.list_topics(),
        "read the topic": lambda: sns.get_topic_attributes(TopicArn=arn),
        "delete the topic": lambda: sns.delete_topic(TopicArn=arn),
        "create a topic": lambda: sns.create_topic(Name=f"mine-{uuid.uuid4().hex[:6]}"),
        "read the bucket's notifications": lambda: s3.get_bucket_notification_configuration(Bucket=bucket),
        "remove the bucket's notifications": lambda: s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={}
        ),
    }
    went_through = {name: code for name, call in attempts.items() if (code := outcome(call)) == "ok"}
    assert went_through == {}
    # the wiring is whole: an upload made after the attempts is processed
    key = f"{s3_owner['name']}/after-{uuid.uuid4()}.fa"
    s3.put_object(Bucket=bucket, Key=key, Body=FASTA)
    assert pipeline.wait_for_object(bucket, key)["state"] == "done", pipeline.logs()


def test_no_caller_without_keys_reads_a_topic(pipeline: Pipeline, settings: Settings) -> None:
    for headers in ({}, {"X-Forwarded-Proto": "https"}):
        for action in ("ListTopics", "GetTopicAttributes", "GetTopic"):
            form = {"Action": action, "TopicArn": f"arn:aws:sns:default::{settings.events_routing_key}"}
            answer = httpx.post(settings.s3_endpoint + "/", data=form, headers=headers, timeout=30)
            assert answer.status_code >= 400, (action, headers, answer.text[:300])
            assert "amqp" not in answer.text.lower(), (action, headers)


def test_the_delivering_gateway_answers_no_request(
    pipeline: Pipeline, settings: Settings, stack_provider: StackProvider, s3_owner: dict[str, str]
) -> None:
    """It has the notifications API (RGW connects to AMQP only where it is on) and no S3: every
    call, a topic's included, is refused, with keys or without."""
    if not isinstance(stack_provider, NativeProvider):
        pytest.skip("MinIO has no such gateway: its AMQP target is server configuration")
    endpoint = stack_provider.notify_endpoint
    for sns in (
        boto3.client(
            "sns",
            endpoint_url=endpoint,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            region_name=settings.s3_region,
            config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
        )
        for access, secret in (
            (s3_owner["access"], s3_owner["secret"]),
            (settings.s3_access_key.get_secret_value(), settings.s3_secret_key.get_secret_value()),
        )
    ):
        sns.meta.events.register("before-sign.sns.*", _claim_https)
        assert outcome(lambda sns=sns: sns.list_topics()) != "ok"
    for headers in ({}, {"X-Forwarded-Proto": "https"}):
        answer = httpx.post(endpoint + "/", data={"Action": "ListTopics"}, headers=headers, timeout=30)
        assert answer.status_code == 405 and "amqp" not in answer.text.lower()
    assert httpx.get(f"{endpoint}/{settings.uploads_bucket}", timeout=30).status_code == 405


def test_the_stack_admin_cannot_change_the_wiring_through_the_serving_gateway(
    pipeline: Pipeline, settings: Settings
) -> None:
    """The notifications API is off on the gateway everyone reaches, for every user alike."""
    admin = sns_as(settings, settings.s3_access_key.get_secret_value(), settings.s3_secret_key.get_secret_value())
    assert outcome(lambda: admin.list_topics()) != "ok"
    assert outcome(lambda: admin.delete_topic(TopicArn=f"arn:aws:sns:default::{settings.events_routing_key}")) != "ok"


@pytest.mark.parametrize("version", ["", "?versionId=null"])  # a named version is checked as GetObjectVersion
def test_a_ticket_cannot_copy_another_owners_object_or_publish_it(
    pipeline: Pipeline, settings: Settings, api_owners: tuple[str, str], version: str
) -> None:
    victim, thief = api_owners
    mine = upload_through_ticket(pipeline, victim, FASTA)
    assert pipeline.wait_for(mine["id"])["state"] == "done"
    ticket = client(pipeline, thief).post("/uploads", json={"filename": "copy.fa", "size": 0}).raise_for_status().json()
    headers = {
        **ticket["upload_headers"],
        "x-amz-copy-source": f"{mine['bucket']}/{mine['key']}{version}",
        "x-amz-acl": "public-read",
    }
    put = httpx.put(ticket["upload_url"], content=b"", headers=headers, timeout=30)
    assert put.status_code == 403, put.text
    assert not ObjectStore(settings).exists(ticket["bucket"], ticket["key"])
    for key in (ticket["key"], mine["key"]):
        assert httpx.get(f"{settings.s3_endpoint}/{ticket['bucket']}/{key}", timeout=30).status_code == 403


@pytest.mark.parametrize(
    "grant",
    [
        {"x-amz-acl": "public-read"},
        {"x-amz-acl": "authenticated-read"},
        {"x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'},
        {"x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AuthenticatedUsers"'},
    ],
)
def test_a_grant_added_to_a_ticket_gives_nobody_a_read(
    pipeline: Pipeline, settings: Settings, api_owners: tuple[str, str], s3_owner: dict[str, str], grant: dict[str, str]
) -> None:
    _, thief = api_owners
    ticket = client(pipeline, thief).post("/uploads", json={"filename": "open.fa", "size": len(FASTA)}).json()
    put = httpx.put(ticket["upload_url"], content=FASTA, headers={**ticket["upload_headers"], **grant}, timeout=30)
    if put.status_code == 200:  # kept by the store, but never honoured (IgnorePublicAcls)
        url = f"{settings.s3_endpoint}/{ticket['bucket']}/{ticket['key']}"
        assert httpx.get(url, timeout=30).status_code == 403
        other = s3_as(settings, s3_owner["access"], s3_owner["secret"])
        assert outcome(lambda: other.get_object(Bucket=ticket["bucket"], Key=ticket["key"])) == "AccessDenied"
    else:
        assert put.status_code == 403, put.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/html"},
        {},  # the signed type left out
        {"Content-Type": UPLOAD_CONTENT_TYPE, "x-amz-server-side-encryption": "AES256"},
        {"Content-Type": UPLOAD_CONTENT_TYPE, "x-amz-storage-class": "GLACIER"},
    ],
)
def test_a_ticket_refuses_headers_that_change_what_is_stored(
    pipeline: Pipeline, settings: Settings, api_owners: tuple[str, str], headers: dict[str, str]
) -> None:
    _, thief = api_owners
    ticket = client(pipeline, thief).post("/uploads", json={"filename": "typed.fa", "size": len(FASTA)}).json()
    assert ticket["upload_headers"] == {"Content-Type": UPLOAD_CONTENT_TYPE}
    put = httpx.put(ticket["upload_url"], content=FASTA, headers=headers, timeout=30)
    assert put.status_code in (400, 403), (headers, put.status_code, put.text)
    assert not ObjectStore(settings).exists(ticket["bucket"], ticket["key"])


def test_no_service_reads_what_owners_uploaded_through_tickets(
    pipeline: Pipeline, settings: Settings, stack_env: dict[str, str], api_owners: tuple[str, str]
) -> None:
    victim, _ = api_owners
    mine = upload_through_ticket(pipeline, victim, FASTA)
    status = pipeline.wait_for(mine["id"])
    assert status["state"] == "done"
    bucket, key = mine["bucket"], mine["key"]
    # the object is the intake user's on RGW (it signed the PUT), and its ACL would let it read it
    for service in ("intake", "downloads", "assembler", "watchdog"):
        s3 = service_s3(settings, stack_env, service)
        attempts = {
            "read": lambda s3=s3: s3.get_object(Bucket=bucket, Key=key),
            "read a version": lambda s3=s3: s3.get_object(Bucket=bucket, Key=key, VersionId="null"),
            "read a version's ACL": lambda s3=s3: s3.get_object_acl(Bucket=bucket, Key=key, VersionId="null"),
            "read its tags": lambda s3=s3: s3.get_object_tagging(Bucket=bucket, Key=key),
            "delete a version": lambda s3=s3: s3.delete_object(Bucket=bucket, Key=key, VersionId="null"),
            "read its ACL": lambda s3=s3: s3.get_object_acl(Bucket=bucket, Key=key),
            "open its ACL": lambda s3=s3: s3.put_object_acl(Bucket=bucket, Key=key, ACL="public-read"),
            "tag": lambda s3=s3: s3.put_object_tagging(
                Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}
            ),
            "delete": lambda s3=s3: s3.delete_object(Bucket=bucket, Key=key),
        }
        if service == "watchdog":  # it may delete (validations, deleted uploads: test_least_privilege.py)
            del attempts["delete"]
        went_through = [name for name, call in attempts.items() if outcome(call) == "ok"]
        assert went_through == [], service
    assert ObjectStore(settings).client.get_object(Bucket=bucket, Key=key)["Body"].read() == FASTA
    # the parser reads it (its part), and the result link still works, signed by "downloads"
    assert service_s3(settings, stack_env, "parser").get_object(Bucket=bucket, Key=key)["Body"].read() == FASTA
    result_url = client(pipeline, victim).get(f"/uploads/{mine['id']}").json()["result"]["url"]
    downloads_access = stack_env[stack.service_key_settings("downloads")[0]]
    assert downloads_access in result_url
    assert httpx.get(result_url, timeout=30).status_code == 200


@pytest.mark.parametrize(
    "added",
    [
        {"x-amz-meta-origin": "elsewhere"},
        {"x-amz-tagging": "project=other"},
        {"Cache-Control": "public, max-age=31536000"},
        {"Content-Encoding": "gzip"},
        {"Content-Disposition": "attachment; filename=evil.html"},
        {"x-amz-website-redirect-location": "/elsewhere"},
    ],
)
def test_what_a_ticket_did_not_sign_fails_the_upload_unread(
    pipeline: Pipeline, settings: Settings, api_owners: tuple[str, str], added: dict[str, str]
) -> None:
    """The store keeps these unsigned headers (no bucket policy can refuse them on RGW): the parser
    refuses the object of a registered upload that carries any, before reading it."""
    _, thief = api_owners
    ticket = client(pipeline, thief).post("/uploads", json={"filename": "extra.fa", "size": len(FASTA)}).json()
    put = httpx.put(ticket["upload_url"], content=FASTA, headers={**ticket["upload_headers"], **added}, timeout=30)
    assert put.status_code == 200, put.text  # taken by the store ...
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "failed", status  # ... and refused by the pipeline
    assert status["error"]["code"] == "unsigned_headers", status
    assert status["progress"]["records_done"] == 0
