"""The CLI's side of validation and retry: how a validation's answer is shown (and its failure's
position), that ``validate`` is ``upload --validate``, and that a validation never resumes as a
stored upload of the same file (or the other way round)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genobase import cli, commands
from genobase.client.transfer import state_path
from genobase.errors import ExitCode
from tests.unit.fakes_intake_http import FakeIntake


def test_a_validations_report_is_printed_and_nothing_is_downloaded(
    intake: FakeIntake, clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_environment / "my.fa").write_text(">a\nAC\n")
    assert cli.main(["validate", "my.fa"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[1:] == ["done", "my.fa", "2", "(valid)"]
    [status] = intake.uploads.values()
    assert status["mode"] == "validate" and intake.results == {}
    assert cli.main(["validate", "my.fa", "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert shown["validation"]["collection_digest"] == "d" * 32 and shown["result"] is None


def test_a_failed_validation_shows_its_position_and_exits_1(
    intake: FakeIntake, clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_environment / "bad.fa").write_text("!not a fasta\n")
    assert cli.main(["upload", "--validate", "bad.fa"]) == ExitCode.FAILED
    assert "failed: invalid_character: bad '!' at line 1, column 1" in capsys.readouterr().err


def test_a_validation_and_an_upload_of_one_file_resume_apart(tmp_path: Path) -> None:
    path = tmp_path / "a.fa"
    path.write_bytes(b">a\nAC\n")
    stored = state_path(tmp_path, path, "http://intake", "store")
    assert state_path(tmp_path, path, "http://intake", "validate") != stored


def test_the_commands_parse() -> None:
    parser = cli.build_parser()
    validate = parser.parse_args(["validate", "my.fa"])
    assert (validate.func, validate.validate, validate.wait, validate.circular) == (
        commands.cmd_upload,
        True,
        True,
        False,
    )
    upload = parser.parse_args(["upload", "my.fa", "--validate"])
    assert upload.validate and not upload.wait
    assert parser.parse_args(["upload", "my.fa"]).validate is False
    retry = parser.parse_args(["retry", "1234", "--wait"])
    assert (retry.func, retry.id, retry.wait) == (commands.cmd_retry, "1234", True)
    legacy = parser.parse_args(["upload", "my.fa", "--intake", "http://x:1"])  # the former flag still works
    assert legacy.endpoint == "http://x:1"
    assert parser.parse_args(["status"]).id is None and parser.parse_args(["status", "x"]).id == "x"
