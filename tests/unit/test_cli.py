"""The user commands of ``genobase`` over the real client on a fake intake (``httpx.MockTransport``):
what each prints on stdout and stderr, ``--json``'s shape, the exit codes, the one-line errors,
and Ctrl-C in a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genobase import cli, commands, config
from genobase.client import (
    AuthenticationError,
    Client,
    ClientError,
    ConflictError,
    NotFoundError,
    RefusedError,
    TimedOutError,
    UnreachableError,
    Upload,
    UploadSummary,
)
from genobase.errors import EXIT_CODES, ExitCode, exit_codes_epilog, explain
from tests.unit.fakes_intake_http import GOOD_KEY, FakeIntake

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("clean_environment")


def fasta(path: Path, text: str = ">a\nACGT\n>b\nGG\n") -> Path:
    path.write_text(text)
    return path


def test_ls_prints_a_table_and_its_json_is_the_summaries(
    intake: FakeIntake, capsys: pytest.CaptureFixture[str]
) -> None:
    first = intake.add("a.fa", "done", result=b"{}", labels={"run": "7"})
    intake.add("b.fq", "failed")
    assert cli.main(["ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "STATE", "FILENAME", "RECORDS", "LABELS", "CREATED"]
    assert lines[2].split()[:5] == [first, "done", "a.fa", "2", "run=7"]
    assert cli.main(["ls", "--json", "--state", "done"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in listed] == [first]
    assert set(listed[0]) == set(UploadSummary.model_fields)
    assert intake.requests[-1].url.params["state"] == "done"


def test_status_json_is_the_clients_upload_model(intake: FakeIntake, capsys: pytest.CaptureFixture[str]) -> None:
    upload_id = intake.add("a.fa", "done", result=b"{}")
    assert cli.main(["status", upload_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == set(Upload.model_fields) and shown["id"] == upload_id and shown["state"] == "done"
    assert cli.main(["status", upload_id]) == 0
    text = capsys.readouterr().out
    assert f"id        {upload_id}" in text and "2 records" in text


def test_upload_of_two_files_with_labels_and_wait(
    intake: FakeIntake, clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fasta(clean_environment / "one.fa")
    fasta(clean_environment / "two.fa", ">c\nTTTT\n")
    code = cli.main(["upload", "one.fa", "two.fa", "--label", "run=7", "--label", "sample=x", "--wait", "-o", "out"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = [line.split() for line in captured.out.splitlines()[1:]]
    assert sorted(row[2] for row in rows) == ["one.fa", "two.fa"] and {row[1] for row in rows} == {"done"}
    assert {status["labels"]["sample"] for status in intake.uploads.values()} == {"x"}
    written = json.loads((clean_environment / "out" / "two.fa.json").read_text())
    assert written == {"records": [">c\nTTTT\n"]}
    assert "\x1b" not in captured.err  # stderr is not a terminal here: plain lines only
    assert "one.fa: sent 14 B of 14 B (100%)" in captured.err and "two.fa: done" in captured.err
    assert GOOD_KEY not in captured.out + captured.err


def test_upload_json_is_a_list_and_globs_are_expanded(
    intake: FakeIntake, clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.fa", "b.fa", "c.txt"):
        fasta(clean_environment / name)
    assert cli.main(["upload", "*.fa", "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert sorted(upload["filename"] for upload in json.loads(captured.out)) == ["a.fa", "b.fa"]
    assert captured.err == ""  # --quiet


def test_output_without_wait_is_a_usage_error(intake: FakeIntake, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        cli.main(["upload", "a.fa", "--output", "a.json"])
    assert ended.value.code == ExitCode.USAGE
    assert "--output needs --wait" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ended:
        cli.main(["retry", "some-id", "-o", "a.json"])
    assert ended.value.code == ExitCode.USAGE
    with pytest.raises(SystemExit) as ended:
        cli.main(["upload", "a.fa", "--validate", "-o", "a.json"])
    assert ended.value.code == ExitCode.USAGE
    assert intake.requests == []


def test_a_missing_file_or_a_directory_is_one_line_before_any_request(
    intake: FakeIntake, clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fasta(clean_environment / "there.fa")
    assert cli.main(["upload", "there.fa", "missing.fa"]) == ExitCode.USAGE
    assert (
        capsys.readouterr().err
        == "genobase: missing.fa: no such file -- check the path (relative to the current directory)\n"
    )
    (clean_environment / "folder").mkdir()
    assert cli.main(["upload", "folder"]) == ExitCode.USAGE
    assert "folder: is a directory" in capsys.readouterr().err
    assert cli.main(["upload", "*.fq"]) == ExitCode.USAGE
    assert "no file matches '*.fq'" in capsys.readouterr().err
    assert intake.requests == []


def test_exit_codes_of_everyday_mistakes(
    intake: FakeIntake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    done = intake.add("a.fa", "done", result=b"{}")
    failed = intake.add("bad.fa", "failed", error={"code": "invalid_character", "message": "bad", "line": 3,
                                                   "column": 2, "error_id": "abc"})  # fmt: skip
    theirs = intake.add("theirs.fa", "done", result=b"{}")
    intake.owner_of[theirs] = "bob"
    slow = intake.add("slow.fa", "parsing")
    cases = [
        (["status", done, "--api-key", "wrong"], ExitCode.AUTHENTICATION, "the key was refused"),
        (["status", theirs], ExitCode.NOT_FOUND, "not found"),
        (["status", "not-an-id"], ExitCode.NOT_FOUND, "not an upload id"),
        (["retry", done], ExitCode.CONFLICT, "refused: the upload is done (not_failed)"),
        (["wait", slow, "--timeout", "0"], ExitCode.TIMED_OUT, "timed out"),
        (["wait", failed], ExitCode.FAILED, "failed: invalid_character: bad at line 3, column 2 [error id abc]"),
    ]
    for argv, code, text in cases:
        assert cli.main(argv) == code, argv
        err = capsys.readouterr().err
        assert text in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 or argv[0] == "wait", err
    assert "wrong" not in err


def test_an_unreachable_endpoint_says_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(
        commands,
        "open_client",
        lambda c: Client(c.endpoint, c.api_key, transport=httpx.MockTransport(refused), retries=0),
    )
    assert cli.main(["ls", "--endpoint", "http://127.0.0.1:9"]) == ExitCode.UNREACHABLE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is `genobase up` running? endpoint http://127.0.0.1:9 (from --endpoint)" in err


def test_an_unexpected_error_is_one_line_unless_debug(
    intake: FakeIntake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(connection: config.Connection) -> Client:
        raise RuntimeError("something odd")

    monkeypatch.setattr(commands, "open_client", broken)
    assert cli.main(["ls"]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert err == "genobase: unexpected error: RuntimeError: something odd -- run with --debug for the traceback\n"
    assert cli.main(["ls", "--debug"]) == ExitCode.FAILED
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_ctrl_c_in_process_is_130_with_the_resume_hint(
    intake: FakeIntake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(connection: config.Connection) -> Client:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "open_client", interrupted)
    assert cli.main(["ls"]) == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "genobase: interrupted -- run the same command again to resume\n"


def test_get_downloads_the_result_and_refuses_to_overwrite(
    intake: FakeIntake, clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upload_id = intake.add("sample.fa", "done", result=b'{"records": [1, 2]}')
    assert cli.main(["get", upload_id]) == 0
    target = clean_environment / "sample.fa.json"
    assert target.read_bytes() == b'{"records": [1, 2]}'
    assert capsys.readouterr().out == "sample.fa.json\n"
    assert cli.main(["get", upload_id]) == ExitCode.CONFLICT
    assert "sample.fa.json exists already -- pass --force" in capsys.readouterr().err
    target.write_text("old")
    assert cli.main(["get", upload_id, "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"id": upload_id, "path": str(target), "size": 19}
    assert target.read_bytes() == b'{"records": [1, 2]}'
    parsing = intake.add("later.fa", "parsing")
    assert cli.main(["get", parsing, "-o", "x.json"]) == ExitCode.CONFLICT
    assert "has no result document" in capsys.readouterr().err


def test_rm_and_retry(intake: FakeIntake, clean_environment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upload_id = intake.add("a.fa", "done", result=b"{}")
    assert cli.main(["rm", upload_id]) == 0
    assert capsys.readouterr().out.split() == [upload_id, "deleted", "a.fa"]
    failed = intake.add("b.fa", "failed", error={"code": "internal", "message": "x", "line": None, "column": None,
                                                 "error_id": None})  # fmt: skip
    assert cli.main(["retry", failed, "--wait", "-o", "b.json", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["state"], shown["generation"]) == ("done", 2)
    assert (clean_environment / "b.json").read_bytes() == b'{"records": []}'


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        cli.main(["--version"])
    assert ended.value.code == 0
    from importlib.metadata import version

    assert capsys.readouterr().out == f"genobase {version('genobase')}\n"


def test_every_exit_code_is_documented_in_help_and_docs() -> None:
    epilog = exit_codes_epilog()
    documented = (ROOT / "docs" / "cli.md").read_text()
    for code in ExitCode:
        assert f"  {int(code):<4} {EXIT_CODES[code]}" in epilog
        assert f"| {int(code)} |" in documented, code
    assert epilog in cli.build_parser().format_help()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AuthenticationError("unauthorized", "no"), ExitCode.AUTHENTICATION),
        (AuthenticationError("admin_only", "no", status=403), ExitCode.AUTHENTICATION),
        (NotFoundError("not_found", "no"), ExitCode.NOT_FOUND),
        (ConflictError("not_failed", "no"), ExitCode.CONFLICT),
        (RefusedError("invalid_labels", "no"), ExitCode.CONFLICT),
        (UnreachableError("unreachable", "no"), ExitCode.UNREACHABLE),
        (TimedOutError("timed_out", "no"), ExitCode.TIMED_OUT),
        (ClientError("checksum_mismatch", "no"), ExitCode.FAILED),
        (FileNotFoundError(2, "No such file", "x.fa"), ExitCode.USAGE),
        (IsADirectoryError(21, "Is a directory", "dir"), ExitCode.USAGE),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (ValueError("odd"), ExitCode.FAILED),
    ],
)
def test_each_error_has_its_exit_code(error: BaseException, code: ExitCode) -> None:
    failure = explain(error, endpoint="http://x", endpoint_from="--endpoint")
    assert failure.code == code
    assert "\n" not in failure.message


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_ctrl_c_in_a_real_process_ends_it_at_once_with_130(silent_port: int, tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "genobase.cli", "ls", "--endpoint", f"http://127.0.0.1:{silent_port}", "--api-key", "k"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)  # the request is sent and waits for an answer
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = process.communicate(timeout=20)
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert time.monotonic() - started < 5
    assert err == "genobase: interrupted -- run the same command again to resume\n"
    assert out == ""


def test_on_a_terminal_the_progress_is_rich(
    intake: FakeIntake, clean_environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from genobase import console

    monkeypatch.setattr(console, "stderr_is_terminal", lambda: True)
    fasta(clean_environment / "one.fa")
    assert cli.main(["upload", "one.fa", "--wait"]) == 0
    captured = capsys.readouterr()
    assert "one.fa" in captured.err and "done" in captured.err  # the bar's last frame
    assert captured.out.splitlines()[1].split()[1:3] == ["done", "one.fa"]


def test_a_resumed_upload_says_what_was_already_stored() -> None:
    import io

    from genobase import console
    from genobase.client import TransferProgress

    stream = io.StringIO()
    plain = console.PlainReporter(stream)
    plain.start("k", "big.fa")
    part = 5 * 1024 * 1024
    plain.sent("k", TransferProgress(Path("big.fa"), 3 * part, 4 * part, 2 * part, 4, 3, 2))
    plain.sent("k", TransferProgress(Path("big.fa"), 4 * part, 4 * part, 2 * part, 4, 4, 2))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "big.fa: resuming: 2 of 4 parts already stored; sending 2"
    assert lines[-1] == "big.fa: sent 21.0 MB of 21.0 MB (100%)"
    assert len(lines) == 3 and "\x1b" not in stream.getvalue()
