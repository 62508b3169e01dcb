"""``genobase keys`` over ``FakeKeys``: what it prints and returns, the key alone on the last line.

The command reaches the keys only through the use cases and ``PostgresKeys.from_settings``, which
is replaced here by the fake (the contract suite holds the two alike).
"""

from __future__ import annotations

import pytest

from genobase import cli
from shared.domain.access import Caller, is_key_id, key_hash, key_id
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
    assert [k.owner for k in keys.all_keys()] == ["alice"]
    assert cli.main(["keys", "create", "nobody", "--another"]) == 1
    assert "error: no owner named 'nobody'" in capsys.readouterr().err
    assert cli.main(["keys", "create", "alice", "--another", "--admin"]) == 1
    assert "error: the keys of 'alice' are not admin keys" in capsys.readouterr().err
    assert len(keys.all_keys()) == 1


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
    [made] = keys.of_owner("bob")
    assert made.revoked_at is not None


def test_a_failed_s3_user_revokes_only_the_new_key_of_a_rotation(
    keys: FakeKeys, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["keys", "create", "bob"]) == 0
    old = capsys.readouterr().out.strip().splitlines()[-1]

    def no_s3_user(settings: Settings, owner: str) -> None:
        raise ConnectionError("the object store is away")

    monkeypatch.setattr(cli, "_create_owner_s3_user", no_s3_user)
    assert cli.main(["keys", "create", "bob", "--another", "--s3"]) == 1
    assert authenticate(keys, old) == Caller("bob", admin=False)  # the old key goes on
    assert [k.revoked_at is None for k in keys.of_owner("bob")] == [True, False]


def test_list_and_revoke(keys: FakeKeys, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("carol", "bob"):
        assert cli.main(["keys", "create", name]) == 0
    assert cli.main(["keys", "revoke", "bob"]) == 0
    assert "revoked 'bob'" in capsys.readouterr().out
    assert cli.main(["keys", "revoke", "bob"]) == 1  # no active key of that name any more
    assert "no active key named 'bob'" in capsys.readouterr().err
    assert cli.main(["keys", "list"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "OWNER", "ROLE", "CREATED", "LAST", "USED", "STATE"]
    by_owner = {line.split()[1]: line for line in lines}
    assert list(by_owner) == ["bob", "carol"]
    assert all(is_key_id(line.split()[0]) for line in lines)
    assert "owner" in by_owner["bob"] and "revoked" in by_owner["bob"] and by_owner["carol"].endswith("active")
    assert "never" in by_owner["carol"]  # made, not used yet
    assert not any("gbk_" in line for line in lines)


def made_key(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """The id and the key ``keys create`` printed."""
    out = capsys.readouterr().out.strip().splitlines()
    key = out[-1]
    made_id = next(word for word in out[-2].split() if is_key_id(word))
    assert made_id == key_id(key_hash(key))
    return made_id, key


def test_rotate_then_revoke_the_old_key_by_id(keys: FakeKeys, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", "create", "dan"]) == 0
    old_id, old = made_key(capsys)
    assert cli.main(["keys", "create", "dan", "--another"]) == 0
    new_id, new = made_key(capsys)
    assert authenticate(keys, old) == authenticate(keys, new) == Caller("dan", admin=False)
    assert cli.main(["keys", "revoke", old_id]) == 0
    out = capsys.readouterr().out
    assert f"revoked key {old_id} of 'dan'" in out and "holds other active keys" in out
    assert authenticate(keys, old) is None and authenticate(keys, new) == Caller("dan", admin=False)
    assert cli.main(["keys", "revoke", old_id]) == 1
    assert f"no active key with the id {old_id!r}" in capsys.readouterr().err
    assert cli.main(["keys", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in listed] == [old_id, new_id]  # oldest first


def test_revoking_an_owners_last_key_by_id_revokes_the_owner_and_another_key_reinstates_it(
    keys: FakeKeys, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["keys", "create", "erin"]) == 0
    old_id, old = made_key(capsys)
    assert cli.main(["keys", "revoke", old_id]) == 0
    out = capsys.readouterr().out
    assert "revoked 'erin'" in out and "keys create erin --another" in out
    assert cli.main(["keys", "create", "erin"]) == 1  # a revoked owner is not taken by chance
    capsys.readouterr()
    assert cli.main(["keys", "create", "erin", "--another"]) == 0
    out = capsys.readouterr().out
    assert "owner 'erin' reinstated" in out
    new = out.strip().splitlines()[-1]
    assert authenticate(keys, new) == Caller("erin", admin=False) and authenticate(keys, old) is None
