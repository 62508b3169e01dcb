"""What the user commands show: data on stdout (text, or JSON with ``--json``), progress and
messages on stderr.

Progress is a rich display on a terminal (a bar per file for the bytes sent, then the pipeline's
stage and records), plain lines without control codes when stderr is a file or a pipe (a CI log
stays readable), nothing with ``--quiet``. The reporters are called from the upload threads, so
each is thread-safe.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from genobase.client import TransferProgress, Upload


def safe(text: str) -> str:
    """``text`` with every control, format (bidi), private-use, surrogate or unassigned character
    (Unicode category C*) written as a visible escape (ESC as ``\\x1b``, U+202E as ``\\u202e``).

    File names, labels and error messages come from the server (an object written with the
    owner's own S3 keys names its upload, unfiltered): printed raw, an escape sequence in one
    could set the clipboard, retitle the window, erase lines or reorder what the user reads."""
    if text.isprintable():  # the common case (False for every C* character, and for Zl, Zp)
        return text
    return "".join(_escaped(character) for character in text)


def _escaped(character: str) -> str:
    if character == " " or not unicodedata.category(character).startswith(("C", "Zl", "Zp")):
        return character
    point = ord(character)
    if point < 0x100:
        return f"\\x{point:02x}"
    return f"\\u{point:04x}" if point < 0x10000 else f"\\U{point:08x}"


def out(text: str = "") -> None:
    """A line of data (stdout), made safe for the terminal (``safe``)."""
    print(safe(text), file=sys.stdout, flush=True)


def err(text: str) -> None:
    """A line of message (stderr), made safe for the terminal (``safe``)."""
    print(safe(text), file=sys.stderr, flush=True)


def emit_json(value: Any) -> None:
    """JSON with every non-ASCII character escaped (``ensure_ascii``): no control character of a
    server's string (C1 included) reaches the terminal raw, and the values read back the same."""
    print(json.dumps(value, indent=2, ensure_ascii=True), file=sys.stdout, flush=True)


def dump(model: Any) -> Any:
    """A client model as JSON values (the models are pydantic: ``model_dump(mode="json")``)."""
    return model.model_dump(mode="json")


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> Iterable[str]:
    """Plain aligned columns (no box drawing: the output is meant for grep and cut too)."""
    rows = [[safe(str(cell)) for cell in row] for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in (headers, *rows):
        yield "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()


def stage_text(upload: Upload) -> str:
    """Where an upload stands, in a few words: its state and records (and the bytes the parser read)."""
    progress = upload.progress
    text = f"{upload.state}"
    if upload.state not in ("awaiting_upload", "done"):
        text += f" {100 * progress.fraction:3.0f}%"
    if progress.records_done or upload.state == "done":
        records = progress.records_done
        if upload.result is not None:
            records = upload.result.records
        elif upload.validation is not None:
            records = upload.validation.records
        text += f"  {records:,} records"
    return text


def resumed_text(progress: TransferProgress) -> str:
    """What an earlier run of the same command had already sent."""
    if progress.parts:
        left = progress.parts - progress.parts_resumed
        return f"resuming: {progress.parts_resumed} of {progress.parts} parts already stored; sending {left}"
    return f"resuming: {_size(progress.resumed)} of {_size(progress.total)} already stored"


class Reporter(Protocol):
    def start(self, key: str, label: str, *, receiving: bool = False) -> None: ...
    def sent(self, key: str, progress: TransferProgress) -> None: ...
    def status(self, key: str, upload: Upload) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class QuietReporter:
    """``--quiet``: no progress, no messages (errors are printed by ``main`` all the same)."""

    def start(self, key: str, label: str, *, receiving: bool = False) -> None:
        pass

    def sent(self, key: str, progress: TransferProgress) -> None:
        pass

    def status(self, key: str, upload: Upload) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class PlainReporter:
    """Whole lines on stderr, no control codes: the bytes at most every few seconds (and when done),
    then each change of state."""

    BYTES_EVERY_SECONDS = 5.0

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}
        self._last_bytes: dict[str, float] = {}
        self._finished: set[str] = set()
        self._last_stage: dict[str, str] = {}
        self._resumed: set[str] = set()
        self._receiving: set[str] = set()

    def _line(self, text: str) -> None:
        print(safe(text), file=self._stream or sys.stderr, flush=True)

    def start(self, key: str, label: str, *, receiving: bool = False) -> None:
        with self._lock:
            self._labels[key] = label
            if receiving:
                self._receiving.add(key)

    def sent(self, key: str, progress: TransferProgress) -> None:
        with self._lock:
            label = self._labels.get(key, key)
            if progress.resumed and key not in self._resumed:
                self._resumed.add(key)
                self._line(f"{label}: {resumed_text(progress)}")
            now = time.monotonic()
            done = progress.sent >= progress.total
            if key in self._finished or (not done and now - self._last_bytes.get(key, 0.0) < self.BYTES_EVERY_SECONDS):
                return
            self._last_bytes[key] = now
            if done:
                self._finished.add(key)
            fraction = progress.sent / progress.total if progress.total else 1.0
            verb = "received" if key in self._receiving else "sent"
            self._line(f"{label}: {verb} {_size(progress.sent)} of {_size(progress.total)} ({100 * fraction:.0f}%)")

    def status(self, key: str, upload: Upload) -> None:
        with self._lock:
            text = stage_text(upload)
            if self._last_stage.get(key) == text:
                return
            self._last_stage[key] = text
            self._line(f"{self._labels.get(key, key)}: {text}")

    def message(self, text: str) -> None:
        with self._lock:
            self._line(text)

    def close(self) -> None:
        pass


class RichReporter:
    """A rich progress display on stderr: a bar per file for its bytes, then its stage and records."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        # Server strings go through it: no ":emoji:" codes replaced, no guessing colours.
        self._console = Console(stderr=True, emoji=False, highlight=False)
        self._progress = Progress(
            # markup=False: a file name such as "[link=https://...]x[/link]" is text, not markup
            # (rich would make it a hyperlink, and "[/x]" would raise MarkupError).
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stage]}", markup=False),
            console=self._console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._resumed: set[str] = set()
        self._labels: dict[str, str] = {}
        self._lock = threading.Lock()
        self._progress.start()

    def _task(self, key: str, label: str | None = None) -> Any:
        with self._lock:
            if key not in self._tasks:
                self._labels[key] = label or key
                self._tasks[key] = self._progress.add_task(safe(label or key), total=None, stage="")
            return self._tasks[key]

    def start(self, key: str, label: str, *, receiving: bool = False) -> None:
        self._task(key, label)

    def sent(self, key: str, progress: TransferProgress) -> None:
        with self._lock:
            first_resumed = progress.resumed > 0 and key not in self._resumed
            self._resumed.add(key)
        if first_resumed:
            label = self._labels.get(key, key)
            self._progress.console.print(safe(f"{label}: {resumed_text(progress)}"), markup=False, highlight=False)
        self._progress.update(self._task(key), completed=progress.sent, total=progress.total, stage="sending")

    def status(self, key: str, upload: Upload) -> None:
        task = self._task(key)
        if upload.state != "awaiting_upload":
            self._progress.update(task, stage=safe(stage_text(upload)))

    def message(self, text: str) -> None:
        self._console.print(safe(text), markup=False, highlight=False)

    def close(self) -> None:
        self._progress.stop()


def reporter(*, quiet: bool) -> Reporter:
    if quiet:
        return QuietReporter()
    if stderr_is_terminal():
        return RichReporter()
    return PlainReporter()


def _size(count: int) -> str:
    """Decimal units, as the progress bars show them."""
    if count < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("KB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:,.1f} {unit}"
    return f"{value / 1000:,.1f} TB"


def human_size(count: int | None) -> str:
    return "-" if count is None else _size(count)


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())
