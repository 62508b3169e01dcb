"""``genobase`` as a user runs it, against the running stack: ``python -m genobase.cli`` as a
process, in a temporary directory (not the checkout, so no stack file), with a clean environment
(PATH, and HOME and the XDG directories inside the test's own directory).

Login then ``ls --json``; two files uploaded with labels and ``--wait``; ``status``, ``wait``,
``get -o`` (the file equals the result), ``rm`` and ``retry``; a wrong key (exit 3), a closed port
(exit 6), another owner's upload (exit 4), each one line and no traceback; Ctrl-C during a
multipart upload (exit 130, the resume hint) and the same command run again resuming it.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from genobase import stack
from shared.postgres.keys import PostgresKeys
from shared.runtime.settings import Settings
from shared.s3.store import ObjectStore
from shared.usecases.keys import create_key
from tests.conftest import Pipeline
from tests.helpers import generated_fasta

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


class User:
    """An owner with a key of its own, a home directory and a working directory of its own."""

    def __init__(self, pipeline: Pipeline, base: Path, name: str) -> None:
        self.name = name
        self.key = create_key(PostgresKeys.from_settings(pipeline.settings), name, admin=False)
        self.endpoint = pipeline.settings.status_base_url
        self.home = base / "home"
        self.work = base / "work"
        self.work.mkdir(parents=True)

    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            # The checkout's code (this worktree) rather than whichever copy the venv installed.
            "PYTHONPATH": str(ROOT),
        }

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "genobase.cli", *args]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), env=self.env(), cwd=self.work, capture_output=True, text=True, timeout=timeout
        )

    def ok(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, (args, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr and self.key not in done.stdout + done.stderr
        return done


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command's error: exactly one line on stderr, no traceback."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def alice(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> User:
    user = User(pipeline, tmp_path_factory.mktemp("alice"), f"cli-a-{uuid.uuid4().hex[:8]}")
    login = user.ok("login", "--endpoint", user.endpoint, "--api-key", user.key)
    assert "the key works with" in login.stderr
    return user


@pytest.fixture(scope="module")
def bob(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> User:
    user = User(pipeline, tmp_path_factory.mktemp("bob"), f"cli-b-{uuid.uuid4().hex[:8]}")
    user.ok("login", "--endpoint", user.endpoint, "--api-key", user.key)
    return user


def test_login_keeps_a_profile_that_ls_uses(alice: User) -> None:
    config = alice.home / ".config" / "genobase" / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    listed = alice.ok("ls", "--json")
    assert isinstance(json.loads(listed.stdout), list)


def test_two_files_with_labels_and_wait_then_status_wait_get_rm(alice: User, pipeline: Pipeline) -> None:
    (alice.work / "one.fa").write_bytes(generated_fasta(4, seed=11))
    (alice.work / "two.fa").write_bytes(generated_fasta(3, seed=12))
    sent = alice.ok("upload", "one.fa", "two.fa", "--label", "run=cli7", "--label", "sample=s1", "--wait", "--json")
    uploads = {upload["filename"]: upload for upload in json.loads(sent.stdout)}
    assert set(uploads) == {"one.fa", "two.fa"}
    assert {u["state"] for u in uploads.values()} == {"done"}
    assert all(u["labels"] == {"run": "cli7", "sample": "s1"} for u in uploads.values())
    assert "\x1b" not in sent.stderr  # stderr is a pipe: plain lines
    listed = json.loads(alice.ok("ls", "--json", "--label", "run=cli7").stdout)
    assert sorted(row["filename"] for row in listed) == ["one.fa", "two.fa"]
    table = alice.ok("ls", "--label", "run=cli7").stdout.splitlines()
    assert table[0].split() == ["ID", "STATE", "FILENAME", "RECORDS", "LABELS", "CREATED"] and len(table) == 3

    upload_id = uploads["one.fa"]["id"]
    status = json.loads(alice.ok("status", upload_id, "--json").stdout)
    assert (status["id"], status["state"]) == (upload_id, "done")
    assert "done" in alice.ok("wait", upload_id).stdout
    got = alice.ok("get", upload_id, "-o", "one.json")
    assert got.stdout.strip() == "one.json"
    result = httpx.get(
        f"{alice.endpoint}/uploads/{upload_id}/result",
        headers={"Authorization": f"Bearer {alice.key}"},
        follow_redirects=True,
        timeout=60,
    )
    assert (alice.work / "one.json").read_bytes() == result.content
    assert alice.run("get", upload_id, "-o", "one.json").returncode == 7  # not overwritten without --force
    assert alice.ok("get", upload_id).stdout.strip() == "one.fa.json"  # the default name, in the current directory
    assert (alice.work / "one.fa.json").read_bytes() == result.content

    removed = json.loads(alice.ok("rm", upload_id, "--json").stdout)
    assert removed["state"] == "deleted"
    assert json.loads(alice.ok("status", upload_id, "--json").stdout)["state"] == "deleted"
    ended = alice.run("wait", upload_id)
    assert ended.returncode == 1 and "deleted" in ended.stderr


def test_a_failed_upload_exits_1_and_retry_makes_a_new_generation(alice: User) -> None:
    (alice.work / "broken.fa").write_bytes(b">ok\nACGT\nthis line is not a sequence!\n")
    failed = alice.run("upload", "broken.fa", "--wait", "--json")
    assert failed.returncode == 1, failed.stderr
    [upload] = json.loads(failed.stdout)
    assert upload["state"] == "failed" and "line 3" in failed.stderr
    again = alice.run("retry", upload["id"], "--wait", "--json")
    assert again.returncode == 1, again.stderr  # the same object fails the same way
    retried = json.loads(again.stdout)
    assert (retried["state"], retried["generation"]) == ("failed", 2)
    (alice.work / "fine.fa").write_bytes(generated_fasta(2, seed=31))
    [fine] = json.loads(alice.ok("upload", "fine.fa", "--wait", "--json").stdout)
    refused = alice.run("retry", fine["id"])  # a done upload cannot be retried: refused by the API
    assert refused.returncode == 7 and "not_failed" in one_line(refused)


def test_a_wrong_key_is_exit_3_in_one_line(alice: User) -> None:
    refused = alice.run("ls", "--api-key", "gbk_not-a-key-of-anyone")
    assert refused.returncode == 3
    line = one_line(refused)
    assert "the key was refused" in line and "gbk_not-a-key" not in line


def test_a_closed_port_is_exit_6_with_the_hint(alice: User) -> None:
    port = stack.free_port()
    unreachable = alice.run("ls", "--endpoint", f"http://127.0.0.1:{port}", "--api-key", alice.key, timeout=120)
    assert unreachable.returncode == 6
    assert f"is `genobase up` running? endpoint http://127.0.0.1:{port}" in one_line(unreachable)


def test_another_owners_upload_is_exit_4(alice: User, bob: User) -> None:
    (alice.work / "mine.fa").write_bytes(generated_fasta(2, seed=21))
    [mine] = json.loads(alice.ok("upload", "mine.fa", "--json").stdout)
    for command in (("status", mine["id"]), ("get", mine["id"]), ("rm", mine["id"]), ("retry", mine["id"])):
        theirs = bob.run(*command)
        assert theirs.returncode == 4, (command, theirs.stderr)
        assert "not found" in one_line(theirs)
    assert json.loads(alice.ok("status", mine["id"], "--json").stdout)["state"] != "deleted"


def fasta_of(path: Path, megabytes: int) -> int:
    """A FASTA of ``megabytes`` MiB of random bases, one record per MiB (quick to write)."""
    rng = random.Random(megabytes)
    table = bytes(b"ACGT"[i % 4] for i in range(256))
    with path.open("wb") as out:
        for record in range(megabytes):
            bases = rng.randbytes(MiB).translate(table)
            out.write(f">r{record}\n".encode())
            out.write(b"\n".join(bases[i : i + 80] for i in range(0, len(bases), 80)) + b"\n")
    return megabytes


def test_ctrl_c_during_a_multipart_upload_then_the_same_command_resumes(
    alice: User, settings: Settings, multipart_intake: str
) -> None:
    source = alice.work / "big.fa"
    records = fasta_of(source, 48)  # ten parts of 5 MiB, sent one at a time
    command = alice.command(
        "upload", "big.fa", "--endpoint", multipart_intake, "--api-key", alice.key, "--parallel", "1",
        "--wait", "-o", "big.json",
    )  # fmt: skip
    # The key on the command line is this test's shortcut (the profile's endpoint is the other intake).
    process = subprocess.Popen(
        command, env=alice.env(), cwd=alice.work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    transfers = alice.home / ".local" / "share" / "genobase" / "transfers"
    store = ObjectStore(settings)
    deadline = time.monotonic() + 120
    ticket: dict[str, object] | None = None
    stored = 0
    while time.monotonic() < deadline and process.poll() is None:
        states = list(transfers.glob("*.json"))
        if states and ticket is None:
            ticket = json.loads(states[0].read_text())
        if ticket is not None:
            plan = ticket["multipart"]
            assert isinstance(plan, dict)
            stored = len(store.parts(str(ticket["bucket"]), str(ticket["key"]), str(plan["upload_id"])))
            if stored >= 1:
                break
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert out == ""
    assert ticket is not None and stored >= 1, err
    assert process.returncode == 130, (process.returncode, err)
    assert err.strip().splitlines()[-1] == "genobase: interrupted -- run the same command again to resume"
    assert "Traceback" not in err and not (alice.work / "big.json").exists()
    plan = ticket["multipart"]
    assert isinstance(plan, dict)
    left = len(store.parts(str(ticket["bucket"]), str(ticket["key"]), str(plan["upload_id"])))
    assert left < int(plan["part_count"]), "the upload ended before Ctrl-C: nothing left to resume"

    again = subprocess.run(command, env=alice.env(), cwd=alice.work, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "big.fa: resuming: " in again.stderr and "parts already stored; sending" in again.stderr
    assert str(ticket["id"]) in again.stdout  # the same upload, resumed (not registered afresh)
    document = json.loads((alice.work / "big.json").read_text())
    assert len(document["records"]) == records
    assert document["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert list(transfers.glob("*.json")) == []
