"""``genobase completion``: the scripts are valid for their shells, and bash completes commands,
options and the options' choices from the argparse tree (run in a real bash)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from genobase import cli, completion


def complete(script: Path, *words: str) -> list[str]:
    """What bash offers after ``genobase WORDS`` (the last word is the one being completed)."""
    line = " ".join(f"'{w}'" for w in ("genobase", *words))
    program = (
        f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words)}; _genobase; "
        "printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    answer = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30, check=True)
    return [word for word in answer.stdout.splitlines() if word]


@pytest.fixture
def bash_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert cli.main(["completion", "bash"]) == 0
    path = tmp_path / "genobase.bash"
    path.write_text(capsys.readouterr().out)
    return path


def test_bash_completes_commands_options_and_choices(bash_script: Path) -> None:
    assert subprocess.run(["bash", "-n", str(bash_script)], check=False).returncode == 0
    assert complete(bash_script, "up") == ["upload", "up"] or sorted(complete(bash_script, "up")) == ["up", "upload"]
    assert complete(bash_script, "upload", "--wa") == ["--wait"]
    assert sorted(complete(bash_script, "upload", "x.fa", "--format", "fa")) == ["fasta", "fastq"]
    assert complete(bash_script, "keys", "re") == ["revoke"]
    assert complete(bash_script, "completion", "f") == ["fish"]
    assert "--endpoint" in complete(bash_script, "ls", "--")
    assert complete(bash_script, "ls", "--state", "fa") == ["failed"]


def test_every_command_and_option_is_in_the_tree() -> None:
    root = completion.tree(cli.build_parser())
    assert {"login", "ls", "status", "wait", "get", "rm", "retry", "upload", "validate", "completion", "up",
            "down", "keys", "lookup", "dead-letters"} <= set(root.subcommands)  # fmt: skip
    assert "--intake" not in root.subcommands["upload"].options  # hidden: the former name
    assert {"--json", "--endpoint", "--api-key", "--profile", "--quiet", "--debug"} <= set(
        root.subcommands["ls"].options
    )


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_the_other_shells_scripts_parse(shell: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "upload" in script
    assert "--wait" in script or "-l wait" in script
    assert shutil.which(shell), f"{shell} is not installed: scripts/setup.sh installs it"
    path = tmp_path / f"genobase.{shell}"
    path.write_text(script)
    checked = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_fish_completes_commands_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not only parsed: fish itself completes from the script (``complete -C`` asks it as a user's Tab does)."""
    assert cli.main(["completion", "fish"]) == 0
    path = tmp_path / "genobase.fish"
    path.write_text(capsys.readouterr().out)

    def complete(line: str) -> list[str]:
        asked = subprocess.run(
            ["fish", "--no-config", "-c", f"source {path}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            check=True,
        )
        return [row.split("\t")[0] for row in asked.stdout.splitlines()]

    assert "--state" in complete("genobase ls --st")
    assert {"upload", "ls", "login"} <= set(complete("genobase "))
