"""Helpers of the security tests, shared with the fault tests: clients with a given key, owners'
and services' S3 users, the object store's broker user."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pika

from genobase import stack
from shared.domain.stages import STAGE_NAMES
from shared.rabbitmq.broker import take_dead_letters
from shared.runtime.settings import Settings
from tests.helpers import generated_fasta, upload_via_intake

if TYPE_CHECKING:
    from tests.conftest import Pipeline
import subprocess
import sys

import boto3
import httpx
from botocore.config import Config


class RgwPublisher:
    """A broker user with exactly the object store's permissions, publishing with confirms."""

    def __init__(self, settings: Settings, user: str, password: str) -> None:
        url = urlsplit(settings.amqp_url.get_secret_value())
        parameters = pika.ConnectionParameters(
            host=url.hostname or "127.0.0.1",
            port=url.port or 5672,
            virtual_host=unquote(url.path.lstrip("/")),
            credentials=pika.PlainCredentials(user, password),
            connection_attempts=1,
            heartbeat=0,  # idle for minutes between a test's publishing and the fixture's end
        )
        self.settings = settings
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def publish(self, body: bytes, headers: dict[str, Any] | None = None) -> None:
        self.channel.basic_publish(
            self.settings.events_exchange,
            self.settings.events_routing_key,
            body,
            pika.BasicProperties(headers=headers, delivery_mode=pika.DeliveryMode.Persistent),
            mandatory=True,
        )

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def clear_dead_letters(settings: Settings) -> list[Any]:
    """Take every dead letter off (so the other tests find the queues empty); returns them."""
    taken: list[Any] = []
    for stage in STAGE_NAMES:
        take_dead_letters(settings, stage, taken.append)
    return taken


def genuine_upload_completes(pipeline: Pipeline, name: str, timeout: float = 90) -> None:
    data = generated_fasta(5, seed=len(name))
    ticket = upload_via_intake(pipeline, name, data)
    status = pipeline.wait_for(ticket["id"], timeout=timeout)
    assert status["state"] == "done", (status, pipeline.logs())


def client(pipeline: Pipeline, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=pipeline.settings.status_base_url, timeout=30, headers=headers)


def s3_as(settings: Settings, access: str, secret: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=settings.s3_region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def cli_env(settings: Settings) -> dict[str, str]:
    """The CLI as an operator runs it: the admin's settings, no stack file."""
    return {
        "GENOBASE_STACK_FILE": "/nonexistent/stack.env",
        "GENOBASE_PG_DSN": settings.pg_dsn.get_secret_value(),
        "GENOBASE_S3_ENDPOINT": settings.s3_endpoint,
        "GENOBASE_S3_KIND": settings.s3_kind,
        "GENOBASE_S3_ACCESS_KEY": settings.s3_access_key.get_secret_value(),
        "GENOBASE_S3_SECRET_KEY": settings.s3_secret_key.get_secret_value(),
        "GENOBASE_UPLOADS_BUCKET": settings.uploads_bucket,
        "GENOBASE_RESULTS_BUCKET": settings.results_bucket,
        "PATH": "/usr/bin:/bin",
    }


def keys_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genobase.cli", "keys", *args],
        env=cli_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_s3_owner(settings: Settings, name: str) -> dict[str, str]:
    made = keys_cli(settings, "create", name, "--s3")
    assert made.returncode == 0, made.stderr
    lines = made.stdout.strip().splitlines()
    fields = {line[:15].strip(): line[16:].strip() for line in lines[:-1] if line.startswith("S3 ")}
    return {"name": name, "key": lines[-1], "access": fields["S3 access key"], "secret": fields["S3 secret key"]}


def service_s3(settings: Settings, stack_env: dict[str, str], service: str) -> Any:
    access, secret = stack.service_key_settings(service)
    return s3_as(settings, stack_env[access], stack_env[secret])
