"""The CLI's exit codes, in one place, and the one-line message (with a hint) each everyday mistake
ends with instead of a traceback.

Scripts branch on the exit code, people read the line: ``explain`` turns an exception into both.
The codes are documented in docs/cli.md and in ``genobase --help``'s epilog, both made from
``EXIT_CODES`` below so that they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from genobase.client import (
    AuthenticationError,
    ClientError,
    ConflictError,
    NotFoundError,
    RefusedError,
    TimedOutError,
    UnreachableError,
)


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the upload ended failed, revoked, expired or deleted; or an unexpected error
    USAGE = 2  # argparse's own code for a bad command line; also a missing file or profile
    AUTHENTICATION = 3
    NOT_FOUND = 4
    TIMED_OUT = 5
    UNREACHABLE = 6
    CONFLICT = 7
    INTERRUPTED = 130  # 128 + SIGINT, as shells report a process ended by Ctrl-C


EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "done",
    ExitCode.FAILED: "the upload ended failed, revoked, expired or deleted (or an unexpected error)",
    ExitCode.USAGE: "usage: a bad command line, a missing file or directory, an unknown profile",
    ExitCode.AUTHENTICATION: "the key was refused: wrong, revoked or missing",
    ExitCode.NOT_FOUND: "no such upload for this key (another owner's upload answers the same)",
    ExitCode.TIMED_OUT: "timed out waiting (--timeout)",
    ExitCode.UNREACHABLE: "the endpoint did not answer (or kept failing)",
    ExitCode.CONFLICT: "refused by the API (409, 413, 422, 429 ...), or an output file in the way",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_codes_epilog() -> str:
    """The exit codes as ``genobase --help`` lists them."""
    return "exit codes:\n" + "\n".join(f"  {int(code):<4} {text}" for code, text in EXIT_CODES.items())


class CliError(Exception):
    """An everyday mistake the CLI itself finds (a missing file, an unknown profile, a file in the
    way): its exit code and the one line to print, with a hint."""

    def __init__(self, code: ExitCode, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Failure:
    """What an exception becomes: the exit code and one line (plus a hint line, when there is one)."""

    code: ExitCode
    message: str
    hint: str | None = None
    unexpected: bool = False


def explain(
    exc: BaseException,
    *,
    endpoint: str | None = None,
    endpoint_from: str | None = None,
    key_source: str | None = None,
) -> Failure:
    """The exit code and the one line for ``exc``; ``endpoint`` (and where it came from) name the
    intake in the hints of the errors a wrong endpoint or key causes, ``key_source`` where the
    key came from (or why none was sent)."""
    where = f"endpoint {endpoint}" + (f" (from {endpoint_from})" if endpoint_from else "") if endpoint else ""
    if isinstance(exc, CliError):
        return Failure(exc.code, exc.message, exc.hint)
    if isinstance(exc, KeyboardInterrupt):
        return Failure(ExitCode.INTERRUPTED, "interrupted", "run the same command again to resume")
    if isinstance(exc, ClientError):
        text = _client_message(exc)
        if isinstance(exc, AuthenticationError) and exc.status == 403:
            return Failure(
                ExitCode.AUTHENTICATION, f"not allowed: {text}", "this key may not do that (e.g. --owner: admin keys)"
            )
        if isinstance(exc, AuthenticationError):
            return Failure(
                ExitCode.AUTHENTICATION,
                f"the key was refused: {text}",
                f"wrong, revoked or missing key for {where or 'the endpoint'}"
                + (f"; {key_source}" if key_source else "")
                + ": run `genobase login --endpoint URL`, or pass --api-key / set GENOBASE_API_KEY",
            )
        if isinstance(exc, NotFoundError):
            return Failure(
                ExitCode.NOT_FOUND,
                f"not found: {text}",
                "check the id (`genobase ls`); another owner's upload answers the same as one that does not exist",
            )
        if isinstance(exc, TimedOutError):
            return Failure(ExitCode.TIMED_OUT, f"timed out: {text}", "wait longer with --timeout SECONDS")
        if isinstance(exc, UnreachableError):
            return Failure(
                ExitCode.UNREACHABLE,
                f"could not reach the intake: {text}",
                f"is `genobase up` running? {where}".rstrip(),
            )
        if exc.code == "unexpected_answer":
            return Failure(ExitCode.UNREACHABLE, f"unexpected answer: {text}", f"{exc.hint} {where}".strip())
        if isinstance(exc, ConflictError | RefusedError):
            return Failure(ExitCode.CONFLICT, f"refused: {text}", exc.hint)
        return Failure(ExitCode.FAILED, text, exc.hint)
    if isinstance(exc, IsADirectoryError):
        return Failure(ExitCode.USAGE, f"{exc.filename or exc}: is a directory", "name the files in it, or a glob")
    if isinstance(exc, FileNotFoundError):
        return Failure(ExitCode.USAGE, f"{exc.filename or exc}: no such file", None)
    if isinstance(exc, PermissionError):
        return Failure(ExitCode.USAGE, f"{exc.filename or exc}: permission denied", None)
    name = type(exc).__name__
    return Failure(ExitCode.FAILED, f"unexpected error: {name}: {exc}", "run with --debug for the traceback", True)


def _client_message(exc: ClientError) -> str:
    """The client's message with its code and error id (the one an operator finds in the log)."""
    text = exc.message or str(exc)
    if exc.code and exc.code not in text:
        text = f"{text} ({exc.code})"
    if exc.error_id:
        text += f" [error id {exc.error_id}]"
    return text
