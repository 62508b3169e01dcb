"""The CLI against hostile server strings and risky local set-ups: control and bidi characters
escaped in text (and ASCII-only JSON), rich markup shown as text, keys with stray characters,
results that would overwrite each other, a profile's key kept to its own endpoint, a warning for
a key sent over plain http, endpoints and profile names checked, long file names and answers that
are not the intake's."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import rich.console

from genobase import cli, commands, config, console
from genobase.client import Upload
from genobase.errors import CliError, ExitCode
from tests.unit.fakes_intake_http import ENDPOINT, GOOD_KEY, FakeIntake

EVIL = "x.fa\x1b]52;c;Y3VybA==\x07\x1b]0;pwned\x07\x1b[2K\x9b1A\u202egenuine.fa"

pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """A rich display as on a terminal, written to a buffer (with the options the CLI gives it)."""
    screen = io.StringIO()
    real = rich.console.Console

    def on_screen(**options: Any) -> rich.console.Console:
        return real(**{**options, "stderr": False, "file": screen, "force_terminal": True, "width": 200})

    monkeypatch.setattr(rich.console, "Console", on_screen)
    monkeypatch.setattr(console, "stderr_is_terminal", lambda: True)
    return screen


def raw_controls(text: str) -> list[str]:
    return [c for c in text if c in "\x1b\x07\x9b\u202e"]


def test_safe_escapes_controls_and_bidi_and_keeps_the_rest() -> None:
    assert console.safe("a\x1b[31mb\x9bc\u202ed\u2028e\udcff") == "a\\x1b[31mb\\x9bc\\u202ed\\u2028e\\udcff"
    assert console.safe("plain é 名前 [link=x]") == "plain é 名前 [link=x]"


def test_server_strings_are_escaped_in_every_text_output_and_json_is_ascii(
    intake: FakeIntake, capsys: pytest.CaptureFixture[str]
) -> None:
    error = {"code": "bad\x1b[31m", "message": "m\x1b]8;;http://evil/\x07click", "line": 1, "column": 1,
             "error_id": None}  # fmt: skip
    upload_id = intake.add(EVIL, "failed", error=error, labels={"k": "v\x1b[8m"})
    for argv in (["ls"], ["status", upload_id], ["wait", upload_id], ["rm", upload_id]):
        cli.main(argv)
        captured = capsys.readouterr()
        assert raw_controls(captured.out + captured.err) == [], argv
        assert "\\x1b]0;pwned" in captured.out + captured.err
    intake.add(EVIL, "failed", error=error, labels={"k": "v\x1b[8m"})
    for argv in (["ls", "--json"], ["status", upload_id, "--json"]):
        assert cli.main(argv) == 0
        captured = capsys.readouterr()
        assert captured.out.isascii() and raw_controls(captured.out) == []
        decoded = json.loads(captured.out)
        assert (decoded[0] if isinstance(decoded, list) else decoded)["filename"] == EVIL


def test_a_problems_detail_is_escaped_too(intake: FakeIntake, capsys: pytest.CaptureFixture[str]) -> None:
    body = {"type": "t", "title": "t", "status": 409, "detail": "no\x1b]0;x\x07", "code": "c\x1b", "error_id": "e1"}
    intake.handle = lambda request: httpx.Response(409, json=body)  # type: ignore[method-assign]
    assert cli.main(["ls"]) == ExitCode.CONFLICT
    err = capsys.readouterr().err
    assert raw_controls(err) == [] and "no\\x1b]0;x\\x07" in err


def test_markup_in_a_file_name_is_shown_as_text_on_a_terminal(
    intake: FakeIntake, terminal: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = {"code": "c", "message": "m", "line": None, "column": None, "error_id": None}
    crashing = intake.add("[/x].fa", "failed", error=failed)
    assert cli.main(["retry", crashing, "--wait"]) == 0, capsys.readouterr().err
    linked = intake.add("[link=https://evil.example/]report.fa[/link]", "failed", error=failed)
    assert cli.main(["retry", linked, "--wait"]) == 0
    shown = terminal.getvalue()
    assert "\x1b]8;" not in shown and "[link=https://evil.example/]" in shown


def test_emoji_codes_in_a_server_string_are_shown_as_text(terminal: io.StringIO) -> None:
    reporter = console.RichReporter()
    reporter.message("evil:warning:_:x:.fa: result -> x.json")
    reporter.close()
    assert "evil:warning:_:x:.fa" in terminal.getvalue() and "\u26a0" not in terminal.getvalue()


def test_a_key_with_a_trailing_cr_is_stripped_and_one_with_controls_refused_unechoed(
    intake: FakeIntake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GENOBASE_API_KEY", GOOD_KEY + "\r")
    assert cli.main(["ls"]) == 0
    monkeypatch.setenv("GENOBASE_API_KEY", "gbk_SECRET\x01x")
    assert cli.main(["ls", "--debug"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "the API key has invalid characters" in err and "SECRET" not in err
    assert cli.main(["login", "--endpoint", ENDPOINT, "--api-key", "gbk_SECRET é"]) == ExitCode.USAGE
    assert "SECRET" not in capsys.readouterr().err


def test_two_files_whose_results_coincide_are_refused_before_anything_is_sent(
    intake: FakeIntake, clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for directory, sequence in (("run1", "AAAA"), ("run2", "CCCC")):
        (clean_environment / directory).mkdir()
        (clean_environment / directory / "sample.fa").write_text(f">x\n{sequence}\n")
    assert cli.main(["upload", "run*/sample.fa", "--wait", "-o", "results"]) == ExitCode.USAGE
    assert "would both write" in capsys.readouterr().err
    assert intake.requests == []


def test_a_profiles_key_is_not_sent_to_an_endpoint_from_the_environment(
    intake: FakeIntake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config.save_profile("prod", config.Profile("https://prod.example", GOOD_KEY))
    monkeypatch.delenv("GENOBASE_API_KEY")
    monkeypatch.setenv("GENOBASE_ENDPOINT", "http://test-host.example:8000")
    connection = config.resolve(profile="prod")
    assert connection.api_key is None and connection.endpoint_from == "GENOBASE_ENDPOINT"
    assert "goes only to https://prod.example" in connection.key_source
    typed = config.resolve(endpoint="http://test-host.example:8000", profile="prod")
    assert typed.api_key == GOOD_KEY  # both typed on the same command line
    assert cli.main(["ls", "--profile", "prod"]) == ExitCode.AUTHENTICATION
    err = capsys.readouterr().err
    assert "no key sent (the key of profile 'prod' goes only to https://prod.example)" in err
    assert "GENOBASE_ENDPOINT" in err


def test_a_key_over_plain_http_to_another_host_is_warned_about_once(
    intake: FakeIntake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GENOBASE_ENDPOINT", "http://intake.example:8000")
    assert cli.main(["ls"]) == 0
    assert capsys.readouterr().err.count("warning: the API key goes to http://intake.example:8000 unencrypted") == 1
    assert cli.main(["login", "--endpoint", "http://intake.example:8000", "--profile", "lab"]) == 0
    assert "unencrypted" in capsys.readouterr().err
    for quiet_endpoint in ("https://intake.example", "http://127.0.0.2:8000", "http://[::1]:8000", "http://localhost"):
        monkeypatch.setenv("GENOBASE_ENDPOINT", quiet_endpoint)
        cli.main(["ls"])
        assert "unencrypted" not in capsys.readouterr().err, quiet_endpoint


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://a\nb",
        "http://a b",
        "http://host\x1b[31m",
        "http://user:s3cr3t@host",
        "http://host?x=1",
        "http://host#frag",
        "ftp://host",
        "http://",
        "http://host:99999",
        "http://hos\u202et",
    ],
)
def test_an_endpoint_is_checked(endpoint: str) -> None:
    with pytest.raises(CliError) as refused:
        config.normalise_endpoint(endpoint)
    assert refused.value.code == ExitCode.USAGE and "s3cr3t" not in refused.value.message


def test_a_profile_name_with_a_final_newline_is_refused() -> None:
    with pytest.raises(CliError):
        config.check_profile_name("x\n")
    with pytest.raises(CliError):
        config.save_profile("x\n", config.Profile("http://x", "k"))
    assert config.check_profile_name("lab-1") == "lab-1"


def test_a_long_file_name_still_gets_its_result(intake: FakeIntake, clean_environment: Path) -> None:
    upload_id = intake.add("a" * 250 + ".fa", "done", result=b"{}")
    assert cli.main(["get", upload_id]) == 0
    (written,) = [p for p in clean_environment.iterdir()]
    assert len(written.name.encode()) <= 255 and written.name.endswith(".fa.json")
    wide = Upload.model_validate(intake.uploads[intake.add("名" * 100 + ".fa", "done", result=b"{}")])
    name = commands.result_name(wide).name
    assert len(name.encode()) <= 255 and name.endswith(".fa.json")


def test_a_result_s_default_name_holds_no_control_character(intake: FakeIntake) -> None:
    """The server's file name becomes a name on disk: nothing a terminal would act on goes with it."""
    hostile = Upload.model_validate(intake.uploads[intake.add("x\x1b]0;t\x07\u202e.fa", "done", result=b"{}")])
    assert commands.result_name(hostile).name == "x_]0;t__.fa.json"


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(302, headers={"Location": "https://sso.example/login"}),
        httpx.Response(200, text="<html>welcome</html>", headers={"Content-Type": "text/html"}),
    ],
)
def test_an_answer_that_is_not_the_intakes_says_so(
    answer: httpx.Response, intake: FakeIntake, capsys: pytest.CaptureFixture[str]
) -> None:
    intake.handle = lambda request: answer  # type: ignore[method-assign]
    assert cli.main(["ls"]) == ExitCode.UNREACHABLE
    err = capsys.readouterr().err
    assert "unexpected answer" in err and "is the endpoint a Genobase intake?" in err and "JSONDecodeError" not in err
