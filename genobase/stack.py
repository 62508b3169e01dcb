"""The native stack: PostgreSQL, RabbitMQ and Ceph RGW on this machine, and the pipeline services.

Used by ``genobase up``/``down``/``status`` and by the tests' native provider, so both run the very
same start-up code. Daemons are started detached with pid files, so ``up`` is idempotent and also
restarts any service that died.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from shared.postgres.provision import ensure_pg_role as ensure_pg_role
from shared.postgres.provision import psql_as_postgres as psql_as_postgres
from shared.runtime.settings import Settings

SERVICES = ("intake", "parser", "persister", "assembler", "watchdog", "refget")
AMQP_VHOST = "genobase"  # the stack's own RabbitMQ vhost (users: genobase, genobase-rgw)
PG_RUNTIME_ROLE = "genobase_app"  # the services' Postgres role (rows only); "genobase" owns the schema
PG_REFGET_ROLE = "genobase_refget"  # refget's: reads its tables (shared/postgres/migrate.py)
PG_PERSISTER_ROLE = "genobase_persister"  # the persister's: loads batches


def script(name: str) -> str:
    return str(resources.files("genobase.scripts") / name)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A port nobody listens on, below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) comes from the ephemeral range, where any outgoing
    connection may take it before our server binds it; the range below is left to listeners.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randint(max(1024, low - 12000), low - 1)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def bootstrap() -> list[str]:
    """Install what is missing and start PostgreSQL/RabbitMQ where absent; returns what it started."""
    out = subprocess.run(["bash", script("bootstrap.sh")], check=True, stdout=subprocess.PIPE, text=True).stdout
    last = out.strip().splitlines()[-1] if out.strip() else "started="
    return [name for name in last.removeprefix("started=").split() if name]


def stop_base_services(names: list[str]) -> None:
    if "rabbitmq" in names:
        subprocess.run(["rabbitmqctl", "stop"], check=False, capture_output=True)
    if "postgresql" in names:
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop"], check=False)


def rabbitmqctl(*args: str, stdin: str | None = None) -> str:
    """rabbitmqctl on this machine; a password goes in on standard input, never as an argument."""
    return subprocess.run(
        ["rabbitmqctl", *args], check=True, capture_output=True, text=True, input=stdin, timeout=120
    ).stdout


def ensure_rabbitmq_user(
    user: str, password: str, vhost: str, configure: str = ".*", write: str = ".*", read: str = ".*"
) -> None:
    """A RabbitMQ user with ``password`` and these permissions on ``vhost`` (created if missing).

    Nothing is granted anywhere else: ``guest`` and every other user get nothing on the vhost.
    """
    if vhost not in rabbitmqctl("list_vhosts", "--quiet", "--no-table-headers").split():
        rabbitmqctl("add_vhost", vhost)
    users = {
        line.split()[0] for line in rabbitmqctl("list_users", "--quiet", "--no-table-headers").splitlines() if line
    }
    rabbitmqctl("change_password" if user in users else "add_user", user, stdin=password)
    rabbitmqctl("set_permissions", "-p", vhost, user, configure, write, read)


def delete_rabbitmq_user(user: str) -> None:
    subprocess.run(["rabbitmqctl", "delete_user", user], check=False, capture_output=True, timeout=120)


def rgw_publisher_permissions(events_exchange: str) -> tuple[str, str, str]:
    """What the object store's own broker user may do: publish to the events exchange, nothing else.

    (configure, write, read) as ``rabbitmqctl set_permissions`` takes them. RGW's AMQP client also
    declares a server-named queue of its own (``amq.gen-…``, exclusive to its connection), which
    needs configure and read on such names; no pipeline queue matches them. The password is in the
    RGW topic's push endpoint, kept in RGW's metadata: if it ever leaked, it could only add events,
    and every event is checked against the store before it changes anything.
    """
    own_queue = r"^amq\.gen-.*"
    return own_queue, f"^{re.escape(events_exchange)}$", own_queue


def amqp_url(user: str, password: str, vhost: str, host: str = "127.0.0.1", port: int = 5672) -> str:
    return f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(vhost, safe='')}"


@dataclass
class CephCluster:
    base: Path
    rgw_port: int = 7480
    notify_port: int = 7478  # the gateway that delivers events; it refuses every request (ceph.sh)
    wire_port: int = 7479  # the wiring gateway, up only while notifications are wired (ceph.sh)
    mon_port: int = 3300
    mon_v1_port: int = 6789
    store: str = "bluestore"
    memstore_bytes: int = 4 * 1024**3  # memstore only: RAM is taken as objects are written

    def _env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "MEMSTORE_BYTES": str(self.memstore_bytes),
            "BASE": str(self.base),
            "RGW_PORT": str(self.rgw_port),
            "NOTIFY_PORT": str(self.notify_port),
            "WIRE_PORT": str(self.wire_port),
            "MON_PORT": str(self.mon_port),
            "MON_V1_PORT": str(self.mon_v1_port),
            "OSD_STORE": self.store,
            **extra,
        }

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rgw_port}"

    def start(self) -> tuple[str, str]:
        """Start (or restart) the cluster; returns the S3 admin user's access and secret key.

        ceph.sh generates them with the user and keeps them in ``user.json`` (mode 600): no
        secret goes through a command line.
        """
        subprocess.run(["bash", script("ceph.sh"), "start"], check=True, env=self._env())
        user = json.loads((self.base / "user.json").read_text())
        keys = next(k for k in user["keys"] if k["user"] == "genobase")
        return keys["access_key"], keys["secret_key"]

    def stop(self, wipe: bool = False) -> None:
        subprocess.run(["bash", script("ceph.sh"), "stop"], check=False, env=self._env(WIPE="1" if wipe else "0"))

    def running(self) -> bool:
        return subprocess.run(["bash", script("ceph.sh"), "status"], env=self._env()).returncode == 0

    @contextlib.contextmanager
    def wiring_gateway(self) -> Iterator[str]:
        """The wiring gateway, up for as long as the block runs; yields its endpoint.

        It is the one gateway that answers topic and bucket-notification calls: the serving
        gateway refuses them (ceph.sh), so that no owner or anonymous caller can read a topic's
        broker password or remove the wiring, and the delivering gateway answers nothing at all.
        """
        subprocess.run(["bash", script("ceph.sh"), "wire-start"], check=True, env=self._env())
        try:
            yield f"http://127.0.0.1:{self.wire_port}"
        finally:
            subprocess.run(["bash", script("ceph.sh"), "wire-stop"], check=False, env=self._env())


def new_secret(length: int = 24) -> str:
    return secrets.token_hex(length // 2)


def read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    # Created owner-only from its first byte: it holds every password of the stack.
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write("".join(f"{k}={v}\n" for k, v in values.items()))
    tmp.replace(path)


# --- services -----------------------------------------------------------------------------------


# Stack-file settings for the CLI and the stack's set-up only: no service is given them.
CLI_ONLY_SETTINGS = frozenset(
    {
        "GENOBASE_PG_OWNER_DSN",
        "GENOBASE_PG_PASSWORD",
        "GENOBASE_PG_RUNTIME_PASSWORD",
        "GENOBASE_PG_REFGET_PASSWORD",
        "GENOBASE_PG_PERSISTER_PASSWORD",
        "GENOBASE_RABBITMQ_PERSISTER_PASSWORD",
        "GENOBASE_RABBITMQ_INTAKE_PASSWORD",
        "GENOBASE_RABBITMQ_PASSWORD",
        "GENOBASE_RABBITMQ_RGW_PASSWORD",
        "GENOBASE_S3_ACCESS_KEY",  # the store's admin user
        "GENOBASE_S3_SECRET_KEY",
        "GENOBASE_API_KEY",
    }
)


def metrics_port_setting(service: str) -> str:
    """Where the stack file keeps a service's metrics port (given to it as GENOBASE_METRICS_PORT)."""
    return f"GENOBASE_{service.upper()}_METRICS_PORT"


# `genobase up`'s metrics ports, one per service (docs/operations.md "Metrics").
METRICS_PORTS = {name: 9101 + i for i, name in enumerate(SERVICES)}


def service_key_settings(service: str) -> tuple[str, str]:
    """Where the stack file keeps a service's own S3 access and secret key."""
    return f"GENOBASE_{service.upper()}_S3_ACCESS_KEY", f"GENOBASE_{service.upper()}_S3_SECRET_KEY"


def service_settings(service: str, values: dict[str, str]) -> dict[str, str]:
    """What ``service`` is given: the stack's settings less every secret that is not its own.

    Its S3 keys (if it uses S3) become its GENOBASE_S3_ACCESS_KEY/SECRET_KEY; the admin's, the
    owner's Postgres role, the broker users' passwords and the other services' keys are left out.
    """
    others = {name for svc in SERVICES for name in (*service_key_settings(svc), metrics_port_setting(svc))}
    others |= {name for user in SECOND_S3_USERS.values() for name in service_key_settings(user)}
    own = {k: v for k, v in values.items() if k not in CLI_ONLY_SETTINGS and k not in others}
    if metrics_port_setting(service) in values:
        own["GENOBASE_METRICS_PORT"] = values[metrics_port_setting(service)]
    access, secret = service_key_settings(service)
    if access in values:
        own["GENOBASE_S3_ACCESS_KEY"], own["GENOBASE_S3_SECRET_KEY"] = values[access], values[secret]
    if service in SECOND_S3_USERS:
        access, secret = service_key_settings(SECOND_S3_USERS[service])
        if access in values:
            own["GENOBASE_S3_DOWNLOAD_ACCESS_KEY"], own["GENOBASE_S3_DOWNLOAD_SECRET_KEY"] = (
                values[access],
                values[secret],
            )
    if service in BROKER_FREE_SERVICES:
        own.pop("GENOBASE_AMQP_URL", None)
    for name in (n for names in OWN_CREDENTIALS.values() for n in names):
        own.pop(name, None)  # another service's own credentials: never given
    for name, as_name in OWN_CREDENTIALS.get(service, {}).items():
        if name in values:
            own[as_name] = values[name]
    if "GENOBASE_PERSISTER_AMQP_URL" in values and service == "persister":
        own["GENOBASE_AMQP_DECLARE_TOPOLOGY"] = "false"  # its user may not configure (persister_permissions)
    return own


# Credentials of a service's own, kept in the stack file under names of their own and given to that
# service alone, under the general name: refget's read-only Postgres role, the persister's
# Postgres role and broker user (shared/postgres/migrate.py, persister_permissions), the intake's
# broker user (intake_permissions).
OWN_CREDENTIALS = {
    "refget": {"GENOBASE_REFGET_PG_DSN": "GENOBASE_PG_DSN"},
    "persister": {"GENOBASE_PERSISTER_PG_DSN": "GENOBASE_PG_DSN", "GENOBASE_PERSISTER_AMQP_URL": "GENOBASE_AMQP_URL"},
    "intake": {"GENOBASE_INTAKE_AMQP_URL": "GENOBASE_AMQP_URL"},
}


def persister_permissions(settings: Settings) -> tuple[str, str, str]:
    """What the persister's own broker user may do, as ``rabbitmqctl set_permissions`` takes them:
    configure nothing (``genobase up`` declares the topology), publish to the pipeline exchange (its
    assembly requests) and the dead-letter exchange (messages it refuses), consume its own queue."""
    exchanges = "|".join(re.escape(e) for e in (settings.pipeline_exchange, settings.dead_letter_exchange))
    return "^$", f"^({exchanges})$", f"^{re.escape(settings.queue('persist'))}$"


def intake_permissions(settings: Settings) -> tuple[str, str, str]:
    """What the intake's own broker user may do, as ``rabbitmqctl set_permissions`` takes them:
    publish to the events exchange (a retry's parse message, a notification like the object
    store's: the parser checks it against the store as any event) and nothing else -- configure
    nothing, consume nothing (its health check only opens a connection)."""
    return "^$", f"^{re.escape(settings.events_exchange)}$", "^$"


# Services that never talk to RabbitMQ: they are given no broker credentials at all.
BROKER_FREE_SERVICES = frozenset({"refget"})


# A service's second S3 user (shared/s3/users.py): the intake signs result links as "downloads".
SECOND_S3_USERS = {"intake": "downloads"}


# The stages that may run as several processes at once: RabbitMQ's competing consumers share their
# queue among them, and each generation's lock in Postgres keeps two from working on one upload.
# (The intake and refget are HTTP servers on one port each: put several behind a load balancer.)
SCALABLE = ("parser", "persister", "assembler", "watchdog")
MAX_REPLICAS = 8
REPLICAS_SETTING = "GENOBASE_REPLICAS"
# `genobase up`'s counts when none were given: an assembler follows one parse from its first batch
# to its end, so a second one keeps small uploads from waiting behind a large upload's parse.
DEFAULT_REPLICAS = {"assembler": 2}


def parse_replicas(text: str) -> dict[str, int]:
    """``parser=2,persister=2`` -> ``{"parser": 2, "persister": 2}``; ValueError names what is wrong."""
    replicas: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition("=")
        if name not in SCALABLE:
            raise ValueError(f"{name!r} cannot have replicas (only {', '.join(SCALABLE)})")
        if not count.isdigit() or not 1 <= int(count) <= MAX_REPLICAS:
            raise ValueError(f"{item!r}: the count must be 1 to {MAX_REPLICAS}")
        replicas[name] = int(count)
    return replicas


def format_replicas(replicas: dict[str, int]) -> str:
    return ",".join(f"{name}={count}" for name, count in replicas.items() if count > 1)


def instance_names(service: str, count: int) -> list[str]:
    """A service's processes: ``parser``, then ``parser-2``, ``parser-3`` ..."""
    return [service] + [f"{service}-{n}" for n in range(2, count + 1)]


def split_instance(instance: str) -> tuple[str, int]:
    """``parser-2`` -> ``("parser", 2)``; ``parser`` -> ``("parser", 1)``."""
    service, _, number = instance.partition("-")
    return service, int(number) if number else 1


def replica_metrics_port(values: dict[str, str], service: str, replica: int) -> str | None:
    """Replica n of a service serves metrics on the service's port + 10 (n - 1): 9102, 9112, ..."""
    base = values.get(metrics_port_setting(service))
    if base is None:
        return None
    return str(int(base) + 10 * (replica - 1))


# Each service runs under a small supervisor, like radosgw in ceph.sh: a bash loop that starts it
# again whenever it exits, unless it was told to stop (``<name>.stopping`` exists). It writes the
# running process's pid to ``<name>.pid`` and the number of restarts to ``<name>.restarts`` (read by
# ``genobase status``), and gives each new process that number in GENOBASE_PROCESS_RESTARTS (its
# ``genobase_process_restarts`` gauge). The wait before a restart doubles from 0.5 s to 30 s while
# the service keeps dying within a minute of its start, so a service that cannot start does not spin.
SUPERVISOR_SCRIPT = r"""
name=$1; run_dir=$2; python=$3; module=$4
stopping="$run_dir/$name.stopping"; restarts=0; delay=0.5; child=
trap 'touch "$stopping"; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT
while [ ! -e "$stopping" ]; do
  started=$SECONDS
  GENOBASE_PROCESS_RESTARTS=$restarts "$python" -m "$module" </dev/null &
  child=$!
  echo "$child" > "$run_dir/$name.pid"
  wait "$child"; rc=$?
  while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
  [ -e "$stopping" ] && break
  restarts=$((restarts + 1))
  echo "$restarts" > "$run_dir/$name.restarts"
  echo "{\"event\": \"$name exited with status $rc; restart $restarts in $delay s\", \"logger\": \"supervisor\"}" >&2
  sleep "$delay"
  if [ $((SECONDS - started)) -ge 60 ]; then delay=0.5; else delay=$(awk "BEGIN{d=$delay*2; print (d>30)?30:d}"); fi
done
"""
SUPERVISOR_MARK = "genobase-supervisor"  # the script's $0: how a supervisor is told from other processes


def open_private_log(path: Path) -> int:
    """A log file's descriptor for appending, owner-only from its first byte.

    A service's log may hold what its settings let slip in an exception (a DSN, an address), so it
    is kept like every other file that may hold a secret; an existing one is made owner-only too.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return fd


@dataclass
class ServiceProcesses:
    """The pipeline services as supervised processes, with pid files and logs under ``run_dir``.

    Each reads its own settings file, ``<run_dir>/<service>.env`` (mode 600), written from the
    stack's ``values`` by ``service_settings``: a service never reads the stack file itself. A
    service with replicas (``GENOBASE_REPLICAS=parser=2,...`` among the values) runs as several
    processes, ``parser``, ``parser-2`` ..., each with its own pid file, log and metrics port.
    Each runs under a supervisor (``SUPERVISOR_SCRIPT``) that restarts it when it dies; a process
    started with a failpoint (GENOBASE_FAILPOINT, the fault tests' crash on purpose) runs alone.
    """

    run_dir: Path
    values: dict[str, str]
    # What each service runs as (``python -m``); the supervisor's unit test runs a stand-in.
    module_template: str = "services.{service}.main"

    @property
    def replicas(self) -> dict[str, int]:
        return parse_replicas(self.values.get(REPLICAS_SETTING, ""))

    def instances(self) -> list[str]:
        """Every process the stack should run, in start order."""
        replicas = self.replicas
        return [name for service in SERVICES for name in instance_names(service, replicas.get(service, 1))]

    def running_instances(self) -> list[str]:
        """Every process with a pid file that still runs (whatever the replicas are now)."""
        found = {path.stem for path in self.run_dir.glob("*.pid")}
        found |= {path.stem for path in self.run_dir.glob("*.supervisor")}
        ordered = [name for name in self.instances() if name in found]
        extra = sorted(found.difference(ordered))
        return [name for name in [*ordered, *extra] if self.pid(name) is not None or self.supervisor(name)]

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def supervisor_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.supervisor"

    def log_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def restarts(self, name: str) -> int:
        """How many times the supervisor restarted ``name`` since it was started."""
        try:
            text = (self.run_dir / f"{name}.restarts").read_text().strip()
        except FileNotFoundError:
            return 0
        return int(text) if text.isdigit() else 0

    def metrics_port(self, name: str) -> str | None:
        return replica_metrics_port(self.values, *split_instance(name))

    def pid(self, name: str) -> int | None:
        """The service process of ``name`` if it runs (not its supervisor)."""
        service, _ = split_instance(name)
        return _running(self.pid_file(name), self.module_template.format(service=service).encode())

    def supervisor(self, name: str) -> int | None:
        """The supervisor of ``name`` if it runs."""
        return _running(self.supervisor_file(name), f"{SUPERVISOR_MARK}\0{name}\0".encode())

    def start(self, name: str, extra_env: dict[str, str] | None = None) -> int:
        """Start instance ``name`` unless it runs; returns its pid. ``extra_env`` is for this process only."""
        existing = self.pid(name)
        if existing is not None:
            return existing
        if self.supervisor(name) is not None:
            return self._wait_for_restart(name)
        service, replica = split_instance(name)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        settings_file = self.run_dir / f"{service}.env"
        write_env_file(settings_file, service_settings(service, self.values))
        inherited = {k: v for k, v in os.environ.items() if k not in CLI_ONLY_SETTINGS}
        own = {"GENOBASE_STACK_FILE": str(settings_file), "GENOBASE_REPLICA": str(replica)}
        port = self.metrics_port(name)
        if replica > 1 and port is not None:
            own["GENOBASE_METRICS_PORT"] = port
        env = {**inherited, **own, **(extra_env or {})}
        module = self.module_template.format(service=service)
        for stale in (f"{name}.stopping", f"{name}.restarts", f"{name}.pid", f"{name}.supervisor"):
            (self.run_dir / stale).unlink(missing_ok=True)
        log = open_private_log(self.log_file(name))
        try:
            if "GENOBASE_FAILPOINT" in env:  # meant to die there and stay down: no supervisor
                command = [sys.executable, "-m", module]
            else:
                command = ["bash", "-c", SUPERVISOR_SCRIPT, SUPERVISOR_MARK, name, str(self.run_dir), sys.executable]
                command.append(module)
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True
            )
        finally:
            os.close(log)
        if command[0] != "bash":
            self.pid_file(name).write_text(str(process.pid))
            return process.pid
        self.supervisor_file(name).write_text(str(process.pid))
        return self._wait_for_restart(name, lambda: process.poll() is None)

    def _wait_for_restart(self, name: str, alive: Callable[[], bool] | None = None, timeout: float = 40) -> int:
        """The pid of the process the supervisor of ``name`` runs, once it has started one.

        ``alive`` says whether the supervisor still runs (its ``Popen`` when this process started
        it: /proc may show a process's command line empty for a moment just after it started).
        """
        alive = alive or (lambda: self.supervisor(name) is not None)
        deadline = time.monotonic() + timeout
        while (pid := self.pid(name)) is None:
            if not alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the supervisor of {name} started no process (see {self.log_file(name)})")
            time.sleep(0.05)
        return pid

    def start_all(self) -> dict[str, int]:
        """Start every instance that is not running; stop replicas beyond the configured counts."""
        wanted = self.instances()
        for name in self.running_instances():
            if name not in wanted:
                self.stop(name)
        return {name: self.start(name) for name in wanted}

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        """Stop ``name`` with ``sig`` (SIGKILL: a crash), and its supervisor, which does not restart it."""
        (self.run_dir / f"{name}.stopping").touch()
        supervisor = self.supervisor(name)
        self._end(name, sig, timeout)
        if supervisor is not None:
            deadline = time.monotonic() + 5  # it sees the mark once its process is gone (or its wait is over)
            while time.monotonic() < deadline and self.supervisor(name) is not None:
                _reap(supervisor)
                time.sleep(0.05)
            if self.supervisor(name) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(supervisor, signal.SIGKILL)
                time.sleep(0.1)
            _reap(supervisor)
            self._end(name, sig, timeout)  # one it started just before it saw the mark
        self.pid_file(name).unlink(missing_ok=True)
        self.supervisor_file(name).unlink(missing_ok=True)

    def _end(self, name: str, sig: int, timeout: float) -> None:
        pid = self.pid(name)
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid(name) is not None:
            _reap(pid)
            time.sleep(0.1)
        if self.pid(name) is not None:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            _reap(pid)

    def stop_all(self) -> None:
        for name in dict.fromkeys([*self.instances(), *self.running_instances()]):
            self.stop(name)


def _running(pid_file: Path, mark: bytes) -> int | None:
    """The pid in ``pid_file`` if that process runs and its command line holds ``mark``."""
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    if mark not in cmdline:
        return None
    return None if status == "Z" else pid


def _reap(pid: int) -> None:
    """Collect a child that exited (when the caller started it), so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def first_admin_key(settings: Settings) -> str:
    """An admin key for a stack's first run (named ``admin``, or ``admin-N`` if taken); returns the key."""
    from shared.postgres.keys import PostgresKeys
    from shared.usecases.keys import create_admin_key

    return create_admin_key(PostgresKeys.from_settings(settings))


def browser_origins(base_url: str) -> list[str]:
    """The upload page's origin, by the name it was given and by the other loopback name."""
    origins = [base_url.rstrip("/")]
    for a, b in (("127.0.0.1", "localhost"), ("localhost", "127.0.0.1")):
        if f"//{a}" in base_url:
            origins.append(origins[0].replace(f"//{a}", f"//{b}"))
    return origins


def prepare_pipeline(
    settings: Settings,
    rgw_push_endpoint: str | None,
    s3_secrets: dict[str, str] | None = None,
    ceph: CephCluster | None = None,
) -> dict[str, str]:
    """Everything the services expect to exist: schema, exchanges and queues, buckets, notifications,
    and each S3-using service's own user and grants.

    Returns the services' S3 keys as stack-file settings (``service_key_settings``).
    """
    from shared.postgres.migrate import migrate_database
    from shared.rabbitmq.broker import connect, declare_topology
    from shared.s3.notify import wire_rgw
    from shared.s3.store import ObjectStore

    migrate_database(settings)
    connection = connect(settings)
    try:
        declare_topology(connection.channel(), settings)
    finally:
        connection.close()
    store = ObjectStore(settings)
    store.ensure_bucket(settings.uploads_bucket)
    store.ensure_bucket(settings.results_bucket)
    store.protect_buckets((settings.uploads_bucket, settings.results_bucket))
    if rgw_push_endpoint is not None:
        if ceph is None:
            raise ValueError("wiring RGW's notifications needs its cluster (the wiring gateway)")
        store.allow_browser_uploads(settings.uploads_bucket, browser_origins(settings.status_base_url))
        with ceph.wiring_gateway() as wiring_endpoint:
            wire_rgw(
                wiring_endpoint,
                settings.s3_access_key.get_secret_value(),
                settings.s3_secret_key.get_secret_value(),
                settings.uploads_bucket,
                settings.events_routing_key,
                rgw_push_endpoint,
                settings.events_exchange,
                settings.s3_region,
            )
    from shared.s3.users import provision_services

    keys: dict[str, str] = {}
    for service, credentials in provision_services(settings, s3_secrets).items():
        access, secret = service_key_settings(service)
        keys[access], keys[secret] = credentials.access_key, credentials.secret_key
    return keys
