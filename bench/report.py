"""Benchmark figures as data: each benchmark writes what it measured to ``docs/bench/<run>.json``.

A run's file holds the latest invocation of that benchmark with those arguments: when (UTC), on
what machine (cores, memory, CPU, Python), the command line, and each figure with its unit, its
target and whether it met it, and, where the benchmark measures a baseline in the same invocation
(the naive chain, Biopython, the smallest size), the ratio against it. Only ratios within one
invocation are worth comparing on these shared machines: their speed moves by up to 2x from day
to day. ``python -m bench.table`` turns the files into the table of docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

FIGURES_DIR = Path(__file__).resolve().parent.parent / "docs" / "bench"


@dataclass(frozen=True)
class Target:
    """A figure's target: its value (or its ratio against the baseline) at least or at most ``bound``."""

    op: Literal[">=", "<="]
    bound: float
    of: Literal["value", "ratio"] = "value"

    def met(self, figure: Figure) -> bool | None:
        measured = figure.ratio if self.of == "ratio" else figure.value
        if measured is None:
            return None
        return measured >= self.bound if self.op == ">=" else measured <= self.bound

    def text(self, unit: str) -> str:
        sign = "≥" if self.op == ">=" else "≤"
        return f"{sign} {self.bound:g}\u00d7" if self.of == "ratio" else f"{sign} {self.bound:g} {unit}"


@dataclass(frozen=True)
class Figure:
    """One measured figure. ``name`` says what was measured (it is the key across runs: the same
    name from a newer run replaces it in the table); ``baseline`` names what ``ratio`` is against
    (value over baseline's, or baseline's time over this time: the benchmark says which way is better)."""

    name: str
    value: float
    unit: str
    target: Target | None = None
    ratio: float | None = None
    baseline: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": round(self.value, 4), "unit": self.unit}
        if self.ratio is not None:
            out["ratio"] = round(self.ratio, 4)
            out["baseline"] = self.baseline
        if self.target is not None:
            out["target"] = self.target.text(self.unit)
            out["met"] = self.target.met(self)
        return out


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    memory_kib = 0
    cpu = platform.processor()
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024**2, 1),
        "cpu": cpu,
        "python": platform.python_version(),
    }


def command_line() -> str:
    """The invocation as it is typed (``python -m bench.parse ...``)."""
    module = Path(sys.argv[0]).stem
    return shlex.join(["python", "-m", f"bench.{module}", *sys.argv[1:]])


def run_name(bench: str, *variant: str) -> str:
    """The file name of a benchmark's run: the benchmark and what sets its figures apart
    (``pipeline-fasta-1g``), so that a run of another variant does not replace this one's file."""
    words = [bench, *(v for v in variant if v)]
    return re.sub(r"[^a-z0-9.,]+", "-", "-".join(words).lower()).strip("-")


def write_figures(name: str, figures: list[Figure], folder: Path = FIGURES_DIR) -> Path:
    """Write a run's figures to ``<folder>/<name>.json`` (replacing that run's previous file)."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "run": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": command_line(),
        "figures": [figure.as_json() for figure in figures],
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"figures written to {path}", file=sys.stderr)
    return path
