"""Two ways to provide the real stack for integration and end-to-end tests, one set of tests.

* ``containers``: testcontainers starts MinIO, RabbitMQ and Postgres on one Docker network, with
  MinIO's AMQP target configured by environment to reach RabbitMQ by its alias.
* ``native``: the project's own scripts (the ones ``genobase up`` runs) bring up PostgreSQL and
  RabbitMQ where absent and a throwaway Ceph RGW cluster for this run.

``GENOBASE_TEST_STACK=native|containers`` forces one; by default Docker is used when an engine
answers. Either way the run gets its own database, RabbitMQ vhost, buckets and topic, and removes
them afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql

from genobase import compose, stack
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings

MINIO_IMAGE = os.environ.get("GENOBASE_MINIO_IMAGE", compose.DEFAULT_MINIO_IMAGE)
RABBITMQ_IMAGE = "rabbitmq:3.13-management"
POSTGRES_IMAGE = "postgres:16-alpine"


@dataclass
class RunResources:
    """Names owned by one test run."""

    token: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def database(self) -> str:
        return f"genobase_test_{self.token}"

    @property
    def vhost(self) -> str:
        return f"genobase-test-{self.token}"

    @property
    def uploads_bucket(self) -> str:
        return f"gbt-{self.token}-uploads"

    @property
    def results_bucket(self) -> str:
        return f"gbt-{self.token}-results"

    @property
    def amqp_user(self) -> str:
        return f"genobase-test-{self.token}"

    @property
    def rgw_amqp_user(self) -> str:
        return f"genobase-test-{self.token}-rgw"

    @property
    def pg_runtime_role(self) -> str:
        return f"genobase_rt_{self.token}"

    @property
    def pg_refget_role(self) -> str:
        return f"genobase_rf_{self.token}"

    @property
    def pg_persister_role(self) -> str:
        return f"genobase_ps_{self.token}"

    @property
    def persister_amqp_user(self) -> str:
        return f"genobase-test-{self.token}-persister"

    @property
    def intake_amqp_user(self) -> str:
        return f"genobase-test-{self.token}-intake"

    @property
    def topic(self) -> str:
        return f"genobase-test-{self.token}"


class StackProvider(Protocol):
    name: str

    def start(self) -> dict[str, str]:
        """Bring the stack up; return the GENOBASE_* settings of this run."""

    def stop(self) -> None: ...

    # Faults the tests inject into the infrastructure (tests/faults/test_outages.py).

    def stop_broker(self) -> None:
        """Stop RabbitMQ's application: every connection drops, nothing is accepted until started."""

    def start_broker(self) -> None: ...

    def restart_database(self) -> str:
        """Restart Postgres (or drop every session where a real restart is impossible); says which."""

    def freeze_object_store(self) -> None:
        """Make the S3 endpoint stop answering: connections hang, nothing is served, nothing fails fast."""

    def thaw_object_store(self) -> None: ...


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def select_provider() -> StackProvider:
    choice = os.environ.get("GENOBASE_TEST_STACK", "auto")
    if choice == "containers" or (choice == "auto" and docker_available()):
        return ContainersProvider()
    if choice not in ("auto", "native"):
        raise ValueError(f"GENOBASE_TEST_STACK must be native, containers or auto, not {choice!r}")
    return NativeProvider()


# A linguistic collation for the run's database where the server has ICU, like a database made with
# en_US.UTF-8 (initdb's default on many hosts): nothing may depend on the database sorting text as bytes.
TEST_DATABASE_ICU_LOCALE = "en-US"


def create_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        icu = conn.execute(
            "SELECT current_setting('server_version_num')::int >= 150000 "
            "AND EXISTS (SELECT 1 FROM pg_collation WHERE collprovider = 'i')"
        ).fetchone()
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if icu and icu[0]:
            create += sql.SQL(" TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE {}").format(
                sql.Literal(TEST_DATABASE_ICU_LOCALE)
            )
        conn.execute(create)


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _create_role(admin_dsn: str, name: str, password: str) -> None:
    """The services' login role of one run: no attributes; migrations grant it the rows."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))


def _drop_role(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _with_user(dsn: str, user: str, password: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc + (f":{parts.port}" if parts.port else "")))


def with_database(dsn: str, name: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def warm_up_notifications(settings: Settings) -> None:
    """Wait for one event to travel S3 -> RabbitMQ, then drop it.

    A new persistent RGW topic delivers its first event only after several seconds (measured
    ~9-12 s); paying that once here keeps the tests' own timings honest.
    """
    from shared.rabbitmq.broker import connect
    from shared.s3.store import ObjectStore

    store = ObjectStore(settings)
    connection = connect(settings)
    try:
        channel = connection.channel()
        store.client.put_object(Bucket=settings.uploads_bucket, Key="_warmup/probe", Body=b"probe")

        def probe_arrived() -> bool:
            method, _props, body = channel.basic_get(settings.queue("parse"), auto_ack=True)
            return method is not None and b"_warmup/probe" in body

        poll_until(probe_arrived, timeout=90, interval=0.2, what="a bucket notification reaching RabbitMQ")
        store.client.delete_object(Bucket=settings.uploads_bucket, Key="_warmup/probe")
    finally:
        connection.close()


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def _local_cluster(dsn: str) -> tuple[str, str] | None:
    """The Debian PostgreSQL cluster (version, name) serving ``dsn`` on this machine, if any."""
    port = urllib.parse.urlsplit(dsn).port or 5432
    if shutil.which("pg_lsclusters") is None:
        return None
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == str(port) and fields[3] == "online":
            return fields[0], fields[1]
    return None


def _terminate_sessions(admin_dsn: str, database: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )


def _wait_for_database(admin_dsn: str, timeout: float = 60) -> None:
    def answers() -> bool:
        with psycopg.connect(admin_dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    poll_until(
        answers, timeout=timeout, interval=0.2, what="PostgreSQL answering", retry_on=(psycopg.OperationalError,)
    )


class NativeProvider:
    name = "native"

    def __init__(self) -> None:
        self.run = RunResources()
        self._dir = Path(tempfile.mkdtemp(prefix=f"genobase-test-{self.run.token}-"))
        self._ceph: stack.CephCluster | None = None
        self._admin_dsn = ""
        self._runtime_password = stack.new_secret()

    def start(self) -> dict[str, str]:
        stack.bootstrap()
        run = self.run
        self._admin_dsn = os.environ.get("GENOBASE_TEST_PG_ADMIN_DSN", "")
        if not self._admin_dsn:
            password = stack.new_secret()
            # creates each run's database and its runtime role
            stack.ensure_pg_role("genobase_test", password, attributes="CREATEDB CREATEROLE")
            # the fault tests watch and end the services' sessions, each service's role its own
            stack.psql_as_postgres("GRANT pg_read_all_stats, pg_signal_backend TO genobase_test")
            self._admin_dsn = f"postgresql://genobase_test:{password}@127.0.0.1:5432/postgres"
        create_database(self._admin_dsn, run.database)
        _create_role(self._admin_dsn, run.pg_runtime_role, self._runtime_password)
        own_roles = {role: stack.new_secret() for role in (run.pg_refget_role, run.pg_persister_role)}
        for role, password in own_roles.items():
            _create_role(self._admin_dsn, role, password)
        # the run's own vhost and users, as `genobase up` makes them: guest gets nothing here
        amqp_password, rgw_password = stack.new_secret(), stack.new_secret()
        stack.ensure_rabbitmq_user(run.amqp_user, amqp_password, run.vhost)
        stack.ensure_rabbitmq_user(
            run.rgw_amqp_user, rgw_password, run.vhost, *stack.rgw_publisher_permissions(Settings().events_exchange)
        )
        persister_password = stack.new_secret()
        stack.ensure_rabbitmq_user(
            run.persister_amqp_user, persister_password, run.vhost, *stack.persister_permissions(Settings())
        )
        intake_password = stack.new_secret()
        stack.ensure_rabbitmq_user(
            run.intake_amqp_user, intake_password, run.vhost, *stack.intake_permissions(Settings())
        )
        self._ceph = stack.CephCluster(
            self._dir / "ceph",
            rgw_port=stack.free_port(),
            notify_port=stack.free_port(),
            wire_port=stack.free_port(),
            mon_port=stack.free_port(),
            mon_v1_port=stack.free_port(),
            store="memstore",
            memstore_bytes=8 * 1024**3,  # room for the 2 GiB one-line file of the bad-input tests
        )
        access, secret = self._ceph.start()
        env = {
            "GENOBASE_PG_OWNER_DSN": with_database(self._admin_dsn, run.database),
            "GENOBASE_PG_DSN": with_database(
                _with_user(self._admin_dsn, run.pg_runtime_role, self._runtime_password), run.database
            ),
            "GENOBASE_AMQP_URL": stack.amqp_url(run.amqp_user, amqp_password, run.vhost),
            # refget's and the persister's own Postgres roles and the persister's broker user
            **{
                name: with_database(_with_user(self._admin_dsn, role, own_roles[role]), run.database)
                for name, role in (
                    ("GENOBASE_REFGET_PG_DSN", run.pg_refget_role),
                    ("GENOBASE_PERSISTER_PG_DSN", run.pg_persister_role),
                )
            },
            "GENOBASE_PERSISTER_AMQP_URL": stack.amqp_url(run.persister_amqp_user, persister_password, run.vhost),
            "GENOBASE_INTAKE_AMQP_URL": stack.amqp_url(run.intake_amqp_user, intake_password, run.vhost),
            "GENOBASE_EVENTS_ROUTING_KEY": run.topic,
            "GENOBASE_S3_ENDPOINT": self._ceph.endpoint,
            "GENOBASE_S3_ACCESS_KEY": access,
            "GENOBASE_S3_SECRET_KEY": secret,
            "GENOBASE_UPLOADS_BUCKET": run.uploads_bucket,
            "GENOBASE_RESULTS_BUCKET": run.results_bucket,
        }
        settings = Settings(**_as_kwargs(env))
        env |= stack.prepare_pipeline(
            settings, rgw_push_endpoint=stack.amqp_url(run.rgw_amqp_user, rgw_password, run.vhost), ceph=self._ceph
        )
        warm_up_notifications(settings)
        return env

    @property
    def notify_endpoint(self) -> str:
        """The gateway that only delivers events (it answers no request)."""
        assert self._ceph is not None
        return f"http://127.0.0.1:{self._ceph.notify_port}"

    @property
    def ceph_base(self) -> Path:
        """This run's Ceph cluster directory (its keyrings, ceph.conf and the S3 admin's user.json)."""
        assert self._ceph is not None
        return self._ceph.base

    @contextlib.contextmanager
    def wiring_gateway(self) -> Iterator[str]:
        """This run's wiring gateway, up for the block: the one that changes bucket notifications
        (tests/faults/test_lost_notifications.py removes the uploads bucket's and puts it back)."""
        assert self._ceph is not None
        with self._ceph.wiring_gateway() as endpoint:
            yield endpoint

    def stop_broker(self) -> None:
        _rabbitmqctl("stop_app")

    def start_broker(self) -> None:
        _rabbitmqctl("start_app")
        _rabbitmqctl("await_startup")

    def restart_database(self) -> str:
        cluster = _local_cluster(self._admin_dsn)
        if cluster is not None and os.geteuid() == 0:
            subprocess.run(["pg_ctlcluster", *cluster, "restart", "-m", "fast"], check=True, timeout=120)
            kind = "restart"
        else:
            _terminate_sessions(self._admin_dsn, self.run.database)
            kind = "sessions terminated"
        _wait_for_database(self._admin_dsn)
        return kind

    def _rgw_pids(self) -> list[int]:
        """radosgw of this run's cluster: the child of its supervisor loop (see ceph.sh)."""
        assert self._ceph is not None
        supervisor = (self._ceph.base / "pids" / "rgw.a.pid").read_text().strip()
        out = subprocess.run(["pgrep", "-P", supervisor, "-x", "radosgw"], capture_output=True, text=True).stdout
        pids = [int(p) for p in out.split()]
        assert pids, "radosgw of this run is not running"
        return pids

    def freeze_object_store(self) -> None:
        for pid in self._rgw_pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw_object_store(self) -> None:
        for pid in self._rgw_pids():
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._ceph is not None:
            self._ceph.stop(wipe=True)
        subprocess.run(["rabbitmqctl", "delete_vhost", self.run.vhost], check=False, capture_output=True)
        for user in (
            self.run.amqp_user,
            self.run.rgw_amqp_user,
            self.run.persister_amqp_user,
            self.run.intake_amqp_user,
        ):
            stack.delete_rabbitmq_user(user)
        if self._admin_dsn:
            drop_database(self._admin_dsn, self.run.database)
            for role in (self.run.pg_runtime_role, self.run.pg_refget_role, self.run.pg_persister_role):
                _drop_role(self._admin_dsn, role)
        shutil.rmtree(self._dir, ignore_errors=True)


class ContainersProvider:
    """MinIO, RabbitMQ and Postgres containers on one network (for machines with Docker)."""

    name = "containers"

    def __init__(self) -> None:
        self.run = RunResources()
        self._containers: list[Any] = []
        self._network: Any = None
        self._pg_dsn = ""

    def start(self) -> dict[str, str]:
        from testcontainers.core.network import Network

        run = self.run
        password = stack.new_secret()
        self._network = Network().__enter__()
        postgres = self._start_postgres(password)
        rabbit = self._start_rabbitmq(password)
        vhost = urllib.parse.quote(run.vhost, safe="")
        minio_key, minio_secret = stack.new_secret(20), stack.new_secret(40)
        target = "GENOBASE"
        minio = self._start_minio(minio_key, minio_secret, target, f"amqp://genobase:{password}@rabbitmq:5672/{vhost}")
        s3 = f"http://{minio.get_container_host_ip()}:{minio.get_exposed_port(9000)}"
        self._pg_dsn = (
            f"postgresql://genobase:{password}@{postgres.get_container_host_ip()}:"
            f"{postgres.get_exposed_port(5432)}/{run.database}"
        )
        amqp = f"amqp://genobase:{password}@{rabbit.get_container_host_ip()}:{rabbit.get_exposed_port(5672)}/{vhost}"
        runtime = _with_user(self._pg_dsn, self.run.pg_runtime_role, stack.new_secret())
        env = {
            # the container's user owns the schema; the migration creates the runtime role
            "GENOBASE_PG_OWNER_DSN": self._pg_dsn,
            "GENOBASE_PG_DSN": runtime,
            "GENOBASE_AMQP_URL": amqp,
            "GENOBASE_EVENTS_ROUTING_KEY": run.topic,
            "GENOBASE_S3_ENDPOINT": s3,
            "GENOBASE_S3_ACCESS_KEY": minio_key,
            "GENOBASE_S3_SECRET_KEY": minio_secret,
            "GENOBASE_UPLOADS_BUCKET": run.uploads_bucket,
            "GENOBASE_RESULTS_BUCKET": run.results_bucket,
        }
        env["GENOBASE_S3_KIND"] = "minio"
        settings = Settings(**_as_kwargs(env))
        env |= stack.prepare_pipeline(settings, rgw_push_endpoint=None)
        from shared.s3.notify import wire_minio

        wire_minio(s3, minio_key, minio_secret, run.uploads_bucket, target)
        warm_up_notifications(settings)
        return env

    def _started(self, container: Any) -> Any:
        """Start ``container``; it is listed for ``stop`` first, so one that fails half way is removed too."""
        self._containers.append(container)
        container.start()
        return container

    def _start_postgres(self, password: str) -> Any:
        from testcontainers.community.postgres import PostgresContainer

        postgres = PostgresContainer(POSTGRES_IMAGE, username="genobase", password=password, dbname=self.run.database)
        postgres.with_network(self._network).with_network_aliases("postgres")
        return self._started(postgres)

    def _start_rabbitmq(self, password: str) -> Any:
        from testcontainers.community.rabbitmq import RabbitMqContainer

        # guest may only log in over loopback, and MinIO reaches RabbitMQ over the network.
        rabbit = RabbitMqContainer(RABBITMQ_IMAGE, username="genobase", password=password)
        rabbit.with_network(self._network).with_network_aliases("rabbitmq")
        self._started(rabbit)
        rabbit.exec(["rabbitmqctl", "add_vhost", self.run.vhost])
        rabbit.exec(["rabbitmqctl", "set_permissions", "-p", self.run.vhost, "genobase", ".*", ".*", ".*"])
        return rabbit

    def _start_minio(self, key: str, secret: str, target: str, amqp_url: str) -> Any:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy

        minio = (
            DockerContainer(MINIO_IMAGE)
            .with_command("server /data")
            .with_env("MINIO_ROOT_USER", key)
            .with_env("MINIO_ROOT_PASSWORD", secret)
            .with_env(f"MINIO_NOTIFY_AMQP_ENABLE_{target}", "on")
            .with_env(f"MINIO_NOTIFY_AMQP_URL_{target}", amqp_url)
            .with_env(f"MINIO_NOTIFY_AMQP_EXCHANGE_{target}", "genobase.events")
            .with_env(f"MINIO_NOTIFY_AMQP_EXCHANGE_TYPE_{target}", "topic")
            .with_env(f"MINIO_NOTIFY_AMQP_ROUTING_KEY_{target}", self.run.topic)
            .with_env(f"MINIO_NOTIFY_AMQP_DURABLE_{target}", "on")
            .with_env(f"MINIO_NOTIFY_AMQP_DELIVERY_MODE_{target}", "2")
            .with_env(f"MINIO_NOTIFY_AMQP_PUBLISHING_CONFIRMS_{target}", "on")
            .with_env(f"MINIO_NOTIFY_AMQP_QUEUE_DIR_{target}", "/data/.events")
            .with_exposed_ports(9000)
            .with_network(self._network)
            .with_network_aliases("minio")
            .waiting_for(LogMessageWaitStrategy("API:").with_startup_timeout(60))
        )
        return self._started(minio)

    def _container(self, index: int) -> Any:
        return self._containers[index]

    def stop_broker(self) -> None:
        self._container(1).exec(["rabbitmqctl", "stop_app"])

    def start_broker(self) -> None:
        self._container(1).exec(["rabbitmqctl", "start_app"])
        self._container(1).exec(["rabbitmqctl", "await_startup"])

    def restart_database(self) -> str:
        # Postgres is PID 1 of its container: restarting it would end the container and move its
        # port. Dropping every session is what the services see of a restart.
        _terminate_sessions(self._pg_dsn, self.run.database)
        return "sessions terminated"

    def freeze_object_store(self) -> None:
        self._container(2).get_wrapped_container().pause()

    def thaw_object_store(self) -> None:
        self._container(2).get_wrapped_container().unpause()

    def stop(self) -> None:
        """Remove every container that was started, even half way, then the network.

        Each step may fail (a container that never started, a network still in use): report it and
        go on, so that the first error -- the one the run stopped on -- stays the one reported.
        """
        for container in reversed(self._containers):
            try:
                container.stop()
            except Exception as exc:
                print(f"could not remove container {container}: {exc!r}", file=sys.stderr)
        if self._network is not None:
            try:
                self._network.__exit__(None, None, None)
            except Exception as exc:
                print(f"could not remove the test network: {exc!r}", file=sys.stderr)


def _as_kwargs(env: dict[str, str]) -> dict[str, Any]:
    return {k.removeprefix("GENOBASE_").lower(): v for k, v in env.items()}
