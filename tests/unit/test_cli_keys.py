"""``genobase keys`` over ``FakeKeys``: what it prints and returns, the key alone on the last line.

The command reaches the keys only through the use cases and ``PostgresKeys.from_settings``, which
is replaced here by the fake (the contract suite holds the two alike).
"""

from __future__ import annotations

import pytest

from genobase import cli
from shared.domain.access import Caller
from shared.postgres.keys import PostgresKeys
from shared.runtime.settings import Settings
from shared.usecases.keys import authenticate
from tests.unit.fakes_keys import FakeKeys


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> FakeKeys:
    store = FakeKeys()
    monkeypatch.setattr(PostgresKeys, "from_settings", lambda settings: store)
    monkeypatch.setattr(cli, "load_settings", lambda: Settings(s3_access_key="", s3_secret_key=""))
    return store


def test_create_prints_the_key_once_alone_on_the_last_line(keys: FakeKeys, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", "create", "alice", "--admin"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "(admin)" in out[0] and "shown once" in out[0]
    assert authenticate(keys, out[-1]) == Caller("alice", admin=True)


def test_create_refuses_an_invalid_or_taken_name(keys: FakeKeys, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", "create", "Not_Valid"]) == 1
    assert "error: a key name is 1-63" in capsys.readouterr().err
    assert cli.main(["keys", "create", "alice"]) == 0
    assert cli.main(["keys", "create", "alice"]) == 1
    assert "error: a key named 'alice' exists already" in capsys.readouterr().err
    assert list(keys.stored) == ["alice"]


def test_a_failed_s3_user_revokes_the_new_key(
    keys: FakeKeys, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_s3_user(settings: Settings, owner: str) -> None:
        raise ConnectionError("the object store is away")

    monkeypatch.setattr(cli, "_create_owner_s3_user", no_s3_user)
    assert cli.main(["keys", "create", "bob", "--s3"]) == 1
    captured = capsys.readouterr()
    assert "could not make the S3 user (ConnectionError); key revoked" in captured.err
    assert "gbk_" not in captured.out  # the key, revoked, is never shown
    assert keys.stored["bob"].key.revoked_at is not None


def test_list_and_revoke(keys: FakeKeys, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("carol", "bob"):
        assert cli.main(["keys", "create", name]) == 0
    assert cli.main(["keys", "revoke", "bob"]) == 0
    assert "revoked 'bob'" in capsys.readouterr().out
    assert cli.main(["keys", "revoke", "bob"]) == 1  # no active key of that name any more
    assert "no active key named 'bob'" in capsys.readouterr().err
    assert cli.main(["keys", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["bob", "carol"]
    assert "owner" in lines[0] and "revoked" in lines[0] and lines[1].endswith("active")
    assert not any("gbk_" in line for line in lines)
