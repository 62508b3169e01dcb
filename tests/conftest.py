"""Fixtures shared by all tests. The real stack is started once per run, only when a test needs it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from genobase import stack
from shared.runtime.settings import Settings
from tests.stack import StackProvider, _as_kwargs, select_provider

FIXTURES = Path(__file__).parent / "fixtures"
STALL_AFTER_SECONDS = 20


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
        """The upload's status; rides out the intake's own seconds without Postgres (outage tests)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                response = self.http.get(f"/uploads/{upload_id}")
                if response.status_code < 500:
                    response.raise_for_status()
                    status: dict[str, Any] = response.json()
                    return status
                problem = f"HTTP {response.status_code}: {response.text}"
            except httpx.TransportError as exc:
                problem = repr(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"status of {upload_id} unavailable for 60 s: {problem}")
            time.sleep(0.5)

    def wait_for(self, upload_id: str, timeout: float = 240) -> dict[str, Any]:
        """Poll until done or failed. Generous: RGW persistent topics sometimes hold an event ~90 s."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(upload_id)
            if status["state"] in ("done", "failed"):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"upload {upload_id} still {status['state']} after {timeout} s: {status}")
            time.sleep(0.25)

    def wait_for_object(self, bucket: str, key: str, timeout: float = 240) -> dict[str, Any]:
        """The upload an object written straight to the bucket made, once done or failed."""
        deadline = time.monotonic() + timeout  # RGW persistent topics occasionally hold an event a minute
        while True:
            response = self.http.get("/uploads", params={"bucket": bucket, "key": key})
            if response.status_code == 200:
                return self.wait_for(response.json()["id"], timeout=max(deadline - time.monotonic(), 1))
            assert response.status_code == 404, response.text
            assert time.monotonic() < deadline, f"the event of s3://{bucket}/{key} never created an upload"
            time.sleep(0.25)

    def start_consuming(self, name: str, extra_env: dict[str, str] | None = None, timeout: float = 60) -> int:
        """Start process ``name`` (``parser-2``, or a stage with other settings) and wait until it
        consumes its queue; returns its pid."""
        log = self.processes.log_file(name)
        since = log.stat().st_size if log.exists() else 0
        pid = self.processes.start(name, extra_env)
        deadline = time.monotonic() + timeout
        while not (log.exists() and b'"event": "consuming"' in log.read_bytes()[since:]):
            assert time.monotonic() < deadline, f"{name} never started consuming\n{self.logs()}"
            time.sleep(0.2)
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
        deadline = time.monotonic() + 60
        while True:
            try:
                if pipe.http.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("intake never became healthy\n" + pipe.logs())
            time.sleep(0.25)
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
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, f"{service} did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
