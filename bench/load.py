"""Load against the running stack (``genobase up [--replicas ...]``): N uploads from M clients.

``python -m bench.load [--uploads 200] [--clients 8] [--max-bytes 1000000] [--fixed-bytes N]``

Each client registers an upload, PUTs it through its presigned URL, then polls its status until it
ends, and takes the next one (a closed loop: M uploads in flight). The workload is
``bench/workload.py``'s mix: FASTA, FASTQ and CSV, plain and gzip, a few KB to ``--max-bytes``, one
in ten invalid. Prints uploads per minute, latency from the bucket event (the PUT's answer) to the
end percentiles, outcomes against expectations, and every service process's peak RSS.

The small-file figure of issue 13 is ``--uploads 100 --clients 1 --fixed-bytes 1000000``: 100
sequential 1 MB FASTA uploads. Not a test: it asserts nothing (the fault suite's load test does).
Its figures, with their targets, go to docs/bench/load-*.json (bench/report.py).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx

from bench.report import Figure, Target, run_name, write_figures
from bench.workload import Job, jobs
from shared.runtime.polling import StillWaiting, poll_until

POLL_SECONDS = 0.05
# Event -> end of one 1 MB upload over sequential ones (``--fixed-bytes``), at most.
SMALL_FILE_TARGETS = {50: 1.0, 95: 2.0}
RSS_TARGET_MIB = 200.0


@dataclass
class Outcome:
    job: Job
    upload_id: str
    latency: float  # seconds from the PUT's answer to the status showing the end
    status: dict[str, Any]

    @property
    def pipeline_seconds(self) -> float | None:
        times = self.status.get("times") or {}
        start = times.get("parsing_started_at")
        end = times.get("finished_at") or (self.status.get("updated_at") if self.status["state"] == "failed" else None)
        if not start or not end:
            return None
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()

    @property
    def as_expected(self) -> bool:
        if self.job.valid:
            return bool(self.status["state"] == "done" and self.status["format"] == self.job.fmt)
        error = self.status.get("error") or {}
        return self.status["state"] == "failed" and (error.get("line"), error.get("column")) == self.job.error_at


def submit_and_wait(http: httpx.Client, job: Job, timeout: float = 300) -> Outcome:
    """One upload as a client does it. A PUT that fails on the network is sent again (as
    ``genobase upload`` does); an upload that never ends within ``timeout`` is an outcome too."""
    response = http.post("/uploads", json={"filename": job.filename, "size": len(job.data)})
    response.raise_for_status()
    ticket = response.json()
    for attempt in range(5):
        try:
            httpx.put(
                ticket["upload_url"], content=job.data, headers=ticket["upload_headers"], timeout=120
            ).raise_for_status()
            break
        except httpx.TransportError:
            if attempt == 4:
                raise
            time.sleep(2**attempt)
    event = time.monotonic()

    def status() -> dict[str, Any]:
        answer: dict[str, Any] = http.get(f"/uploads/{ticket['id']}").raise_for_status().json()
        return answer

    def ended() -> dict[str, Any] | None:
        seen = status()
        return seen if seen["state"] in ("done", "failed") else None

    try:
        last = poll_until(ended, timeout=timeout, interval=POLL_SECONDS, what=f"upload {ticket['id']} to end")
    except StillWaiting:
        last = status()  # not ended: an outcome all the same, counted as not as expected
    return Outcome(job, ticket["id"], time.monotonic() - event, last)


def run(make_client: Callable[[], httpx.Client], work: list[Job], clients: int) -> tuple[list[Outcome], float]:
    """Every job through the pipeline from ``clients`` threads; returns the outcomes (in job order)
    and the wall time."""
    local = threading.local()

    def one(job: Job) -> Outcome:
        if not hasattr(local, "http"):
            local.http = make_client()
        return submit_and_wait(local.http, job)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        outcomes = list(pool.map(one, work))
    return outcomes, time.monotonic() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def report(outcomes: list[Outcome], wall: float) -> list[Figure]:
    latencies = [o.latency for o in outcomes]
    total_bytes = sum(len(o.job.data) for o in outcomes)
    states = Counter(o.status["state"] for o in outcomes)
    unexpected = [o for o in outcomes if not o.as_expected]
    rate = len(outcomes) / wall * 60
    print(f"{len(outcomes)} uploads ({total_bytes / 1e6:.1f} MB) in {wall:.1f} s: {rate:.0f} per minute")
    print(f"  outcomes {dict(states)}; not as expected: {len(unexpected)}")
    for o in unexpected[:5]:
        print(f"    {o.job.filename}: {o.status['state']} {o.status.get('error')}")
    print(
        f"  event -> end: p50 {statistics.median(latencies):.2f} s, p95 {percentile(latencies, 95):.2f} s, "
        f"p99 {percentile(latencies, 99):.2f} s, max {max(latencies):.2f} s"
    )
    # The same split by the stage times the services record: the store's notification delay (PUT
    # answered -> the parser starts) apart from the pipeline's own work (parser starts -> done).
    work = [o.pipeline_seconds for o in outcomes if o.pipeline_seconds is not None]
    if work:
        print(
            f"  of which the pipeline (parse started -> end): p50 {statistics.median(work):.2f} s, "
            f"p95 {percentile(work, 95):.2f} s, p99 {percentile(work, 99):.2f} s, max {max(work):.2f} s"
        )
    figures = [
        Figure("uploads per minute", rate, "per minute"),
        Figure("uploads not ending as expected", len(unexpected), "uploads", Target("<=", 0)),
        *(Figure(f"event -> end, p{q}", percentile(latencies, q), "s") for q in (50, 95, 99)),
    ]
    if work:
        figures += [Figure(f"parse started -> end, p{q}", percentile(work, q), "s") for q in (50, 95, 99)]
    return figures


def main() -> None:
    from bench.pipeline import RUN_DIR, reset_peak, rss_peak_mib
    from genobase import stack
    from shared.runtime.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-bytes", type=int, default=1_000_000)
    parser.add_argument("--fixed-bytes", type=int, help="plain FASTA uploads of exactly this size")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    work = jobs(args.uploads, args.seed, args.max_bytes, args.fixed_bytes)
    settings = get_settings()
    processes = stack.ServiceProcesses(RUN_DIR, {})
    pids = {name: processes.pid(name) for name in processes.running_instances()}
    for pid in pids.values():
        if pid is not None:
            reset_peak(pid)
    key = settings.api_key.get_secret_value() if settings.api_key else ""

    def make_client() -> httpx.Client:
        return httpx.Client(base_url=settings.status_base_url, timeout=60, headers={"Authorization": f"Bearer {key}"})

    outcomes, wall = run(make_client, work, args.clients)
    figures = report(outcomes, wall)
    if args.fixed_bytes:
        latencies = [o.latency for o in outcomes]
        p50, p95 = statistics.median(latencies), percentile(latencies, 95)
        print(f"  small files: p50 {p50:.2f} s (target <= 1 s), p95 {p95:.2f} s (target <= 2 s)")
        targets = {f"event -> end, p{q}": Target("<=", bound) for q, bound in SMALL_FILE_TARGETS.items()}
        figures = [replace(figure, target=targets.get(figure.name, figure.target)) for figure in figures]
    for name, pid in pids.items():
        if pid is not None:
            peak = rss_peak_mib(pid)
            print(f"  peak RSS {name:<12} {peak:7.1f} MiB")
            figures.append(Figure(f"peak RSS {name}", peak, "MiB", Target("<=", RSS_TARGET_MIB)))
    # The figures' names say which load they are under: a small-file run does not replace the mixed one's.
    kind = f"{args.fixed_bytes:,} B FASTA" if args.fixed_bytes else f"mixed up to {args.max_bytes:,} B"
    scope = f"load ({args.uploads} uploads, {args.clients} clients, {kind})"
    figures = [replace(figure, name=f"{scope}: {figure.name}") for figure in figures]
    write_figures(run_name("load", str(args.uploads), str(args.clients), str(args.fixed_bytes or "mixed")), figures)


if __name__ == "__main__":
    main()
