"""End-to-end benchmark against the running stack (``genobase up``): bucket event to JSON result.

``python -m bench.pipeline [--size 256m,1g,4g] [--format fasta|fastq] [--compare] [--digest]
[--shard-bytes 0,256m] [--bulk-load-settings]``

Uploads the deterministic benchmark file (bench/generate.py) as a client does (``genobase
upload``'s transfer: a multipart upload in parallel parts) and prints seconds from the bucket event
(the upload completed) to the finished result, MB/s, each stage's span (from the stage timestamps
the services record) and each service's peak RSS during the run (VmHWM of every replica, reset
before the upload through /proc/PID/clear_refs).

``--compare`` then runs the naive baseline (bench/naive.py) on the very same object, twice: with
Postgres defaults and with its sequence column stored uncompressed, and prints the ratios beside
the issue's targets. Everything runs one after the other on one stack in one invocation, so the
ratios hold whatever the day's machine speed. Not a test: it asserts nothing.

``--bulk-load-settings`` raises the server to compose's ``max_wal_size`` for the invocation and
puts it back afterwards (see ``bulk_load_server``); every invocation prints the settings it ran with.

``--shard-bytes 0,256m`` runs each file once per setting, the running parsers (``genobase up
--replicas parser=N``) restarted with that ``GENOBASE_SHARD_BYTES`` and restored afterwards, and
prints how each upload was split and which parser parsed which shard.

Its figures (seconds, the ratios against the naive chain, peak RSS, CPU, the spread of time per
GiB), with their targets, go to docs/bench/pipeline-*.json (bench/report.py).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import naive
from bench.generate import generate
from bench.report import Figure, Target, run_name, write_figures
from genobase import stack
from genobase.client import Client
from shared.postgres.migrate import BULK_LOAD_SETTINGS, settings_below_bulk_load
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings, get_settings, stack_file
from shared.s3.store import ObjectStore

RUN_DIR = Path(os.environ.get("GENOBASE_HOME", ".genobase")) / "run"
# (chromosomes of 40 Mbp, reads of 150-250 bp): the 1 GiB file of ../shared/perf-envelope.md, scaled.
SIZES = {"256m": (5, 250_000), "1g": (20, 1_000_000), "4g": (80, 4_000_000)}
# The pipeline's speed-up over each naive variant, at least (issue 13).
TARGETS = {"defaults": 2.2, "uncompressed": 1.45}
RSS_TARGET_MIB = 200.0
RSS_TARGET = Target("<=", RSS_TARGET_MIB)
NAIVE = {"defaults": "Postgres defaults", "uncompressed": "uncompressed residues"}
# Time per GiB of the sizes run in one invocation: the slowest at most this much above the fastest.
LINEARITY_TARGET = 0.15
# The longest a benchmark upload may take before the benchmark gives up on it.
UPLOAD_TIMEOUT_SECONDS = 3600


def rss_peak_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


KERNEL = "kernel:"


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far by each kind of process on this machine: the
    services by module, Postgres, RGW, RabbitMQ (``beam``) and everything else; and, under
    ``KERNEL`` + kind, the part of them spent in the kernel (system time: copies through loopback
    sockets and into files, I/O, page faults), which the servers spend much of and the services little."""
    found: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        cpu = naive.process_cpu(int(stat.parent.name))
        try:
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cpu is None:
            continue
        used, system = cpu
        if "services." in cmdline and ".main" in cmdline:
            kind = cmdline.split("services.", 1)[1].split(".main", 1)[0]
        elif cmdline.startswith("postgres"):
            kind = "postgres"
        elif "radosgw" in cmdline:
            kind = "radosgw"
        elif "ceph-osd" in cmdline or "ceph-mon" in cmdline:
            kind = "ceph osd+mon"
        elif "beam" in cmdline:
            kind = "rabbitmq"
        else:
            kind = "other"
        found[kind] = found.get(kind, 0.0) + used
        found[KERNEL + kind] = found.get(KERNEL + kind, 0.0) + system
    return found


def radosgw_pids() -> set[int]:
    """The running radosgw processes: its supervisor restarts one that crashed under a new PID."""
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(b"radosgw"):
                pids.add(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def warn_if_radosgw_restarted(before: set[int]) -> None:
    """radosgw (Ceph Pacific) segfaults now and then under concurrent PUTs; a restarted one cannot
    deliver the topic's queued notifications until the dead one's lock expires (~60-90 s), which
    lands in the pipeline's time. Say so rather than print such a run's figures as if they held."""
    if before and radosgw_pids() != before:
        print("  WARNING: radosgw restarted during this run (docs/benchmarks.md, Load): its times are not comparable")


def print_cpu(before: dict[str, float], after: dict[str, float], elapsed: float) -> float:
    """Print the CPU each kind of process used between the readings; returns the total."""
    used = {kind: after.get(kind, 0.0) - before.get(kind, 0.0) for kind in after}
    kernel = {kind.removeprefix(KERNEL): v for kind, v in used.items() if kind.startswith(KERNEL)}
    used = {kind: v for kind, v in used.items() if not kind.startswith(KERNEL)}

    def listed(seconds_by_kind: dict[str, float]) -> str:
        ordered = sorted(seconds_by_kind.items(), key=lambda i: -i[1])
        return ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in ordered if seconds >= 0.5)

    total = sum(v for v in used.values() if v > 0)
    print(f"  CPU {total:.1f} s over {elapsed:.1f} s ({total / elapsed:.2f} cores busy): {listed(used)}")
    in_kernel = sum(v for v in kernel.values() if v > 0)
    print(f"    of which in the kernel {in_kernel:.1f} s: {listed(kernel)}")
    return total


def wal_counters(settings: Settings) -> dict[str, float] | None:
    """The server's WAL and checkpoint counters (pg_stat_wal, pg_stat_bgwriter: readable by any
    role), or None where the server keeps them elsewhere (Postgres 17 moved them to
    pg_stat_checkpointer and pg_stat_io).

    Full-page images are written for every page first changed after a checkpoint, so a run that
    spans more checkpoints writes more of them per GiB: what the server's ``max_wal_size`` and the
    indexes' random inserts cost is read here rather than guessed."""
    try:
        with psycopg.connect(settings.pg_migration_dsn) as conn:
            row = conn.execute(
                "SELECT w.wal_bytes, w.wal_fpi, b.checkpoints_timed + b.checkpoints_req, b.buffers_backend"
                " FROM pg_stat_wal w, pg_stat_bgwriter b"
            ).fetchone()
    except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable):
        return None
    assert row is not None
    return dict(zip(("bytes", "fpi", "checkpoints", "backend_writes"), map(float, row), strict=True))


def as_superuser(settings: Settings, sql: str) -> list[tuple[str, ...]]:
    """Run one statement as a superuser and return its rows as ``str`` (cast booleans to text in the
    SQL, so that both ways read alike): the schema's owner where it
    is one (compose's Postgres), else the machine's postgres role (the native stack, where the
    owner is not). Decided up front: some statements (``pg_settings.sourcefile``) do not fail for
    other roles but answer less."""
    with psycopg.connect(settings.pg_migration_dsn, autocommit=True) as conn:
        if conn.execute("SELECT current_setting('is_superuser') = 'on'").fetchone() == (True,):
            cur = conn.execute(sql)
            return [tuple(map(str, row)) for row in cur.fetchall()] if cur.description else []
    out = stack.psql_as_postgres(sql)
    return [tuple(line.split("|")) for line in out.splitlines() if line]


def checkpoint(settings: Settings) -> None:
    """Start a measured run from a checkpoint: otherwise the run before it (or its cleanup, a
    DELETE and VACUUM of a million rows, ~1.5 GB of WAL per GiB) leaves dirty buffers and a
    checkpoint due, and the next run pays for them -- the bigger the run before, the more.
    CHECKPOINT needs a superuser or pg_checkpoint: the schema's owner is one in compose's
    Postgres; on the native stack the machine's postgres role runs it."""
    try:
        as_superuser(settings, "CHECKPOINT")
    except (OSError, subprocess.CalledProcessError):
        print("  (no checkpoint before this run: the benchmark's role may not run CHECKPOINT here)")


def server_settings(settings: Settings) -> str:
    """The server settings that decide the cost per GiB of large uploads, as the server shows them."""
    with psycopg.connect(settings.pg_migration_dsn) as conn:
        rows = conn.execute(
            "SELECT name, current_setting(name) FROM unnest(%s::text[]) WITH ORDINALITY AS s(name, n) ORDER BY n",
            (list(BULK_LOAD_SETTINGS),),
        ).fetchall()
    return ", ".join(f"{name} {value}" for name, value in rows)


@contextlib.contextmanager
def bulk_load_server(settings: Settings, enabled: bool) -> Iterator[None]:
    """``--bulk-load-settings``: run with the server raised to compose's ``BULK_LOAD_SETTINGS``
    where that takes no restart, and put it back afterwards.

    compose's Postgres starts with them; the machine's server (the native stack's) has its own,
    lower ones, and the benchmark measures the pipeline, not that server's configuration. Settings
    of context ``sighup`` (``max_wal_size``) are set by ``ALTER SYSTEM`` and a reload; those that
    need a restart (``shared_buffers``) are left as they are and said so: the benchmark never
    restarts a server it does not own. A value that was already in ``postgresql.auto.conf`` is
    set back to it, any other is reset, so the server ends as it began, also when the benchmark
    is stopped by SIGINT or SIGTERM (after a SIGKILL, ``ALTER SYSTEM RESET max_wal_size`` does)."""
    if not enabled:
        yield
        return
    before = server_settings(settings)
    below = settings_below_bulk_load(settings)
    try:
        rows = as_superuser(
            settings,
            "SELECT name, context, setting || coalesce(unit, ''),"
            " (coalesce(sourcefile, '') LIKE '%postgresql.auto.conf')::text"
            f" FROM pg_settings WHERE name IN ({', '.join(repr(n) for n in below) or 'NULL'})",
        )
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(
            "--bulk-load-settings needs a superuser: the schema's owner is none here, and the machine's postgres"
            " role could not be reached (psql as postgres over the local socket)"
        ) from None
    raised: dict[str, str | None] = {}  # name -> the auto.conf value to restore, None to reset
    for name, context, value, from_auto_conf in rows:
        if context != "sighup":
            print(f"  ({name} stays {below[name]}: raising it takes a server restart, which the benchmark does not do)")
            continue
        raised[name] = value if from_auto_conf == "true" else None
    try:
        for name in raised:
            as_superuser(settings, f"ALTER SYSTEM SET {name} = '{BULK_LOAD_SETTINGS[name]}'")
        if raised:
            _reload_until(settings, lambda: not set(raised) & set(settings_below_bulk_load(settings)))
            print(f"  (raised for this benchmark: {', '.join(f'{n} {BULK_LOAD_SETTINGS[n]}' for n in raised)})")
        yield
    finally:
        for name, previous in raised.items():
            if previous is None:
                as_superuser(settings, f"ALTER SYSTEM RESET {name}")
            else:
                as_superuser(settings, f"ALTER SYSTEM SET {name} = '{previous}'")
        if raised:
            _reload_until(settings, lambda: server_settings(settings) == before)
            print(f"  (server settings back: {before})")


def _reload_until(settings: Settings, done: Callable[[], bool], timeout: float = 10.0) -> None:
    """Reload the server's configuration and wait until new sessions see it (a reload is a signal)."""
    as_superuser(settings, "SELECT pg_reload_conf()")
    poll_until(done, timeout=timeout, interval=0.1, what="the server to take the reloaded settings")


def buffer_misses(settings: Settings) -> dict[str, float]:
    """Blocks each table (with its TOAST) and each index had to read into shared buffers, from
    pg_statio_user_tables and pg_statio_user_indexes (readable by any role).

    A relation that outgrows the buffers shows here first: the content indexes take one random
    insert per record each, so once they no longer fit every insert may miss, and the misses grow
    faster than the records (measured: ~9 k per hash index at 1 GiB, ~760 k at 4 GiB). Each miss
    evicts a buffer, and a dirty one is written by the backend itself. Backends report their
    counts within about a second of a transaction's end, so a run's last second may be missing."""
    with psycopg.connect(settings.pg_migration_dsn) as conn:
        rows = conn.execute(
            "SELECT relname, heap_blks_read + coalesce(toast_blks_read, 0) + coalesce(tidx_blks_read, 0)"
            " FROM pg_statio_user_tables"
            " UNION ALL SELECT indexrelname, idx_blks_read FROM pg_statio_user_indexes"
        ).fetchall()
    return {name: float(blocks or 0) for name, blocks in rows}


def print_misses(before: dict[str, float], after: dict[str, float], size: int) -> None:
    grown = sorted(((after[n] - before.get(n, 0.0), n) for n in after), reverse=True)[:5]
    per_gib = (1 << 30) / size
    listed = ", ".join(f"{n} {d / 1e3:.0f} k ({d * per_gib / 1e3:.0f} k per GiB)" for d, n in grown if d >= 1000)
    print(f"  buffer misses (blocks read into shared buffers): {listed or 'none over 1 k'}")


def print_wal(before: dict[str, float] | None, after: dict[str, float] | None) -> None:
    if before is None or after is None:
        return
    d = {k: after[k] - before[k] for k in after}
    print(
        f"  WAL {d['bytes'] / 1e6:.0f} MB, {d['fpi']:.0f} full-page images, {d['checkpoints']:.0f} checkpoints,"
        f" {d['backend_writes']:.0f} buffers written by backends"
    )


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def records_digest(store: ObjectStore, bucket: str, key: str) -> str:
    """SHA-256 of the result document's records array, from ``"records":[`` to its closing ``]``.

    The head names the upload and the trailer holds the run's times, so both are left out: two
    versions of the code that write the same records, field for field and in the same order, give
    the same digest for the same input. Records are one line each, so the array ends at the first
    newline followed by ``]`` (a newline inside a record is escaped).
    """
    digest = hashlib.sha256()
    opening, closing = b'"records":[', b"\n]"
    started = False
    tail = b""  # the end of the previous piece, for a marker split across two pieces
    for piece in store.client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(8 * 1024 * 1024):
        if not started:
            piece = tail + piece
            at = piece.find(opening)
            if at < 0:
                tail = piece[-len(opening) :]
                continue
            piece, started, tail = piece[at:], True, b""
        joined = tail + piece
        end = joined.find(closing)
        if end >= 0:
            digest.update(joined[len(tail) : end + len(closing)])
            return digest.hexdigest()
        digest.update(piece)
        tail = joined[-(len(closing) - 1) :]
    raise ValueError(f"s3://{bucket}/{key}: no complete records array")


def bench_file(size: str, fmt: str) -> Path:
    big, small = SIZES[size]
    fasta = generate(Path(f"/tmp/genobase-bench/bench-{size}.fasta"), big=big, small=small)
    if fmt == "fasta":
        return fasta
    from bench.parse import siblings

    return siblings(fasta)["fastq"]


def run_pipeline(settings: Settings, path: Path, digest: bool) -> dict[str, Any]:
    """One upload through the running services; returns its figures and where its object is."""
    processes = stack.ServiceProcesses(RUN_DIR, {})
    pids = {name: processes.pid(name) for name in processes.running_instances()}
    missing = [name for name in stack.SERVICES if processes.pid(name) is None]
    if missing:
        raise SystemExit(f"services not running: {missing}; run 'genobase up' first")
    for pid in pids.values():
        assert pid is not None
        reset_peak(pid)
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    size = path.stat().st_size
    with (
        httpx.Client(base_url=settings.status_base_url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as http,
        tempfile.TemporaryDirectory() as home,
    ):
        checkpoint(settings)
        rgw_before = radosgw_pids()
        t_put = time.monotonic()
        with Client(settings.status_base_url, key or None, state_dir=Path(home)) as client:
            uploaded = client.upload(path, parallel=4)
        method = "multipart" if size > settings.multipart_threshold_bytes else "PUT"
        ticket = {"id": str(uploaded.id), "upload_method": method, "bucket": uploaded.bucket, "key": uploaded.key}
        t_event = time.monotonic()  # the object exists: the store raises its event now
        cpu_before = cpu_seconds()
        wal_before = wal_counters(settings)
        misses_before = buffer_misses(settings)
        print(f"upload ({ticket['upload_method']}) {t_event - t_put:.1f} s")
        peaks = dict.fromkeys(pids, 0.0)

        def ended() -> dict[str, Any] | None:
            seen: dict[str, Any] = http.get(f"/uploads/{ticket['id']}").json()
            for name, pid in pids.items():
                assert pid is not None
                peaks[name] = max(peaks[name], rss_peak_mib(pid))
            return seen if seen["state"] in ("done", "failed") else None

        # Every quarter of a second, as a client polls; the bench's polls are the intake's only work.
        status = poll_until(ended, timeout=UPLOAD_TIMEOUT_SECONDS, interval=0.25, what=f"upload {ticket['id']} to end")
    elapsed = time.monotonic() - t_event
    cpu_after = cpu_seconds()
    wal_after = wal_counters(settings)
    misses_after = buffer_misses(settings)
    if status["state"] == "failed":
        raise SystemExit(f"upload failed: {status['error']}")
    store = ObjectStore(settings)
    times = {k: datetime.fromisoformat(v) for k, v in status["times"].items() if v}
    head = store.head(settings.results_bucket, status["result"]["key"])
    print(f"records {status['result']['records']}, result {head['ContentLength'] / 1e6:.0f} MB")
    print(f"pipeline: bucket event -> result complete {elapsed:.1f} s ({size / 1e6 / elapsed:.1f} MB/s of input)")
    stages = [
        ("parse (first range .. last batch published)", "parsing_started_at", "parsed_at"),
        ("assemble (started .. result written)", "assembly_started_at", "finished_at"),
        ("after the parse (last batch .. result written)", "parsed_at", "finished_at"),
    ]
    for label, start, end in stages:
        if start in times and end in times:
            print(f"  {label:<50} {(times[end] - times[start]).total_seconds():6.1f} s")
    cpu = print_cpu(cpu_before, cpu_after, elapsed)
    print_wal(wal_before, wal_after)
    print_misses(misses_before, misses_after, size)
    warn_if_radosgw_restarted(rgw_before)
    print_shards(settings, ticket["id"])
    for name, peak in peaks.items():
        mark = "" if peak <= RSS_TARGET_MIB else f"   ABOVE the {RSS_TARGET_MIB:.0f} MiB target"
        print(f"  peak RSS {name:<12} {peak:7.1f} MiB{mark}")
    if digest:
        print(f"records digest  {records_digest(store, settings.results_bucket, status['result']['key'])}")
    store.client.delete_object(Bucket=settings.results_bucket, Key=status["result"]["key"])
    return {
        "id": ticket["id"],
        "seconds": elapsed,
        "cpu": cpu,
        "bucket": ticket["bucket"],
        "key": ticket["key"],
        "peaks": peaks,
    }


def _logged_since(log: Path, since: int, line: bytes) -> bool:
    """Whether ``line`` appears in the log after its first ``since`` bytes."""
    return line in log.read_bytes()[since:]


def parser_names(processes: stack.ServiceProcesses) -> list[str]:
    return [name for name in processes.running_instances() if stack.split_instance(name)[0] == "parser"]


@contextlib.contextmanager
def sharding_parsers(shard_bytes: int | None) -> Iterator[None]:
    """The running parsers restarted with ``GENOBASE_SHARD_BYTES`` for the block, then as before."""
    if shard_bytes is None:
        yield
        return
    processes = stack.ServiceProcesses(RUN_DIR, stack.read_env_file(stack_file()))
    names = parser_names(processes)

    def restart(extra: dict[str, str] | None) -> None:
        for name in names:
            processes.stop(name)
            log = processes.log_file(name)
            since = log.stat().st_size if log.exists() else 0
            processes.start(name, extra)
            poll_until(
                functools.partial(_logged_since, log, since, b'"event": "consuming"'),
                timeout=60,
                interval=0.2,
                what=f"{name} to start consuming",
            )

    restart({"GENOBASE_SHARD_BYTES": str(shard_bytes)})
    split = f"split FASTA files above {shard_bytes / 2**20:.0f} MiB" if shard_bytes else "parse every file whole"
    print(f"parsers {', '.join(names)} {split}")
    try:
        yield
    finally:
        restart(None)


def print_shards(settings: Settings, upload_id: str) -> None:
    """How the upload was split, and which parser process parsed each shard (from their logs)."""
    with psycopg.connect(settings.pg_migration_dsn) as conn:
        shards = conn.execute("SELECT count(*) FROM upload_shards WHERE upload_id = %s", (upload_id,)).fetchone()
    if not shards or not shards[0]:
        print("  parsed whole (no shards)")
        return
    processes = stack.ServiceProcesses(RUN_DIR, {})
    by: dict[str, int] = {}
    for name in parser_names(processes):
        for line in processes.log_file(name).read_bytes().splitlines():
            if upload_id.encode() in line and b'"event": "parsed"' in line:
                by[name] = by.get(name, 0) + 1
            if upload_id.encode() in line and b'"event": "shards planned"' in line:
                print(f"  planned by {name}: {line.decode()[:200]}")
    print(f"  {shards[0]} shards, parsed by " + ", ".join(f"{name} {n}" for name, n in sorted(by.items())))


def run_naive(
    settings: Settings, bucket: str, key: str, size: int, fastq: bool, compressed: bool
) -> tuple[float, float]:
    """The naive chain on the pipeline's object; returns its seconds and the CPU seconds used meanwhile."""
    store = ObjectStore(settings)
    reset_peak(os.getpid())
    checkpoint(settings)
    rgw_before = radosgw_pids()
    cpu_before = cpu_seconds()
    wal_before = wal_counters(settings)
    times = naive.run(
        store, settings.pg_migration_dsn, bucket, key, size, settings.results_bucket, fastq=fastq, compressed=compressed
    )
    steps = ", ".join(f"{step} {seconds:.1f}" for step, seconds in sorted(times.steps.items(), key=lambda i: -i[1]))
    label = "defaults (pglz)" if compressed else "uncompressed (STORAGE EXTERNAL)"
    print(f"naive chain, {label}: {times.total:.1f} s ({size / 1e6 / times.total:.1f} MB/s) [{steps}]")
    cpu_after = cpu_seconds()
    # The chain's own process is "other"; its Postgres backend exited with its connection, so its
    # CPU is added from the reading the chain took before closing (see NaiveTimes.backend_cpu).
    if times.backend_cpu is not None:
        used, in_kernel = times.backend_cpu
        cpu_after["postgres"] = cpu_after.get("postgres", 0.0) + used
        cpu_after[KERNEL + "postgres"] = cpu_after.get(KERNEL + "postgres", 0.0) + in_kernel
    cpu = print_cpu(cpu_before, cpu_after, times.total)
    print_wal(wal_before, wal_counters(settings))
    warn_if_radosgw_restarted(rgw_before)
    rss = rss_peak_mib(os.getpid())
    print(f"  records {times.records}, result {times.result_bytes / 1e6:.0f} MB, peak RSS {rss:.0f} MiB")
    return times.total, cpu


def print_cpu_bound(variant: str, naive_seconds: float, naive_cpu: float, pipeline_cpu: float) -> None:
    """What the machine's cores allow: the naive chain is one loop, but its Postgres backend, RGW and
    Ceph work beside it, so it keeps more than one core busy; a pipeline that used as much CPU as it
    could be at most (cores / cores the chain kept busy) faster, with every core busy throughout.
    The target's time, times the cores, is the most CPU the pipeline may use to meet it."""
    cores = os.cpu_count() or 1
    busy = naive_cpu / naive_seconds
    allowed = naive_seconds / TARGETS[variant] * cores
    print(
        f"    the naive chain kept {busy:.2f} cores busy: with as much CPU, {cores} cores make a pipeline at"
        f" most {cores / busy:.2f}x faster; {TARGETS[variant]}x allows at most {allowed:.1f} s of CPU with"
        f" every core busy throughout (the pipeline used {pipeline_cpu:.1f} s, the naive chain {naive_cpu:.1f} s)"
    )


def _shard_settings(text: str) -> list[int | None]:
    try:
        return [int(item.strip().removesuffix("m")) * 2**20 for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"shard sizes are 0 or MiB like 256m, comma-separated, not {text!r}") from None


def _sizes(text: str) -> list[str]:
    sizes = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in sizes if item not in SIZES]
    if unknown or not sizes:
        raise argparse.ArgumentTypeError(f"sizes are {', '.join(SIZES)} (comma-separated), not {text!r}")
    return sizes


def run_one(
    settings: Settings,
    size_name: str,
    fmt: str,
    compare: bool,
    digest: bool,
    shard_settings: list[int | None],
    figures: list[Figure],
) -> tuple[int, float]:
    """One benchmark file through the pipeline (once per shard setting) and the naive chain;
    returns (bytes, seconds of the first pipeline run) and adds its figures to ``figures``."""
    t = time.monotonic()
    path = bench_file(size_name, fmt)
    size = path.stat().st_size
    print(f"input {path} ({size / 1e6:.0f} MB, ready in {time.monotonic() - t:.1f} s)")
    results = []
    try:
        for shard_bytes in shard_settings:
            with sharding_parsers(shard_bytes):
                results.append((shard_bytes, run_pipeline(settings, path, digest)))
        for shard_bytes, result in results:
            label = _label(size_name, fmt, shard_bytes)
            figures.append(Figure(f"{label}: bucket event -> result", result["seconds"], "s"))
            figures.append(Figure(f"{label}: CPU of every process over the run", result["cpu"], "s"))
            figures.append(
                Figure(f"{label}: highest service peak RSS", max(result["peaks"].values()), "MiB", RSS_TARGET)
            )
        if compare:
            fastq = fmt == "fastq"
            last = results[-1][1]
            naive = {
                "defaults": run_naive(settings, last["bucket"], last["key"], size, fastq, compressed=True),
                "uncompressed": run_naive(settings, last["bucket"], last["key"], size, fastq, compressed=False),
            }
            for variant, (seconds, _) in naive.items():
                figures.append(Figure(f"{_label(size_name, fmt, None)}: naive chain, {NAIVE[variant]}", seconds, "s"))
            for shard_bytes, result in results:
                how = "whole" if not shard_bytes else f"shards of {shard_bytes / 2**20:.0f} MiB"
                print(
                    f"pipeline ({how}) {result['seconds']:.1f} s; speed-up over the naive chain (one run, one stack):"
                )
                for variant, (seconds, cpu) in naive.items():
                    ratio = seconds / result["seconds"]
                    verdict = "meets" if ratio >= TARGETS[variant] else "BELOW"
                    print(f"  vs {variant:<13} {ratio:5.2f}x   target >= {TARGETS[variant]}x  ({verdict})")
                    print_cpu_bound(variant, seconds, cpu, result["cpu"])
                    figures.append(
                        Figure(
                            f"{_label(size_name, fmt, shard_bytes)}: speed-up over the naive chain, {NAIVE[variant]}",
                            result["seconds"],
                            "s",
                            Target(">=", TARGETS[variant], of="ratio"),
                            ratio=ratio,
                            baseline=f"the naive chain's {seconds:.1f} s",
                        )
                    )
    finally:
        # Leave no gigabytes behind: repeated runs would otherwise fill the OSD and the database.
        tables = ("sequence_parts", "sequence_records", "upload_shards", "upload_batches")
        for _, result in results:
            ObjectStore(settings).client.delete_object(Bucket=result["bucket"], Key=result["key"])
            with psycopg.connect(settings.pg_migration_dsn) as conn:
                for table in tables:
                    conn.execute(f"DELETE FROM {table} WHERE upload_id = %s", (result["id"],))
        # Without autovacuum (this machine's Postgres runs without it) the next run would insert
        # beside a million dead rows per run before it. VACUUM empties the indexes' pages but keeps
        # them: a hash index keeps the buckets a 4 GiB run split it into (162 MB for the ~60,000
        # rows left), and the next 1 GiB run's inserts, spread over them, cost Postgres 13.5 s of
        # CPU instead of 10.3-10.9 s. Rebuilt, each run starts from the indexes of what is stored.
        with psycopg.connect(settings.pg_migration_dsn, autocommit=True) as conn:
            conn.execute(f"VACUUM (ANALYZE) {', '.join(tables)}, uploads")
            for table in ("sequence_records", "sequence_parts"):
                conn.execute(f"REINDEX TABLE CONCURRENTLY {table}")
    return size, float(results[0][1]["seconds"])


def _label(size_name: str, fmt: str, shard_bytes: int | None) -> str:
    """A figure's name: the file and, where the parsers were told, how it was split."""
    split = "" if shard_bytes is None else (", whole" if not shard_bytes else f", shards of {shard_bytes // 2**20} MiB")
    size = size_name[:-1] + (" MiB" if size_name.endswith("m") else " GiB")
    return f"pipeline {size} {fmt.upper()}{split}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--size", type=_sizes, default=["1g"], help="one or more of 256m,1g,4g; several: the linearity figure"
    )
    parser.add_argument("--format", choices=["fasta", "fastq"], default="fasta")
    parser.add_argument("--compare", action="store_true", help="also run the naive chain, both variants")
    parser.add_argument(
        "--digest", action="store_true", help="print a SHA-256 of the result's records (compare two versions)"
    )
    parser.add_argument(
        "--shard-bytes",
        type=_shard_settings,
        default=[None],
        help="0 or MiB (e.g. 0,256m): run each file once per setting, the running parsers restarted to "
        "split large FASTA files into shards of that size (0: never); without it, as the stack is configured",
    )
    parser.add_argument(
        "--bulk-load-settings",
        action="store_true",
        help="raise the server to compose's Postgres settings for the benchmark where no restart is needed "
        "(max_wal_size, by ALTER SYSTEM and a reload) and put it back afterwards",
    )
    args = parser.parse_args()
    # A background job started by a script ignores SIGINT: let ``kill`` (SIGTERM) end the benchmark
    # through its ``finally`` blocks too, which remove the finished runs' objects and rows and put
    # the server's settings back. (An upload in flight is left to the pipeline to finish.)
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    settings = get_settings()
    figures: list[Figure] = []
    with bulk_load_server(settings, args.bulk_load_settings):
        print(f"Postgres: {server_settings(settings)}")
        runs = [
            run_one(settings, name, args.format, args.compare, args.digest, args.shard_bytes, figures)
            for name in args.size
        ]
    if len(runs) > 1:
        per_gib = [seconds / (size / 1024**3) for size, seconds in runs]
        spread = max(per_gib) / min(per_gib) - 1
        verdict = "meets" if spread <= LINEARITY_TARGET else "ABOVE"
        print("time per GiB: " + ", ".join(f"{n} {v:.1f} s" for n, v in zip(args.size, per_gib, strict=True)))
        print(f"  spread {spread * 100:.1f} %   target <= {LINEARITY_TARGET * 100:.0f} %  ({verdict})")
        sizes = ", ".join(args.size)
        figures.append(
            Figure(
                f"pipeline {args.format.upper()} time per GiB at {sizes}: spread",
                spread * 100,
                "%",
                Target("<=", LINEARITY_TARGET * 100),
            )
        )
    settings_name = "bulk-load-settings" if args.bulk_load_settings else ""
    shards = ",".join("as-configured" if s is None else str(s // 2**20) for s in args.shard_bytes)
    compare = "compare" if args.compare else ""
    variant = (args.format, ",".join(args.size), compare, settings_name, shards)
    write_figures(run_name("pipeline", *variant), figures)


if __name__ == "__main__":
    main()
