"""The CLI's side of validation and retry: how a validation's answer is shown, and that a
validation never resumes as a stored upload of the same file (or the other way round)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genobase import cli, transfer


def test_a_validations_report_is_printed_and_there_is_no_result_to_fetch(capsys: pytest.CaptureFixture[str]) -> None:
    report = {"records": 3, "format": "fasta", "bytes": 10, "source_md5": "m", "source_sha256": "s",
              "collection_digest": "d"}  # fmt: skip
    status = {"state": "done", "mode": "validate", "validation": report, "result": None}
    assert cli._report(status, output=None) == 0
    assert json.loads(capsys.readouterr().out) == {"valid": True, **report}


def test_a_failed_validation_shows_its_position(capsys: pytest.CaptureFixture[str]) -> None:
    error = {"code": "invalid_character", "message": "bad '!'", "line": 5, "column": 3}
    assert cli._report({"state": "failed", "mode": "validate", "error": error}, output=None) == 1
    assert "invalid_character: bad '!' at line 5, column 3" in capsys.readouterr().err


def test_a_validation_and_an_upload_of_one_file_resume_apart(tmp_path: Path) -> None:
    path = tmp_path / "a.fa"
    path.write_bytes(b">a\nAC\n")
    stored = transfer._state_path(tmp_path, path, "http://intake")
    assert transfer._state_path(tmp_path, path, "http://intake", "store") == stored  # as before
    assert transfer._state_path(tmp_path, path, "http://intake", "validate") != stored


def test_the_commands_parse() -> None:
    parser = cli.build_parser()
    validate = parser.parse_args(["validate", "my.fa"])
    assert (validate.func, validate.validate, validate.wait, validate.circular) == (cli.cmd_upload, True, True, False)
    upload = parser.parse_args(["upload", "my.fa", "--validate"])
    assert upload.validate and not upload.wait
    assert parser.parse_args(["upload", "my.fa"]).validate is False
    retry = parser.parse_args(["retry", "1234", "--wait"])
    assert (retry.func, retry.id, retry.wait) == (cli.cmd_retry, "1234", True)
