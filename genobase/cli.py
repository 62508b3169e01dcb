"""``genobase``: upload genome files and follow them through the pipeline; bring the stack up or down."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx

from genobase import commands, completion, compose, console, stack
from genobase.errors import ExitCode, exit_codes_epilog, explain
from shared.domain.uploads import State
from shared.parsing.formats import FORMAT_NAMES
from shared.runtime.settings import Settings, load_settings, stack_file

if TYPE_CHECKING:
    from shared.domain.access import KeyStore

HOME = Path(os.environ.get("GENOBASE_HOME", ".genobase"))


def _auth(settings: Settings) -> dict[str, str]:
    """The Authorization header of the CLI's calls to the intake (GENOBASE_API_KEY, env first)."""
    if settings.api_key is None:
        return {}
    return {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}


def _replicas(text: str) -> dict[str, int]:
    try:
        return stack.parse_replicas(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _services() -> stack.ServiceProcesses:
    return stack.ServiceProcesses(HOME / "run", stack.read_env_file(stack_file()))


def cmd_up(args: argparse.Namespace) -> int:
    if os.environ.get("GENOBASE_STACK", "native") == "compose":
        return _compose_up(args.replicas or {})
    path = stack_file()
    known = stack.read_env_file(path)
    started = stack.bootstrap()
    previously = known.get("GENOBASE_STARTED_INFRA", "").split(",")
    started = sorted({*started, *[n for n in previously if n]})
    # Postgres: the schema's owner runs the migrations; the services log in as a runtime role.
    pg_password = known.get("GENOBASE_PG_PASSWORD") or stack.new_secret()
    stack.ensure_pg_role("genobase", pg_password, "genobase")
    runtime_password = known.get("GENOBASE_PG_RUNTIME_PASSWORD") or stack.new_secret()
    stack.ensure_pg_role(stack.PG_RUNTIME_ROLE, runtime_password)
    # refget and the persister log in as roles of their own (the migrations grant their tables)
    refget_password = known.get("GENOBASE_PG_REFGET_PASSWORD") or stack.new_secret()
    stack.ensure_pg_role(stack.PG_REFGET_ROLE, refget_password)
    persister_password = known.get("GENOBASE_PG_PERSISTER_PASSWORD") or stack.new_secret()
    stack.ensure_pg_role(stack.PG_PERSISTER_ROLE, persister_password)
    # RabbitMQ: the stack's own vhost and user; the object store publishes as a user that can only
    # publish events. guest has no permission on the vhost.
    amqp_password = known.get("GENOBASE_RABBITMQ_PASSWORD") or stack.new_secret()
    rgw_amqp_password = known.get("GENOBASE_RABBITMQ_RGW_PASSWORD") or stack.new_secret()
    persister_amqp_password = known.get("GENOBASE_RABBITMQ_PERSISTER_PASSWORD") or stack.new_secret()
    base_settings = Settings()
    stack.ensure_rabbitmq_user("genobase", amqp_password, stack.AMQP_VHOST)
    stack.ensure_rabbitmq_user(
        "genobase-rgw",
        rgw_amqp_password,
        stack.AMQP_VHOST,
        *stack.rgw_publisher_permissions(base_settings.events_exchange),
    )
    stack.ensure_rabbitmq_user(
        "genobase-persister", persister_amqp_password, stack.AMQP_VHOST, *stack.persister_permissions(base_settings)
    )
    intake_amqp_password = known.get("GENOBASE_RABBITMQ_INTAKE_PASSWORD") or stack.new_secret()
    stack.ensure_rabbitmq_user(
        "genobase-intake", intake_amqp_password, stack.AMQP_VHOST, *stack.intake_permissions(base_settings)
    )
    ceph = stack.CephCluster(HOME.resolve() / "ceph", store=args.store)
    access, secret = ceph.start()
    values = {
        **known,
        "GENOBASE_STACK": "native",
        "GENOBASE_STARTED_INFRA": ",".join(started),
        "GENOBASE_PG_PASSWORD": pg_password,
        "GENOBASE_PG_RUNTIME_PASSWORD": runtime_password,
        "GENOBASE_PG_OWNER_DSN": f"postgresql://genobase:{pg_password}@127.0.0.1:5432/genobase",
        "GENOBASE_PG_DSN": f"postgresql://{stack.PG_RUNTIME_ROLE}:{runtime_password}@127.0.0.1:5432/genobase",
        "GENOBASE_PG_REFGET_PASSWORD": refget_password,
        "GENOBASE_REFGET_PG_DSN": f"postgresql://{stack.PG_REFGET_ROLE}:{refget_password}@127.0.0.1:5432/genobase",
        "GENOBASE_PG_PERSISTER_PASSWORD": persister_password,
        "GENOBASE_PERSISTER_PG_DSN": (
            f"postgresql://{stack.PG_PERSISTER_ROLE}:{persister_password}@127.0.0.1:5432/genobase"
        ),
        "GENOBASE_RABBITMQ_PERSISTER_PASSWORD": persister_amqp_password,
        "GENOBASE_PERSISTER_AMQP_URL": stack.amqp_url("genobase-persister", persister_amqp_password, stack.AMQP_VHOST),
        "GENOBASE_RABBITMQ_INTAKE_PASSWORD": intake_amqp_password,
        "GENOBASE_INTAKE_AMQP_URL": stack.amqp_url("genobase-intake", intake_amqp_password, stack.AMQP_VHOST),
        "GENOBASE_RABBITMQ_PASSWORD": amqp_password,
        "GENOBASE_RABBITMQ_RGW_PASSWORD": rgw_amqp_password,
        "GENOBASE_AMQP_URL": stack.amqp_url("genobase", amqp_password, stack.AMQP_VHOST),
        "GENOBASE_S3_ENDPOINT": ceph.endpoint,
        "GENOBASE_S3_ACCESS_KEY": access,
        "GENOBASE_S3_SECRET_KEY": secret,
        **{stack.metrics_port_setting(name): str(port) for name, port in stack.METRICS_PORTS.items()},
        "GENOBASE_CEPH_BASE": str(ceph.base),
        "GENOBASE_CEPH_STORE": args.store,
    }
    if args.replicas is not None:  # kept in the stack file: a later `up` without the flag keeps them
        values[stack.REPLICAS_SETTING] = stack.format_replicas(args.replicas)
    else:
        values.setdefault(stack.REPLICAS_SETTING, stack.format_replicas(stack.DEFAULT_REPLICAS))
    stack.write_env_file(path, values)
    settings = load_settings()
    values |= stack.prepare_pipeline(
        settings, rgw_push_endpoint=stack.amqp_url("genobase-rgw", rgw_amqp_password, stack.AMQP_VHOST), ceph=ceph
    )
    stack.write_env_file(path, values)
    if "GENOBASE_API_KEY" not in values:
        # The first run makes an admin key, kept in the stack file (mode 600) for the CLI and the demo.
        values["GENOBASE_API_KEY"] = stack.first_admin_key(settings)
        stack.write_env_file(path, values)
        settings = load_settings()
    pids = _services().start_all()
    _wait_healthy(settings)
    print(f"stack file      {path.resolve()}")
    print(f"intake (HTTP)   {settings.status_base_url}  (OpenAPI: {settings.status_base_url}/docs)")
    print(f"refget (read)   http://{settings.refget_host}:{settings.refget_port}/  (sequences, collections)")
    print(f"S3 (Ceph RGW)   {settings.s3_endpoint}  buckets {settings.uploads_bucket}, {settings.results_bucket}")
    print(f"RabbitMQ        amqp://127.0.0.1:5672  vhost {stack.AMQP_VHOST}, exchange {settings.events_exchange}")
    print("PostgreSQL      127.0.0.1:5432 database genobase")
    from shared.postgres.migrate import BULK_LOAD_SETTINGS, autovacuum_is_off, settings_below_bulk_load

    if autovacuum_is_off(settings):
        print(
            "  (autovacuum is off on this server: the pipeline's tables keep every dead row version;"
            " run VACUUM (ANALYZE) on them now and then, e.g. after deleting uploads)"
        )
    if low := settings_below_bulk_load(settings):
        have = ", ".join(f"{name} {value}" for name, value in low.items())
        want = ", ".join(f"{name} {BULK_LOAD_SETTINGS[name]}" for name in low)
        print(
            f"  (this server runs with {have}; compose's Postgres with {want}: uploads of several GiB"
            " cost more per GiB here, see docs/benchmarks.md 'Cost linear in size')"
        )
    services = _services()
    for name, pid in pids.items():
        metrics_at = services.metrics_port(name) or "-"
        print(f"{name:<15} pid {pid}  metrics :{metrics_at}/metrics  log {services.log_file(name)}")
    return 0


def _compose() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose", "-f", "compose.yaml"]
    return ["docker-compose", "-f", "compose.yaml"]


def _compose_up(replicas: dict[str, int]) -> int:
    """The Docker stack: secrets generated once into .env, endpoints into the stack file.
    Replicas become ``docker compose up --scale``."""
    env_path = Path(".env")
    env = compose.env_file(stack.read_env_file(env_path), stack.new_secret)
    stack.write_env_file(env_path, env)
    scale = [f"--scale={name}={count}" for name, count in replicas.items()]
    subprocess.run([*_compose(), "up", "-d", "--build", *scale], check=True)
    previous = stack.read_env_file(stack_file())
    values = compose.stack_file(env)
    stack.write_env_file(stack_file(), values)
    settings = load_settings()
    _wait_healthy(settings, timeout=180)
    # The first run makes an admin key (through the published Postgres port), kept from then on.
    values["GENOBASE_API_KEY"] = previous.get("GENOBASE_API_KEY") or stack.first_admin_key(settings)
    stack.write_env_file(stack_file(), values)
    settings = load_settings()
    print(f"compose stack up: intake {settings.status_base_url} (OpenAPI /docs), MinIO {settings.s3_endpoint}")
    return 0


def _wait_healthy(settings: Settings, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{settings.status_base_url}/healthz", timeout=10)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise SystemExit(f"intake did not become healthy: {last}")


def cmd_down(args: argparse.Namespace) -> int:
    known = stack.read_env_file(stack_file())
    if known.get("GENOBASE_STACK") == "compose":
        subprocess.run([*_compose(), "down", *(["--volumes"] if args.wipe else [])], check=True)
        return 0
    _services().stop_all()
    base = known.get("GENOBASE_CEPH_BASE")
    if base:
        stack.CephCluster(Path(base), store=known.get("GENOBASE_CEPH_STORE", "bluestore")).stop(wipe=args.wipe)
    started = [n for n in known.get("GENOBASE_STARTED_INFRA", "").split(",") if n]
    stack.stop_base_services(started)
    if started:
        known["GENOBASE_STARTED_INFRA"] = ""
        stack.write_env_file(stack_file(), known)
    print("stack stopped" + (f" (also {', '.join(started)})" if started else ""))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """``status ID``: an upload's status; ``status``: what of the stack runs (operators)."""
    if getattr(args, "id", None):
        return commands.cmd_status(args)
    known = stack.read_env_file(stack_file())
    if not known:
        print("no stack file: run 'genobase up'")
        return 1
    if known.get("GENOBASE_STACK") == "compose":
        return _compose_status()
    services = _services()
    ok = True
    for name in services.instances():
        pid = services.pid(name)
        ok &= pid is not None
        state = f"running, pid {pid}" if pid else "not running"
        if services.supervisor(name) is None:
            state += " (no supervisor: not restarted if it dies)" if pid else ""
        elif restarts := services.restarts(name):
            state += f", restarted {restarts} time(s) by its supervisor (see {services.log_file(name)})"
        print(f"{name:<12} {state}")
    base = known.get("GENOBASE_CEPH_BASE")
    rgw = bool(base) and stack.CephCluster(Path(base or ".")).running()
    ok &= rgw
    print(f"{'ceph-rgw':<12} {'answering on ' + known.get('GENOBASE_S3_ENDPOINT', '') if rgw else 'not answering'}")
    for name, port in (("postgres", 5432), ("rabbitmq", 5672)):
        up = stack.port_open(port)
        ok &= up
        print(f"{name:<12} {'listening on ' + str(port) if up else 'not listening'}")
    if ok:
        _pipeline_status(load_settings())
    return 0 if ok else 1


def _pipeline_status(settings: Settings) -> None:
    """Each queue's depth (and its dead letters), and the uploads in flight and stalled."""
    from datetime import timedelta

    from shared.domain.stages import ASSEMBLE, PARSE, PERSIST
    from shared.postgres.connection import Database
    from shared.postgres.uploads import PostgresUploads
    from shared.rabbitmq.broker import connect as amqp_connect

    connection = amqp_connect(settings)
    try:
        channel = connection.channel()
        for stage in (PARSE, PERSIST, ASSEMBLE):
            queue = settings.queue(stage.name)
            waiting = channel.queue_declare(queue, passive=True).method.message_count
            dead = channel.queue_declare(f"{queue}.dead", passive=True).method.message_count
            print(f"queue {queue:<18} {waiting:>6} waiting  {dead:>4} dead letters")
    finally:
        connection.close()
    uploads = PostgresUploads(Database(settings))
    try:
        states, stalled = uploads.in_flight(timedelta(seconds=settings.stall_after_seconds))
    finally:
        uploads.reset()
    listed = ", ".join(f"{state} {count}" for state, count in sorted(states.items())) or "none"
    print(f"uploads in flight: {sum(states.values())} ({listed}); stalled: {stalled}")


def _compose_status() -> int:
    """The containers as compose reports them, then whether the intake answers its health check."""
    listing = subprocess.run([*_compose(), "ps"], check=False)
    _compose_restarts()
    settings = load_settings()
    try:
        health = httpx.get(f"{settings.status_base_url}/healthz", timeout=10)
        print(f"intake     {settings.status_base_url}: {health.json()}")
        healthy = health.status_code == 200
    except httpx.HTTPError as exc:
        print(f"intake     {settings.status_base_url}: not answering ({exc})")
        healthy = False
    return 0 if listing.returncode == 0 and healthy else 1


def _compose_restarts() -> None:
    """How often Docker restarted each container (``restart: unless-stopped``), where it did."""
    ids = subprocess.run([*_compose(), "ps", "-q"], check=False, capture_output=True, text=True).stdout.split()
    if not ids:
        return
    inspect = ["docker", "inspect", "--format", "{{.Name}} {{.RestartCount}}", *ids]
    for line in subprocess.run(inspect, check=False, capture_output=True, text=True).stdout.splitlines():
        name, _, count = line.strip().lstrip("/").partition(" ")
        if count.isdigit() and int(count):
            print(f"{name}: restarted {count} time(s) by Docker")


def cmd_lookup(args: argparse.Namespace) -> int:
    settings = load_settings()
    url = f"{settings.status_base_url}/uploads/lookup?bucket={quote(args.bucket)}&key={quote(args.key)}"
    response = httpx.get(url, timeout=30, headers=_auth(settings))
    print(json.dumps(response.json(), indent=2))
    return 0 if response.status_code == 200 else 1


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from genobase import dead_letters

    settings = load_settings()
    if args.replay:
        done = dead_letters.replay_all(settings)
        print(f"{done.taken} dead letter(s) taken; restarted uploads: {', '.join(map(str, done.restarted)) or 'none'}")
        for letter in done.refused:
            print(f"refused   {letter.stage:<9} ({letter.reason})")
        if done.refused:
            print(f"{len(done.refused)} dead letter(s) refused: they fail the checks a message must pass on arrival")
        return 0
    letters = dead_letters.show(settings)
    for letter, uploads in letters:
        print(f"{letter.stage:<9} uploads {', '.join(map(str, uploads)) or '?'}  ({letter.reason})")
    print(f"{len(letters)} dead letter(s)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """API keys: made (the key printed once, alone on the last line), listed, revoked."""
    from shared.postgres.keys import PostgresKeys
    from shared.usecases import keys

    settings = load_settings()
    store = PostgresKeys.from_settings(settings)
    if args.action == "create":
        return _create_key(settings, store, args)
    if args.action == "revoke":
        return _revoke(settings, store, args.what)
    print(f"{'ID':<18} {'OWNER':<24} {'ROLE':<6} {'CREATED':<16}  {'LAST USED':<16}  STATE")
    for listed in keys.list_keys(store):
        state = f"revoked {listed.revoked_at:%Y-%m-%d %H:%M}" if listed.revoked_at else "active"
        role = "admin" if listed.admin else "owner"
        used = f"{listed.last_used_at:%Y-%m-%d %H:%M}" if listed.last_used_at else "never"
        print(f"{listed.id:<18} {listed.owner:<24} {role:<6} {listed.created_at:%Y-%m-%d %H:%M}  {used:<16}  {state}")
    return 0


def _create_key(settings: Settings, store: KeyStore, args: argparse.Namespace) -> int:
    from shared.usecases import keys

    try:
        issued = keys.issue_key(store, args.name, admin=args.admin, another=args.another)
    except keys.KeyRefused as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    if args.s3:
        try:
            _create_owner_s3_user(settings, args.name)
        except Exception as exc:
            # only the key just made: the owner's other keys (a rotation's old one) go on working
            keys.revoke_key_id(store, issued.id)
            print(f"error: could not make the S3 user ({exc.__class__.__name__}); key revoked", file=sys.stderr)
            return 1
    if issued.reinstated:
        print(f"owner {args.name!r} reinstated: its uploads are this key's")
    print(f"key {issued.id} of {args.name!r}{' (admin)' if args.admin else ''}: shown once, only its hash is kept")
    print(issued.secret)
    return 0


def _revoke(settings: Settings, store: KeyStore, what: str) -> int:
    """``what`` is a key id (``k_...``: that key) or an owner (every key of it)."""
    from shared.domain.access import is_key_id
    from shared.usecases import keys

    if is_key_id(what):
        revoked = keys.revoke_key_id(store, what)
        if revoked is None:
            print(f"no active key with the id {what!r}", file=sys.stderr)
            return 1
        print(f"revoked key {what} of {revoked.owner!r}")
        if not revoked.owner_revoked:
            print(f"{revoked.owner!r} holds other active keys: its uploads, tickets and S3 user are untouched")
            return 0
        owner = revoked.owner
        was_active = True
    else:
        owner = what
        was_active = keys.revoke_key(store, owner)
    removed = _remove_owner_s3_user(settings, owner)
    if not was_active and not removed:
        print(f"no active key named {owner!r}", file=sys.stderr)
        return 1
    print(f"revoked {owner!r}" + (" and its S3 user" if removed else ""))
    # The watchdog ends its open tickets (and aborts their multipart uploads) on its next
    # sweep; an object that still arrives through one is recorded as revoked, not parsed.
    print("its open tickets end as 'revoked' at the watchdog's next sweep")
    print(f"(to reinstate it, with its uploads: genobase keys create {owner} --another)")
    return 0


def _create_owner_s3_user(settings: Settings, owner: str) -> None:
    """S3 credentials that write under ``<owner>/`` in the uploads bucket and read nothing (shown once)."""
    from shared.s3.users import owner_grants, owner_user, s3_users

    users = s3_users(settings)
    credentials = users.ensure_user(owner_user(owner))
    users.grant(owner_user(owner), owner_grants(owner, settings.uploads_bucket, settings.results_bucket))
    print(f"S3 endpoint     {settings.presign_endpoint}")
    print(f"S3 may write    s3://{settings.uploads_bucket}/{owner}/... (and read nothing)")
    print(f"S3 access key   {credentials.access_key}")
    print(f"S3 secret key   {credentials.secret_key}")


def _remove_owner_s3_user(settings: Settings, owner: str) -> bool:
    """Remove the owner's S3 user, where this stack's S3 admin is configured; True if there was one."""
    if not settings.s3_access_key.get_secret_value():
        return False
    from shared.s3.users import owner_user, s3_users

    return s3_users(settings).remove_user(owner_user(owner))


# --- the command line ----------------------------------------------------------------------------

USER_EPILOG = """configuration (for each of the endpoint and the key, the first that is set):
  --endpoint / --api-key  >  GENOBASE_ENDPOINT / GENOBASE_API_KEY  >  the profile (--profile,
  GENOBASE_PROFILE, else "default", in $XDG_CONFIG_HOME/genobase/config.toml, made by
  `genobase login`)  >  the stack file of the current directory (what `genobase up` wrote)

"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("genobase")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    """The options every user command takes (where to connect, how loud) and ``--json``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress, no notes")
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an unexpected error"
    )
    connection = argparse.ArgumentParser(add_help=False, parents=[common])
    where = connection.add_argument_group("connection (flag > environment > profile > stack file)")
    where.add_argument("--endpoint", metavar="URL", help="the intake, e.g. http://127.0.0.1:8000 (GENOBASE_ENDPOINT)")
    where.add_argument("--intake", dest="endpoint", help=argparse.SUPPRESS)  # the former name
    where.add_argument(
        "--api-key",
        metavar="KEY",
        help="the API key (GENOBASE_API_KEY; a flag is visible to other local users in the process list)",
    )
    where.add_argument("--profile", metavar="NAME", help="a profile of `genobase login` (GENOBASE_PROFILE; 'default')")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--json", action="store_true", help="print the data as JSON (the client's models)")
    return common, connection, data


def _add_sending_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("files", nargs="+", metavar="FILE", help="files or globs (expanded here too)")
    command.add_argument("--format", choices=FORMAT_NAMES, help="skip format detection")
    command.add_argument("--alphabet", choices=["nucleotide", "protein", "any"], default="nucleotide")
    command.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the pipeline (3600)")
    command.add_argument("--parallel", type=int, default=4, help="parts of one file sent at once (multipart: 4)")
    command.add_argument("-j", "--jobs", type=int, default=4, help="files sent at once (4)")


def _add_user_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common, connection, data = _parents()
    login = sub.add_parser(
        "login",
        parents=[connection],
        help="check an API key against an endpoint and keep both as a profile",
        description="Keep an endpoint and its key as a profile (mode 600) once the key is checked. The key comes "
        "from --api-key, else GENOBASE_API_KEY, else a prompt (not echoed).",
    )
    login.set_defaults(func=commands.cmd_login)
    ls = sub.add_parser("ls", parents=[connection, data], help="list your uploads, newest first")
    ls.add_argument("--state", choices=[state.value for state in State], help="only uploads in this state")
    ls.add_argument("--name", help="only file names starting with this")
    ls.add_argument("--label", action="append", metavar="KEY=VALUE", help="only uploads with this label (repeatable)")
    ls.add_argument("--owner", help="only this owner's uploads (admin keys)")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (100; 0: all)")
    ls.set_defaults(func=commands.cmd_ls)
    status = sub.add_parser(
        "status", parents=[connection, data], help="an upload's status (status ID), or what of the stack runs (status)"
    )
    status.add_argument("id", nargs="?", help="the upload's id; without it, the stack's processes and queues")
    status.set_defaults(func=cmd_status)
    wait = sub.add_parser("wait", parents=[connection, data], help="follow an upload until it is done or failed")
    wait.add_argument("id", help="the upload's id")
    wait.add_argument("--timeout", type=float, default=3600, help="seconds (3600; then exit 5)")
    wait.set_defaults(func=commands.cmd_wait)
    get = sub.add_parser("get", parents=[connection, data], help="download a done upload's result document")
    get.add_argument("id", help="the upload's id")
    get.add_argument("-o", "--output", dest="target", metavar="FILE", help="where (default: <filename>.json here)")
    get.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    get.set_defaults(func=commands.cmd_get)
    rm = sub.add_parser("rm", parents=[connection, data], help="delete an upload: its rows, object and results")
    rm.add_argument("id", help="the upload's id")
    rm.set_defaults(func=commands.cmd_rm)
    retry = sub.add_parser(
        "retry", parents=[connection, data], help="process a failed upload again from its object (a new generation)"
    )
    retry.add_argument("id", help="the upload's id")
    retry.add_argument("--wait", action="store_true", help="wait for the result, showing progress")
    retry.add_argument("-o", "--output", metavar="FILE", help="with --wait: write the result document there")
    retry.add_argument("--force", action="store_true", help="overwrite the --output file")
    retry.add_argument("--timeout", type=float, default=3600)
    retry.set_defaults(func=commands.cmd_retry, usage_error=retry.error, validate=False)
    upload = sub.add_parser(
        "upload", parents=[connection, data], help="upload files (several in parallel) and, with --wait, follow them"
    )
    _add_sending_options(upload)
    upload.add_argument("--label", action="append", metavar="KEY=VALUE", help="label every file (repeatable)")
    upload.add_argument("--wait", action="store_true", help="wait for the results, showing progress")
    upload.add_argument(
        "-o", "--output", metavar="PATH", help="with --wait: the result document (a directory for several files)"
    )
    upload.add_argument("--force", action="store_true", help="overwrite --output files")
    upload.add_argument(
        "--circular", action="store_true", help="the sequences are circular (refget serves slices across the origin)"
    )
    upload.add_argument(
        "--validate",
        action="store_true",
        help="only check the files: parse them and report records, format and digests (or the first error with its "
        "line and column); nothing is stored and the object is removed afterwards (implies --wait)",
    )
    upload.set_defaults(func=commands.cmd_upload, usage_error=upload.error)
    validate = sub.add_parser(
        "validate", parents=[connection, data], help="check files without storing them (upload --validate)"
    )
    _add_sending_options(validate)
    validate.set_defaults(
        func=commands.cmd_upload, validate=True, wait=True, output=None, circular=False, label=None, force=False
    )
    shells = sub.add_parser("completion", parents=[common], help="print a shell completion script")
    shells.add_argument("shell", choices=completion.SHELLS)
    shells.set_defaults(func=cmd_completion)


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(completion.script(build_parser(), args.shell))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genobase",
        description=__doc__,
        epilog=USER_EPILOG + exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_user_commands(sub)
    up = sub.add_parser("up", help="bring up the stack and the services (idempotent)")
    up.add_argument(
        "--store",
        choices=["bluestore", "memstore"],
        default="bluestore",
        help="Ceph OSD back end: bluestore keeps data on disk, memstore in RAM",
    )
    up.add_argument(
        "--replicas",
        type=_replicas,
        metavar="STAGE=N,...",
        help=f"run N processes of a stage ({', '.join(stack.SCALABLE)}), e.g. parser=2,persister=2; "
        "kept for later runs (--replicas '' returns to one each)",
    )
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop what 'up' started")
    down.add_argument("--wipe", action="store_true", help="also delete the Ceph cluster's data")
    down.set_defaults(func=cmd_down)
    lookup = sub.add_parser("lookup", help="status of an object written straight to the bucket")
    lookup.add_argument("bucket")
    lookup.add_argument("key")
    lookup.set_defaults(func=cmd_lookup)
    dead = sub.add_parser("dead-letters", help="list dead-lettered messages, or replay their uploads")
    dead.add_argument("--replay", action="store_true", help="process the failed uploads again from their objects")
    dead.set_defaults(func=cmd_dead_letters)
    keys = sub.add_parser("keys", help="API keys: create NAME [--another] [--admin] [--s3], list, revoke KEY_ID|NAME")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="make a key; prints it once, alone on the last line")
    create.add_argument("name", help="the owner's name, also its prefix in the uploads bucket")
    create.add_argument(
        "--another",
        action="store_true",
        help="another key of an owner that has keys: a rotation (its keys go on working), "
        "or an owner whose keys are all revoked reinstated, with its uploads",
    )
    create.add_argument("--admin", action="store_true", help="sees every upload")
    create.add_argument(
        "--s3", action="store_true", help="also S3 credentials that can write only under NAME/ in the uploads bucket"
    )
    keys_sub.add_parser(
        "list", help="every key: id, owner, role, creation, last use, state (never the keys themselves)"
    )
    revoke = keys_sub.add_parser(
        "revoke",
        help="KEY_ID (k_...): that key stops working at once; NAME: every key of the owner (and its S3 user) "
        "does, and its open tickets end as revoked (as they do when an owner's last key is revoked by id)",
    )
    revoke.add_argument("what", metavar="KEY_ID|NAME")
    keys.set_defaults(func=cmd_keys)
    return parser


def _check_combinations(args: argparse.Namespace) -> None:
    """What argparse cannot say alone: ``--output`` means something only with ``--wait`` (exit 2)."""
    usage_error = getattr(args, "usage_error", None)
    if usage_error is None or not getattr(args, "output", None):
        return
    if getattr(args, "validate", False):
        usage_error("--output with --validate: a validation stores no result document to write")
    if not args.wait:
        usage_error("--output needs --wait (the result document exists once the upload is done)")


def _interrupted(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C in a user command: end now, with the resume hint. Threads sending parts would
    otherwise finish every queued part first; what the store has is resumed by the next run."""
    try:
        if sys.stderr.isatty():
            sys.stderr.write("\x1b[?25h\n")  # the progress display hides the cursor
        sys.stderr.write("genobase: interrupted -- run the same command again to resume\n")
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(ExitCode.INTERRUPTED)


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code (``genobase.errors.ExitCode``). Every everyday mistake ends
    with one line on stderr and its code, never a traceback (``--debug`` shows an unexpected one's)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_combinations(args)
    user_command = getattr(args, "func", None) in USER_COMMANDS or bool(getattr(args, "id", None))
    previous = None
    if argv is None and user_command:
        previous = signal.signal(signal.SIGINT, _interrupted)
    args.quiet = getattr(args, "quiet", False)
    try:
        return int(args.func(args))
    except KeyboardInterrupt as exc:
        return _fail(args, exc)
    except Exception as exc:
        return _fail(args, exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


USER_COMMANDS = {
    commands.cmd_login,
    commands.cmd_ls,
    commands.cmd_wait,
    commands.cmd_get,
    commands.cmd_rm,
    commands.cmd_retry,
    commands.cmd_upload,
}


def _fail(args: argparse.Namespace, exc: BaseException) -> int:
    connection = getattr(args, "connection", None)
    failure = explain(
        exc,
        endpoint=connection.endpoint if connection is not None else None,
        endpoint_from=connection.endpoint_from if connection is not None else None,
        key_source=connection.key_source if connection is not None else None,
    )
    if getattr(args, "debug", False) and not isinstance(exc, KeyboardInterrupt):
        for line in "".join(traceback.format_exception(exc)).splitlines():
            console.err(line)  # an exception's text may hold a server's string
    hint = f" -- {failure.hint}" if failure.hint else ""
    console.err(f"genobase: {failure.message}{hint}")
    return int(failure.code)


if __name__ == "__main__":
    sys.exit(main())
