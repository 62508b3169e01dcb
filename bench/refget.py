"""refget read benchmark against the running stack (``genobase up``): slices and whole sequences.

Uses a 40 Mbp record already stored (the pipeline benchmark's file leaves twenty), or loads a file
with one through the pipeline first. Prints, beside each target:

* the latency of 1 kb slices from the middle of the record, 1,000 requests on one keep-alive
  connection (p50, p99) -- measured at the client, over loopback, so an upper bound of the
  server's time;
* MB/s of streaming the whole record;
* the refget service's peak RSS during the run (VmHWM, reset first).

Not a test: it asserts nothing. Its figures, with their targets, go to docs/bench/refget.json
(bench/report.py).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

import httpx
import psycopg

from bench.generate import generate
from bench.report import Figure, Target, run_name, write_figures
from genobase import stack
from shared.runtime.polling import poll_until
from shared.runtime.settings import get_settings

RUN_DIR = Path(os.environ.get("GENOBASE_HOME", ".genobase")) / "run"
LENGTH = 40_000_000
# Targets: a 1 kb slice's latency p50 and p99 (ms, at most), the whole record's stream (MB/s, at
# least), the service's peak RSS (MiB, at most).
SLICE_P50_MS, SLICE_P99_MS, STREAM_MB_S, RSS_MIB = 5.0, 20.0, 150.0, 150.0


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _stored_record(dsn: str) -> str | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT r.md5 FROM sequence_records r JOIN uploads u ON u.id = r.upload_id "
            "WHERE u.state = 'done' AND r.length >= %s LIMIT 1",
            (LENGTH,),
        ).fetchone()
    return row[0] if row else None


def _load_one(settings_key: str, base_url: str) -> None:
    path = generate(Path("/tmp/genobase-bench/one-40mbp.fasta"), big=1, big_len=LENGTH, small=0)
    http = httpx.Client(base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {settings_key}"})
    size = path.stat().st_size
    ticket = http.post("/uploads", json={"filename": path.name, "size": size}).raise_for_status().json()
    with path.open("rb") as body:
        httpx.put(
            ticket["upload_url"],
            content=body,
            headers={**ticket["upload_headers"], "Content-Length": str(size)},
            timeout=None,
        )

    def ended() -> str | None:
        state: str = http.get(f"/uploads/{ticket['id']}").raise_for_status().json()["state"]
        return state if state in ("done", "failed") else None

    state = poll_until(ended, timeout=600, interval=0.5, what="the 40 Mbp record's upload to end")
    if state != "done":
        raise SystemExit("could not load the 40 Mbp record")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    settings = get_settings()
    pid = stack.ServiceProcesses(RUN_DIR, {}).pid("refget")
    if pid is None:
        raise SystemExit("refget is not running; run 'genobase up' first")
    dsn = settings.pg_dsn.get_secret_value()
    md5 = _stored_record(dsn)
    if md5 is None:
        print("no 40 Mbp record stored yet: loading one through the pipeline")
        _load_one(settings.api_key.get_secret_value() if settings.api_key else "", settings.status_base_url)
        md5 = _stored_record(dsn)
    assert md5 is not None
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    base = f"http://{settings.refget_host}:{settings.refget_port}/sequence/{md5}"
    rng = random.Random(7)
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:  # reads need a key
        client.get(base, params={"start": 0, "end": 10}).raise_for_status()  # warm the connection and pool
        latencies = []
        for _ in range(args.requests):
            start = LENGTH // 2 + rng.randint(-5_000_000, 5_000_000)
            t = time.perf_counter()
            response = client.get(base, params={"start": start, "end": start + 1000})
            latencies.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200 and len(response.content) == 1000
        t = time.perf_counter()
        size = 0
        with client.stream("GET", base) as whole:
            for chunk in whole.iter_bytes(1024 * 1024):
                size += len(chunk)
        seconds = time.perf_counter() - t
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    rate = size / 1e6 / seconds
    peak = _peak_mib(pid)
    print(f"1 kb slices from the middle of a {size / 1e6:.0f} Mbp record, {len(latencies)} requests (client side)")
    print(f"  p50 {p50:6.2f} ms   (target <= {SLICE_P50_MS:g} ms)")
    print(f"  p99 {p99:6.2f} ms   (target <= {SLICE_P99_MS:g} ms)")
    print(
        f"whole record streamed: {size / 1e6:.0f} MB in {seconds:.2f} s = {rate:.0f} MB/s"
        f"   (target >= {STREAM_MB_S:g} MB/s)"
    )
    print(f"refget peak RSS {peak:.0f} MiB   (target <= {RSS_MIB:g} MiB)")
    slices = f"refget: 1 kb slices of a {size / 1e6:.0f} Mbp record"
    figures = [
        Figure(f"{slices}, p50", p50, "ms", Target("<=", SLICE_P50_MS)),
        Figure(f"{slices}, p99", p99, "ms", Target("<=", SLICE_P99_MS)),
        Figure(f"refget: a {size / 1e6:.0f} Mbp record streamed whole", rate, "MB/s", Target(">=", STREAM_MB_S)),
        Figure("refget: peak RSS", peak, "MiB", Target("<=", RSS_MIB)),
    ]
    write_figures(run_name("refget", str(args.requests)), figures)


if __name__ == "__main__":
    main()
