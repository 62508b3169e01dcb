"""Fixtures shared by all tests. The real stack is started once per run, only when a test needs it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from genobase import stack
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.security.helpers import RgwPublisher
from tests.stack import NativeProvider, StackProvider, _as_kwargs, select_provider

STALL_AFTER_SECONDS = 20
MIB = 1024 * 1024


@pytest.fixture(scope="session")
def stack_provider() -> Iterator[StackProvider]:
    provider: StackProvider = select_provider()
    print(f"\nstack provider: {provider.name}", file=sys.stderr)
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="session")
def stack_env(stack_provider: StackProvider) -> dict[str, str]:
    return stack_provider.start()


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    return Settings(**_as_kwargs(stack_env))


class ServerNotAnswering(Exception):
    """A 5xx from a service that is restarting or has lost its database: "not yet" while polling."""


class Pipeline:
    """The pipeline services (intake, parser, persister, assembler, watchdog) as processes on this run's stack."""

    def __init__(self, settings: Settings, processes: stack.ServiceProcesses, api_key: str) -> None:
        self.settings = settings
        self.processes = processes
        self.api_key = api_key  # an admin key of this run
        self.http = httpx.Client(
            base_url=settings.status_base_url, timeout=30, headers={"Authorization": f"Bearer {api_key}"}
        )

    def pids(self) -> dict[str, int | None]:
        """Each service's pid: unchanged across a test means no service crashed or was restarted."""
        return {name: self.processes.pid(name) for name in stack.SERVICES}

    def status(self, upload_id: str) -> dict[str, Any]:
        """The upload's status; rides out the intake's own seconds without Postgres (outage tests):
        a 5xx or a transport error is "not yet" for 60 s, any other error status fails at once."""

        def answered() -> dict[str, Any]:
            response = self.http.get(f"/uploads/{upload_id}")
            if response.status_code >= 500:
                raise ServerNotAnswering(f"HTTP {response.status_code}: {response.text}")
            response.raise_for_status()
            status: dict[str, Any] = response.json()
            return status

        return poll_until(
            answered,
            timeout=60,
            interval=0.5,
            what=f"the status of upload {upload_id}",
            retry_on=(ServerNotAnswering, httpx.TransportError),
        )

    def wait_for(self, upload_id: str, timeout: float = 240) -> dict[str, Any]:
        """Poll until done or failed. Generous: RGW persistent topics sometimes hold an event ~90 s."""
        seen: list[dict[str, Any]] = []

        def finished() -> dict[str, Any] | None:
            seen[:] = [self.status(upload_id)]
            return seen[-1] if seen[-1]["state"] in ("done", "failed") else None

        return poll_until(
            finished,
            timeout=timeout,
            what=f"upload {upload_id} done or failed",
            describe=lambda: f"status: {seen[-1:]}",
        )

    def wait_for_object(self, bucket: str, key: str, timeout: float = 240) -> dict[str, Any]:
        """The upload an object written straight to the bucket made, once done or failed."""
        started = time.monotonic()  # RGW persistent topics occasionally hold an event a minute

        def registered() -> str | None:
            response = self.http.get("/uploads/lookup", params={"bucket": bucket, "key": key})
            if response.status_code == 404:
                return None
            assert response.status_code == 200, response.text
            upload_id: str = response.json()["id"]
            return upload_id

        upload_id = poll_until(registered, timeout=timeout, what=f"an upload made by the event of s3://{bucket}/{key}")
        return self.wait_for(upload_id, timeout=max(timeout - (time.monotonic() - started), 1))

    def start_consuming(self, name: str, extra_env: dict[str, str] | None = None, timeout: float = 60) -> int:
        """Start process ``name`` (``parser-2``, or a stage with other settings) and wait until it
        consumes its queue; returns its pid."""
        log = self.processes.log_file(name)
        since = log.stat().st_size if log.exists() else 0
        pid = self.processes.start(name, extra_env)
        poll_until(
            lambda: log.exists() and b'"event": "consuming"' in log.read_bytes()[since:],
            timeout=timeout,
            interval=0.2,
            what=f"{name} consuming its queue",
            describe=self.logs,
        )
        return pid

    def logs(self) -> str:
        out = []
        for name in stack.SERVICES:
            path = self.processes.log_file(name)
            if path.exists():
                out.append(f"--- {name} ---\n" + "\n".join(path.read_text().splitlines()[-40:]))
        return "\n".join(out)


@pytest.fixture(scope="session")
def pipeline(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    run_dir = tmp_path_factory.mktemp("services")
    port = stack.free_port()
    env = {
        **stack_env,
        "GENOBASE_INTAKE_PORT": str(port),
        "GENOBASE_REFGET_PORT": str(stack.free_port()),
        **{stack.metrics_port_setting(name): str(stack.free_port()) for name in stack.SERVICES},
        "GENOBASE_LOG_LEVEL": "DEBUG",
        # Short enough for the outage and stall tests to see retries and pick-ups within seconds.
        "GENOBASE_S3_READ_TIMEOUT_SECONDS": "10",
        "GENOBASE_STALL_AFTER_SECONDS": str(STALL_AFTER_SECONDS),
        "GENOBASE_WATCHDOG_INTERVAL_SECONDS": "1",
        # An unused ticket is expired one second after its URL ends (tests/security).
        "GENOBASE_TICKET_GRACE_SECONDS": "1",
        # Every test's upload is one PUT (up to S3's 5 GiB); tests/e2e/test_multipart.py runs an
        # intake of its own with a low threshold.
        "GENOBASE_MULTIPART_THRESHOLD_BYTES": str(5 * 1024**3),
        # below S3's own 5 TiB, so that the intake's limit (413) is what refuses a larger size
        "GENOBASE_MAX_UPLOAD_BYTES": str(1024**4),
    }
    settings = Settings(**_as_kwargs(env))
    processes = stack.ServiceProcesses(run_dir, env)  # each service gets its own settings file
    processes.start_all()
    pipe = Pipeline(settings, processes, stack.first_admin_key(settings))
    try:
        poll_until(
            lambda: pipe.http.get("/healthz").status_code == 200,
            timeout=60,
            what="the intake healthy",
            retry_on=(httpx.HTTPError,),
            describe=pipe.logs,
        )
        yield pipe
    finally:
        processes.stop_all()
        pipe.http.close()


@contextlib.contextmanager
def another_process(pipeline: Pipeline, service: str, port_setting: str, overrides: dict[str, str]) -> Iterator[str]:
    """A second process of an HTTP ``service`` on this run's stack: its settings file, its own
    ports and ``overrides`` (a threshold, a flag); yields its URL once ``/healthz`` answers."""
    port = stack.free_port()
    env = {
        **os.environ,
        "GENOBASE_STACK_FILE": str(pipeline.processes.run_dir / f"{service}.env"),
        port_setting: str(port),
        "GENOBASE_METRICS_PORT": str(stack.free_port()),  # the first process holds the configured one
        **overrides,
    }
    process = subprocess.Popen([sys.executable, "-m", f"services.{service}.main"], env=env, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert process.poll() is None, f"{service} exited with {process.returncode}"
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200

        poll_until(healthy, timeout=30, interval=0.2, what=f"a second {service} healthy", retry_on=(httpx.HTTPError,))
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def rgw_publisher(stack_provider: StackProvider, settings: Settings) -> Iterator[RgwPublisher]:
    """The store's broker user as ``genobase up`` makes it (``stack.rgw_publisher_permissions``)."""
    if not isinstance(stack_provider, NativeProvider):
        pytest.skip("the object store's own broker user is made by the native stack")
    user, password = f"forger-{uuid.uuid4().hex[:8]}", stack.new_secret()
    vhost = unquote(urlsplit(settings.amqp_url.get_secret_value()).path.lstrip("/"))
    stack.ensure_rabbitmq_user(user, password, vhost, *stack.rgw_publisher_permissions(settings.events_exchange))
    publisher = RgwPublisher(settings, user, password)
    try:
        yield publisher
    finally:
        publisher.close()
        stack.delete_rabbitmq_user(user)


@pytest.fixture(scope="module")
def public_refget_url(pipeline: Pipeline) -> Iterator[str]:
    """A refget process of this run that anyone may read (``GENOBASE_REFGET_PUBLIC=true``)."""
    with another_process(pipeline, "refget", "GENOBASE_REFGET_PORT", {"GENOBASE_REFGET_PUBLIC": "true"}) as url:
        yield url


@pytest.fixture(scope="module")
def refget_url(pipeline: Pipeline) -> str:
    """The stack's own refget (private: reads need a key), once it answers."""
    url = f"http://127.0.0.1:{pipeline.settings.refget_port}"
    poll_until(
        lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 200,
        timeout=60,
        what="refget answering",
        retry_on=(httpx.HTTPError,),
        describe=pipeline.logs,
    )
    return url


@pytest.fixture(scope="module")
def multipart_intake(pipeline: Pipeline) -> Iterator[str]:
    """A second intake of this run with a low multipart threshold (8 MiB, parts of 5 MiB: RGW's
    minimum), beside the session's, on the same database, bucket and pipeline."""
    low = {"GENOBASE_MULTIPART_THRESHOLD_BYTES": str(8 * MIB), "GENOBASE_MULTIPART_MIN_PART_BYTES": str(5 * MIB)}
    with another_process(pipeline, "intake", "GENOBASE_INTAKE_PORT", low) as url:
        yield url
