"""The user commands (``login``, ``ls``, ``status ID``, ``wait``, ``get``, ``rm``, ``retry``,
``upload``, ``validate``): a thin layer over ``genobase.client`` that works from any directory.

Each command resolves its endpoint and key (``genobase.config``), opens a ``Client``, and prints
its data on stdout (text, or the client's models as JSON with ``--json``) and its progress and
messages on stderr (``genobase.console``). Errors are not caught here: ``genobase.cli.main`` turns
each into its exit code and one line (``genobase.errors``).
"""

from __future__ import annotations

import argparse
import getpass
import glob
import os
import sys
import threading
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from genobase import config, console
from genobase.client import Client, TransferProgress, Upload, UploadSummary
from genobase.errors import CliError, ExitCode, explain

GLOB_CHARACTERS = frozenset("*?[")


def open_client(connection: config.Connection) -> Client:
    """The client of one command (the unit tests replace it with one on a fake transport)."""
    # Three further tries (about 5 s of backoff), not the library's five: a stopped stack should say so soon.
    return Client(connection.endpoint, connection.api_key, retries=3, state_dir=config.data_dir() / "transfers")


def connect(args: argparse.Namespace) -> Client:
    """Resolve the endpoint and key (kept on ``args`` for the error messages) and open a client."""
    connection = config.resolve(args.endpoint, args.api_key, args.profile)
    args.connection = connection
    _warn_if_plain_http(args, connection)
    path = config.config_path()
    if connection.key_from and connection.key_from.startswith("profile") and (mode := config.loose_mode(path)):
        _note(args, f"warning: {path} is mode {mode:o}, readable by others: chmod 600 {path}")
    return open_client(connection)


def _warn_if_plain_http(args: argparse.Namespace, connection: config.Connection) -> None:
    """One line on stderr (not with ``--quiet``, as every message) when the key would cross the
    network unencrypted: ``http://`` to a host that is not this machine."""
    if connection.api_key and config.plain_http_elsewhere(connection.endpoint):
        _note(
            args,
            f"warning: the API key goes to {connection.endpoint} unencrypted (http:// to a host that is not this"
            " machine): use https://",
        )


def _note(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        console.err(text)


# --- login ----------------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    """Check the key against the endpoint (a listing of one upload), then keep both as a profile."""
    endpoint = args.endpoint or os.environ.get(config.ENDPOINT_ENV)
    if not endpoint:
        raise CliError(ExitCode.USAGE, "login needs --endpoint URL", "e.g. genobase login --endpoint http://host:8000")
    endpoint = config.normalise_endpoint(endpoint)
    name = config.check_profile_name(args.profile or os.environ.get(config.PROFILE_ENV) or config.DEFAULT_PROFILE)
    key = args.api_key or os.environ.get(config.API_KEY_ENV)
    if not key:
        key = getpass.getpass(f"API key for {endpoint}: ", stream=sys.stderr).strip()
    if not key:
        raise CliError(ExitCode.USAGE, "no API key given", "pass --api-key, set GENOBASE_API_KEY, or type it")
    key = config.check_api_key(key)
    connection = config.Connection(endpoint, key, "--endpoint", "login")
    args.connection = connection
    _warn_if_plain_http(args, connection)
    with open_client(connection) as client:
        list(client.list(limit=1))  # the key is refused here (exit 3), before anything is written
    path = config.save_profile(name, config.Profile(endpoint, key))
    _note(args, f"the key works with {endpoint} (it lists uploads); saved as profile {name!r} in {path}")
    return 0


# --- reading -------------------------------------------------------------------------------------


def parse_labels(pairs: Sequence[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs or ():
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise CliError(ExitCode.USAGE, f"a label is KEY=VALUE, not {pair!r}", "e.g. --label sample=NA12878")
        labels[key] = value
    return labels


def cmd_ls(args: argparse.Namespace) -> int:
    with connect(args) as client:
        summaries = list(
            client.list(
                state=args.state,
                name=args.name,
                labels=parse_labels(args.label),
                owner=args.owner,
                limit=args.limit or None,
            )
        )
    if args.json:
        console.emit_json([console.dump(summary) for summary in summaries])
        return 0
    for line in console.table(
        [_listed(s) for s in summaries], ("ID", "STATE", "FILENAME", "RECORDS", "LABELS", "CREATED")
    ):
        console.out(line)
    return 0


def _listed(summary: UploadSummary) -> tuple[str, ...]:
    labels = ",".join(f"{key}={value}" for key, value in sorted(summary.labels.items()))
    records = "-" if summary.records is None else f"{summary.records:,}"
    return (
        str(summary.id),
        summary.state,
        summary.filename,
        records,
        labels or "-",
        f"{summary.created_at:%Y-%m-%d %H:%M}",
    )


def describe(upload: Upload) -> list[str]:
    """An upload's status as ``name  value`` lines."""
    rows: list[tuple[str, str]] = [
        ("id", str(upload.id)),
        ("filename", upload.filename),
        (
            "state",
            f"{upload.state} (generation {upload.generation}{', validation' if upload.mode == 'validate' else ''})",
        ),
        ("progress", console.stage_text(upload)),
    ]
    if upload.format:
        rows.append(("format", upload.format))
    if upload.labels:
        rows.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(upload.labels.items()))))
    rows.append(("created", f"{upload.created_at:%Y-%m-%d %H:%M:%S %Z}".strip()))
    if upload.result is not None:
        rows.append(("result", f"{upload.result.records:,} records, {console.human_size(upload.result.size)}"))
    if upload.validation is not None:
        report = upload.validation
        rows.append(("validation", f"valid: {report.records:,} records, {report.format}, {report.bytes:,} bytes"))
    if upload.collection_digest or (upload.validation and upload.validation.collection_digest):
        digest = upload.collection_digest or (upload.validation.collection_digest if upload.validation else "")
        rows.append(("collection", digest))
    if upload.error is not None:
        rows.append(("error", failure_text(upload)))
    if upload.stall.stalled:
        rows.append(("stalled", f"no progress for {upload.stall.idle_seconds:.0f} s"))
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {value}" for name, value in rows]


def failure_text(upload: Upload) -> str:
    """Why an upload ended without a result, with the error's position and id."""
    if upload.state == "expired":
        return "expired: no object was written before the upload URL ran out"
    if upload.state == "deleted":
        return "deleted"
    error = upload.error
    if error is None:
        return upload.state
    where = ""
    if error.line is not None:
        where = f" at line {error.line}" + (f", column {error.column}" if error.column else "")
    quoted = f" [error id {error.error_id}]" if error.error_id else ""
    return f"{error.code}: {error.message}{where}{quoted}"


def outcome(upload: Upload) -> int:
    """A final upload's exit code: 0 when done, 1 when it ended any other way (said on stderr)."""
    if upload.state == "done":
        return ExitCode.OK
    console.err(f"genobase: {upload.filename} ({upload.id}) {upload.state}: {failure_text(upload)}")
    return ExitCode.FAILED


def cmd_status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        upload = client.get(args.id)
    _show(args, upload)
    return 0


def _show(args: argparse.Namespace, upload: Upload) -> None:
    if args.json:
        console.emit_json(console.dump(upload))
    else:
        for line in describe(upload):
            console.out(line)


def cmd_wait(args: argparse.Namespace) -> int:
    progress = console.reporter(quiet=args.quiet)
    key = str(args.id)
    try:
        with connect(args) as client:
            progress.start(key, key[:8])
            upload = client.wait(args.id, timeout=args.timeout, on_status=lambda u: progress.status(key, u))
    finally:
        progress.close()
    _show(args, upload)
    return outcome(upload)


# A file name is at most 255 bytes on the usual file systems; the ".json" goes after it.
RESULT_NAME_BYTES = 255 - len(".json")


def result_name(upload: Upload) -> Path:
    """``<filename>.json`` in the current directory (only the file name's last component),
    shortened (its stem, keeping its extension) to fit a file system's 255 bytes. A character a
    terminal would act on (Unicode's "other" categories) becomes ``_``: the name is the server's."""
    name = "".join("_" if unicodedata.category(c)[0] == "C" else c for c in Path(upload.filename).name)
    if name in ("", ".", ".."):
        name = str(upload.id)
    if len(name.encode()) > RESULT_NAME_BYTES:
        suffix = Path(name).suffix if len(Path(name).suffix.encode()) <= 16 else ""
        room = RESULT_NAME_BYTES - len(suffix.encode())
        stem = name[: len(name) - len(suffix)].encode()[:room].decode("utf-8", errors="ignore")
        name = (stem + suffix) if stem.strip(".") else str(upload.id)
    return Path(f"{name}.json")


def _refuse_overwrite(target: Path, *, force: bool) -> None:
    if target.is_dir():
        raise CliError(ExitCode.USAGE, f"{target}: is a directory", "name a file with -o FILE")
    if target.exists() and not force:
        raise CliError(ExitCode.CONFLICT, f"{target} exists already", "pass --force to overwrite it, or -o FILE")


def cmd_get(args: argparse.Namespace) -> int:
    progress = console.reporter(quiet=args.quiet)
    try:
        with connect(args) as client:
            upload = client.get(args.id)
            target = Path(args.target) if args.target else result_name(upload)
            _refuse_overwrite(target, force=args.force)
            key = str(upload.id)
            progress.start(key, target.name, receiving=True)
            written = client.download(upload.id, target, on_bytes=lambda p: progress.sent(key, p))
    finally:
        progress.close()
    size = written.stat().st_size
    if args.json:
        console.emit_json({"id": str(upload.id), "path": str(written.resolve()), "size": size})
    else:
        console.out(str(written))
        _note(args, f"{size:,} bytes, size and SHA-256 checked -> {console.display_path(written)}")
    return 0


# --- changing ------------------------------------------------------------------------------------


def cmd_rm(args: argparse.Namespace) -> int:
    with connect(args) as client:
        upload = client.delete(args.id)
    if args.json:
        console.emit_json(console.dump(upload))
    else:
        console.out(f"{upload.id}  {upload.state}  {upload.filename}")
        _note(args, "its rows are gone; its object and result documents go at the watchdog's next sweep")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    progress = console.reporter(quiet=args.quiet)
    try:
        with connect(args) as client:
            upload = client.retry(args.id)
            _note(args, f"upload {upload.id}: generation {upload.generation} {upload.state}")
            key = str(upload.id)
            if args.wait:
                progress.start(key, upload.filename)
                upload = client.wait(upload.id, timeout=args.timeout, on_status=lambda u: progress.status(key, u))
                if upload.state == "done" and args.output:
                    target = Path(args.output)
                    _refuse_overwrite(target, force=args.force)
                    progress.start(f"{key}.result", target.name, receiving=True)
                    client.download(upload.id, target, on_bytes=lambda p: progress.sent(f"{key}.result", p))
    finally:
        progress.close()
    _show(args, upload)
    return outcome(upload) if args.wait else 0


# --- uploading -----------------------------------------------------------------------------------


def expand_files(patterns: Sequence[str]) -> list[Path]:
    """The files named, globs expanded here too (for shells that pass them through, and for quoted
    ones); each checked before anything is sent, so one typo does not leave half a batch sent."""
    files: list[Path] = []
    for pattern in patterns:
        if not Path(pattern).exists() and GLOB_CHARACTERS & set(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise CliError(ExitCode.USAGE, f"no file matches {pattern!r}", None)
            files += [Path(m) for m in matches if not Path(m).is_dir()]
            continue
        path = Path(pattern)
        if not path.exists():
            raise CliError(
                ExitCode.USAGE, f"{pattern}: no such file", "check the path (relative to the current directory)"
            )
        if path.is_dir():
            raise CliError(ExitCode.USAGE, f"{pattern}: is a directory", f"name its files, e.g. '{pattern}/*.fa'")
        files.append(path)
    unique = list(dict.fromkeys(files))  # a file named twice is sent once
    if not unique:
        raise CliError(ExitCode.USAGE, "no file to upload", None)
    return unique


@dataclass
class Sent:
    """One file's outcome: its final (or current) status, or the error that stopped it."""

    path: Path
    upload: Upload | None = None
    error: BaseException | None = None


def _output_for(args: argparse.Namespace, path: Path, many: bool) -> Path | None:
    """Where a file's result goes: ``--output`` itself for one file, ``<dir>/<name>.json`` for several."""
    if not args.output:
        return None
    output = Path(args.output)
    if not many:
        return output
    output.mkdir(parents=True, exist_ok=True)
    return output / f"{path.name}.json"


def _refuse_shared_targets(targets: dict[Path, Path | None]) -> None:
    """Two files whose results would go to the same file (``a/x.fa`` and ``b/x.fa`` with
    ``-o DIR``): refused before anything is sent, or the second result would replace the first."""
    seen: dict[str, Path] = {}
    for path, target in targets.items():
        if target is None:
            continue
        where = os.path.normcase(os.path.abspath(target))
        if where in seen:
            raise CliError(
                ExitCode.USAGE,
                f"{seen[where]} and {path} would both write their result to {target}",
                "upload them in separate commands, each with its own --output",
            )
        seen[where] = path


def cmd_upload(args: argparse.Namespace) -> int:
    files = expand_files(args.files)
    labels = parse_labels(args.label)
    mode: Literal["store", "validate"] = "validate" if args.validate else "store"
    wait = bool(args.wait or args.validate)
    many = len(files) > 1
    if args.output and many and Path(args.output).exists() and not Path(args.output).is_dir():
        raise CliError(ExitCode.USAGE, f"{args.output}: not a directory", "with several files, --output is a directory")
    targets = {path: _output_for(args, path, many) for path in files}
    _refuse_shared_targets(targets)
    for target in targets.values():
        if target is not None:
            _refuse_overwrite(target, force=args.force)
    progress = console.reporter(quiet=args.quiet)
    outcomes: list[Sent] = []
    try:
        with connect(args) as client:
            labels_of = {path: (str(path) if many else path.name) for path in files}
            for path in files:
                progress.start(str(path), labels_of[path])

            def send(path: Path) -> Sent:
                key = str(path)
                try:
                    upload = client.upload(
                        path,
                        labels=labels,
                        mode=mode,
                        format=args.format,
                        alphabet=args.alphabet,
                        circular=args.circular,
                        wait=wait,
                        timeout=args.timeout,
                        parallel=args.parallel,
                        on_bytes=_bytes_to(progress, key),
                        on_status=lambda u: progress.status(key, u),
                    )
                    target = targets[path]
                    if target is not None and upload.state == "done" and upload.result is not None:
                        client.download(upload.id, target)
                        progress.message(f"{labels_of[path]}: result -> {console.display_path(target)}")
                    return Sent(path, upload)
                except Exception as exc:  # one file's failure does not stop the others
                    return Sent(path, error=exc)

            with ThreadPoolExecutor(max_workers=max(1, min(args.jobs, len(files)))) as pool:
                outcomes = list(pool.map(send, files))
    finally:
        progress.close()
    return _report_uploads(args, outcomes, wait=wait)


def _bytes_to(progress: console.Reporter, key: str) -> Callable[[TransferProgress], None]:
    lock = threading.Lock()

    def told(sent: TransferProgress) -> None:
        with lock:
            progress.sent(key, sent)

    return told


def _report_uploads(args: argparse.Namespace, outcomes: list[Sent], *, wait: bool) -> int:
    """Print each file's upload (stdout) and each failure (stderr); the exit code is the first
    error's, else 1 when an upload ended without its result, else 0."""
    codes: list[int] = []
    uploads = [sent.upload for sent in outcomes if sent.upload is not None]
    if args.json:
        console.emit_json([console.dump(upload) for upload in uploads])
    else:
        rows = [_uploaded_row(upload) for upload in uploads]
        for line in console.table(rows, ("ID", "STATE", "FILENAME", "RECORDS")) if rows else ():
            console.out(line)
    for sent in outcomes:
        if sent.error is not None:
            connection: Any = getattr(args, "connection", None)
            failure = explain(
                sent.error,
                endpoint=_endpoint(args),
                endpoint_from=_endpoint_from(args),
                key_source=connection.key_source if connection is not None else None,
            )
            hint = f" -- {failure.hint}" if failure.hint else ""
            console.err(f"genobase: {sent.path}: {failure.message}{hint}")
            codes.append(failure.code)
        elif sent.upload is not None and wait:
            codes.append(outcome(sent.upload))
    errors = [code for code in codes if code not in (ExitCode.OK, ExitCode.FAILED)]
    if errors:
        return errors[0]
    return ExitCode.FAILED if ExitCode.FAILED in codes else ExitCode.OK


def _uploaded_row(upload: Upload) -> tuple[str, ...]:
    if upload.result is not None:
        records = f"{upload.result.records:,}"
    elif upload.validation is not None:
        records = f"{upload.validation.records:,} (valid)"
    else:
        records = "-"
    return (str(upload.id), upload.state, upload.filename, records)


def _endpoint(args: argparse.Namespace) -> str | None:
    connection: Any = getattr(args, "connection", None)
    return connection.endpoint if connection is not None else None


def _endpoint_from(args: argparse.Namespace) -> str | None:
    connection: Any = getattr(args, "connection", None)
    return connection.endpoint_from if connection is not None else None
