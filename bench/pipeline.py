"""End-to-end benchmark against the running stack (``genobase up``): one ~1 GiB FASTA, bucket to JSON.

Prints seconds from the bucket event to the finished result, MB/s, each stage's time (from the
stage timestamps the services record) and each service's peak RSS during the run (VmHWM, reset
before the upload through /proc/PID/clear_refs). Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench.generate import generate
from genobase import stack
from shared.settings import get_settings
from shared.storage import ObjectStore

RUN_DIR = Path(os.environ.get("GENOBASE_HOME", ".genobase")) / "run"


def _rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def records_digest(store: ObjectStore, bucket: str, key: str) -> str:
    """SHA-256 of the result document's bytes from its records array on (the head names the upload).

    Two versions of the code that write the same records, field for field and in the same order,
    give the same digest for the same input.
    """
    digest = hashlib.sha256()
    started = False
    for piece in store.client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(8 * 1024 * 1024):
        if not started:
            at = piece.find(b'"records":[')
            if at < 0:
                continue
            piece, started = piece[at:], True
        digest.update(piece)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", type=Path, default=Path("/tmp/genobase-bench/bench-1g.fasta"))
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=20)
    parser.add_argument(
        "--digest", action="store_true", help="print a SHA-256 of the result's records (compare two versions)"
    )
    args = parser.parse_args()
    args.file.parent.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    path = generate(args.file, big=args.big, small=args.small)
    size = path.stat().st_size
    print(f"input {path} ({size / 1e6:.0f} MB, ready in {time.monotonic() - t:.1f} s)")

    settings = get_settings()
    processes = stack.ServiceProcesses(RUN_DIR, {})
    pids = {name: processes.pid(name) for name in stack.SERVICES}
    missing = [name for name, pid in pids.items() if pid is None]
    if missing:
        raise SystemExit(f"services not running: {missing}; run 'genobase up' first")
    for pid in pids.values():
        assert pid is not None
        _reset_peak(pid)

    key = settings.api_key.get_secret_value() if settings.api_key else ""
    http = httpx.Client(base_url=settings.status_base_url, timeout=60, headers={"Authorization": f"Bearer {key}"})
    ticket = http.post("/uploads", json={"filename": path.name, "size": size}).raise_for_status().json()
    store = ObjectStore(settings)
    t_put = time.monotonic()
    with path.open("rb") as body:
        httpx.put(ticket["upload_url"], content=body, headers={"Content-Length": str(size)}, timeout=None)
    t_event = time.monotonic()  # the object exists: the store raises its event now
    print(f"upload (PUT) {t_event - t_put:.1f} s")
    peaks = {name: 0.0 for name in pids}
    while True:
        status = http.get(f"/uploads/{ticket['id']}").json()
        for name, pid in pids.items():
            assert pid is not None
            peaks[name] = max(peaks[name], _rss_peak_mib(pid))
        if status["state"] in ("done", "failed"):
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - t_event
    if status["state"] == "failed":
        raise SystemExit(f"upload failed: {status['error']}")
    times = {k: datetime.fromisoformat(v) for k, v in status["times"].items() if v}
    head = store.head(settings.results_bucket, status["result"]["key"])
    print(f"records {status['result']['records']}, result {head['ContentLength'] / 1e6:.0f} MB")
    print(f"bucket event -> result complete: {elapsed:.1f} s ({size / 1e6 / elapsed:.1f} MB/s of input)")
    stages = [
        ("parse (first range .. last batch published)", "parsing_started_at", "parsed_at"),
        ("persist tail (parse end .. last batch committed)", "parsed_at", "assembly_started_at"),
        ("assemble (rows -> JSON -> multipart)", "assembly_started_at", "finished_at"),
    ]
    for label, start, end in stages:
        print(f"  {label:<50} {(times[end] - times[start]).total_seconds():6.1f} s")
    for name, peak in peaks.items():
        print(f"  peak RSS {name:<10} {peak:7.1f} MiB")
    if args.digest:
        print(f"records digest  {records_digest(store, settings.results_bucket, status['result']['key'])}")
    # Leave no gigabytes behind: repeated runs would otherwise fill the OSD.
    store.client.delete_object(Bucket=ticket["bucket"], Key=ticket["key"])
    store.client.delete_object(Bucket=settings.results_bucket, Key=status["result"]["key"])


if __name__ == "__main__":
    main()
