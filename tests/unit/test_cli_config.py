"""Profiles and precedence: ``genobase login`` (the key checked before it is kept), the file's
modes, its TOML, and which endpoint and key a command uses (flag > environment > profile > stack
file), the stack's admin key never sent to another endpoint."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import pytest

from genobase import cli, commands, config
from genobase.client import Client
from genobase.errors import CliError, ExitCode
from tests.unit.fakes_intake_http import ENDPOINT, GOOD_KEY, FakeIntake


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("GENOBASE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("GENOBASE_STACK_FILE", str(tmp_path / "stack.env"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeIntake:
    fake = FakeIntake()

    def open_client(connection: config.Connection) -> Client:
        return Client(connection.endpoint, connection.api_key, transport=fake.transport(), retries=0)

    monkeypatch.setattr(commands, "open_client", open_client)
    return fake


def stack_file(tmp_path: Path, port: int = 8123, key: str = "gbk_stack-admin") -> None:
    (tmp_path / "stack.env").write_text(f"GENOBASE_INTAKE_PORT={port}\nGENOBASE_API_KEY={key}\n")


def test_the_stack_file_is_the_last_resort(tmp_path: Path) -> None:
    default = config.resolve()
    assert (default.endpoint, default.api_key) == ("http://127.0.0.1:8000", None)
    assert "no profile, no stack file" in default.endpoint_from
    stack_file(tmp_path)
    found = config.resolve()
    assert (found.endpoint, found.api_key) == ("http://127.0.0.1:8123", "gbk_stack-admin")
    assert found.endpoint_from.startswith("the stack file")


def test_a_profile_beats_the_stack_file_and_the_environment_beats_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_file(tmp_path)
    config.save_profile("default", config.Profile("http://prod:8000/", "gbk_prod"))
    config.save_profile("lab", config.Profile("http://lab:8000", "gbk_lab"))
    chosen = config.resolve()
    assert (chosen.endpoint, chosen.api_key, chosen.endpoint_from) == (
        "http://prod:8000",
        "gbk_prod",
        "profile 'default'",
    )
    assert config.resolve(profile="lab").api_key == "gbk_lab"
    monkeypatch.setenv("GENOBASE_PROFILE", "lab")
    assert config.resolve().endpoint == "http://lab:8000"
    assert config.resolve(profile="default").endpoint == "http://prod:8000"  # the flag beats the environment
    monkeypatch.setenv("GENOBASE_ENDPOINT", "http://env:1")
    monkeypatch.setenv("GENOBASE_API_KEY", "gbk_env")
    env = config.resolve()
    assert (env.endpoint, env.api_key, env.endpoint_from, env.key_from) == (
        "http://env:1", "gbk_env", "GENOBASE_ENDPOINT", "GENOBASE_API_KEY",
    )  # fmt: skip
    flags = config.resolve("http://flag:2", "gbk_flag", "default")
    assert (flags.endpoint, flags.api_key) == ("http://flag:2", "gbk_flag")
    assert "gbk_flag" not in repr(flags)  # the key is never shown


def test_a_key_goes_only_to_its_own_endpoint_unless_its_profile_is_named(tmp_path: Path) -> None:
    stack_file(tmp_path)
    elsewhere = config.resolve("http://elsewhere:9")
    assert elsewhere.api_key is None  # the stack's admin key stays with the stack
    assert config.resolve("http://127.0.0.1:8123/").api_key == "gbk_stack-admin"
    config.save_profile("default", config.Profile("http://prod:8000", "gbk_prod"))
    assert config.resolve("http://elsewhere:9").api_key is None
    assert config.resolve("http://elsewhere:9", profile="default").api_key == "gbk_prod"


def test_an_unknown_profile_named_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CliError) as refused:
        config.resolve(profile="nope")
    assert refused.value.code == ExitCode.USAGE
    assert cli.main(["ls", "--profile", "nope"]) == ExitCode.USAGE
    assert "no profile 'nope'" in capsys.readouterr().err
    assert cli.main(["ls", "--profile", "bad.name"]) == ExitCode.USAGE


def test_the_file_is_600_in_a_700_directory_whatever_the_umask(tmp_path: Path) -> None:
    (tmp_path / "config" / "genobase").mkdir(parents=True, mode=0o755)
    old = os.umask(0)
    try:
        path = config.save_profile("default", config.Profile("http://a:1", "gbk_x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temporary file left


@pytest.mark.parametrize("value", ['quote " and \\ backslash', "tab\tnewline\n", "ünïcødé ✓", "del\x7f", "\x00\x1f"])
def test_the_toml_writer_round_trips(value: str, tmp_path: Path) -> None:
    # The writer itself, with any string; save_profile refuses such a key (not visible ASCII).
    config.write_profiles({"odd": config.Profile("http://a:1", value)})
    document = tomllib.loads(config.config_path().read_text())
    assert document["profiles"]["odd"] == {"endpoint": "http://a:1", "api_key": value}
    assert config.read_profiles()["odd"].api_key == value
    if not value.isascii() or not value.isprintable() or " " in value:
        with pytest.raises(CliError):
            config.save_profile("odd", config.Profile("http://a:1", value))


def test_a_broken_file_is_a_usage_error_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    config.config_dir().mkdir(parents=True)
    config.config_path().write_text("[profiles.default\n")
    assert cli.main(["ls"]) == ExitCode.USAGE
    assert "is not valid TOML" in capsys.readouterr().err


def test_login_checks_the_key_then_keeps_it(intake: FakeIntake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["login", "--endpoint", ENDPOINT, "--api-key", "wrong"]) == ExitCode.AUTHENTICATION
    assert not config.config_path().exists()
    assert cli.main(["login", "--endpoint", ENDPOINT + "/", "--api-key", GOOD_KEY, "--profile", "lab"]) == 0
    err = capsys.readouterr().err
    assert "the key works with http://localhost:8765" in err and "profile 'lab'" in err and GOOD_KEY not in err
    assert intake.requests[-1].url.params["limit"] == "1"
    assert config.read_profiles() == {"lab": config.Profile(ENDPOINT, GOOD_KEY)}
    assert cli.main(["ls", "--profile", "lab", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_login_takes_the_key_from_the_environment_or_a_prompt(
    intake: FakeIntake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GENOBASE_API_KEY", GOOD_KEY)
    assert cli.main(["login", "--endpoint", ENDPOINT]) == 0
    monkeypatch.delenv("GENOBASE_API_KEY")
    asked: list[str] = []

    def prompt(text: str, stream: object = None) -> str:
        asked.append(text)
        return GOOD_KEY + "\n"

    monkeypatch.setattr(commands.getpass, "getpass", prompt)
    assert cli.main(["login", "--endpoint", ENDPOINT, "--profile", "typed"]) == 0
    assert asked == [f"API key for {ENDPOINT}: "]
    assert set(config.read_profiles()) == {"default", "typed"}
    assert cli.main(["login"]) == ExitCode.USAGE
    assert "login needs --endpoint URL" in capsys.readouterr().err


def test_a_profile_readable_by_others_is_warned_about(intake: FakeIntake, capsys: pytest.CaptureFixture[str]) -> None:
    path = config.save_profile("default", config.Profile(ENDPOINT, GOOD_KEY))
    path.chmod(0o644)
    assert cli.main(["ls"]) == 0
    assert f"is mode 644, readable by others: chmod 600 {path}" in capsys.readouterr().err


def test_the_stack_file_is_read_from_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENOBASE_STACK_FILE")
    checkout = tmp_path / "checkout"
    (checkout / ".genobase").mkdir(parents=True)
    (checkout / ".genobase" / "stack.env").write_text("GENOBASE_INTAKE_PORT=8555\nGENOBASE_API_KEY=gbk_here\n")
    monkeypatch.chdir(checkout)
    assert (config.resolve().endpoint, config.resolve().api_key) == ("http://127.0.0.1:8555", "gbk_here")
    monkeypatch.chdir(tmp_path)  # elsewhere: no stack file, no key
    assert (config.resolve().endpoint, config.resolve().api_key) == ("http://127.0.0.1:8000", None)
