"""The ``KeyStore`` contract: ``FakeKeys`` (the unit tests' store) and ``PostgresKeys`` on the run's
real database pass the same tests, through the keys' use cases as the CLI and the HTTP services use it.

The Postgres store is shared by the whole run, so each test makes names of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.access import Caller, KeyStore, ListedKey, key_hash
from shared.postgres.connection import connect
from shared.postgres.keys import PostgresKeys
from shared.postgres.migrate import migrate, runtime_role
from shared.runtime.settings import Settings
from shared.usecases.keys import (
    InvalidKeyName,
    KeyExists,
    authenticate,
    create_key,
    list_keys,
    revoke_key,
)
from tests.unit.fakes_keys import FakeKeys


@pytest.fixture(params=["fake", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[KeyStore]:
    if request.param == "fake":
        yield FakeKeys()
        return
    settings: Settings = request.getfixturevalue("settings")
    with connect(settings, autocommit=True, owner=True) as owner:
        migrate(owner, runtime_role(settings))
    yield PostgresKeys.from_settings(settings)


def unique(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def listed(store: KeyStore, name: str) -> ListedKey:
    return next(key for key in list_keys(store) if key.name == name)


def test_a_key_is_made_and_found_by_the_key_itself(store: KeyStore) -> None:
    name = unique()
    key = create_key(store, name, admin=False)
    assert key.startswith("gbk_") and len(key) > 40
    assert authenticate(store, key) == Caller(name, admin=False)
    found = store.find(key_hash(key))
    assert found is not None and (found.name, found.admin, found.revoked) == (name, False, False)


def test_the_store_is_given_and_finds_the_hash_never_the_key(store: KeyStore) -> None:
    name = unique()
    key = create_key(store, name, admin=False)
    assert store.find(key) is None  # the key itself is not what is kept
    assert authenticate(store, key + "x") is None
    assert authenticate(store, "gbk_" + uuid.uuid4().hex) is None


def test_a_second_key_of_the_same_name_is_refused(store: KeyStore) -> None:
    name = unique()
    first = create_key(store, name, admin=False)
    with pytest.raises(KeyExists) as refused:
        create_key(store, name, admin=True)
    assert refused.value.code == "key_exists" and name in refused.value.message
    assert authenticate(store, first) == Caller(name, admin=False)  # the first key is untouched
    assert [key.name for key in list_keys(store)].count(name) == 1
    assert not store.add(name, key_hash("gbk_other"), admin=False)


@pytest.mark.parametrize("name", ["", "-starts-with-a-dash", "Upper", "under_score", "dot.ted", "a" * 64, "sp ace"])
def test_an_invalid_name_is_refused_and_nothing_is_kept(store: KeyStore, name: str) -> None:
    before = len(list_keys(store))
    with pytest.raises(InvalidKeyName) as refused:
        create_key(store, name, admin=False)
    assert refused.value.code == "invalid_key_name"
    assert len(list_keys(store)) == before


def test_the_longest_name_and_a_digit_first_are_valid(store: KeyStore) -> None:
    longest = uuid.uuid4().hex[:8] + "-" + "a" * 54
    assert len(longest) == 63
    for name in (longest, "0" + uuid.uuid4().hex[:8]):
        assert authenticate(store, create_key(store, name, admin=False)) == Caller(name, admin=False)


def test_a_revoked_key_is_found_revoked_and_authenticates_no_one(store: KeyStore) -> None:
    name = unique()
    key = create_key(store, name, admin=True)
    assert revoke_key(store, name) is True
    found = store.find(key_hash(key))
    assert found is not None and found.revoked and found.name == name
    assert authenticate(store, key) is None
    assert revoke_key(store, name) is False  # revoked already: nothing more to revoke


def test_revoking_an_unknown_name_revokes_nothing(store: KeyStore) -> None:
    other = unique()
    key = create_key(store, other, admin=False)
    assert revoke_key(store, unique()) is False
    assert authenticate(store, key) == Caller(other, admin=False)


def test_a_revoked_name_cannot_be_used_again(store: KeyStore) -> None:
    name = unique()
    create_key(store, name, admin=False)
    revoke_key(store, name)
    with pytest.raises(KeyExists):
        create_key(store, name, admin=False)
    assert listed(store, name).revoked_at is not None  # still the revoked key


def test_the_list_is_by_name_with_times_and_the_admin_flag(store: KeyStore) -> None:
    prefix = uuid.uuid4().hex[:8]
    made = {f"{prefix}-b": False, f"{prefix}-a2": True, f"{prefix}-c": False, f"{prefix}-a10": False}
    started = datetime.now(UTC) - timedelta(minutes=5)  # the database's clock may differ a little
    for name, admin in made.items():
        create_key(store, name, admin=admin)
    revoke_key(store, f"{prefix}-c")
    mine = [key for key in list_keys(store) if key.name.startswith(prefix)]
    assert [key.name for key in mine] == [f"{prefix}-a10", f"{prefix}-a2", f"{prefix}-b", f"{prefix}-c"]
    assert {key.name: key.admin for key in mine} == made
    assert all(key.created_at > started for key in mine)
    assert [key.name for key in mine if key.revoked_at is not None] == [f"{prefix}-c"]
    revoked = mine[-1].revoked_at
    assert revoked is not None and revoked >= mine[-1].created_at


def test_the_admin_flag_is_kept_and_reaches_the_caller(store: KeyStore) -> None:
    admin, owner = unique("adm"), unique("own")
    admin_key, owner_key = create_key(store, admin, admin=True), create_key(store, owner, admin=False)
    assert authenticate(store, admin_key) == Caller(admin, admin=True)
    assert authenticate(store, owner_key) == Caller(owner, admin=False)
    assert listed(store, admin).admin and not listed(store, owner).admin


def test_every_key_made_is_different(store: KeyStore) -> None:
    made = {create_key(store, unique(), admin=False) for _ in range(5)}
    assert len(made) == 5
