"""The ``KeyStore`` contract: ``FakeKeys`` (the unit tests' store) and ``PostgresKeys`` on the run's
real database pass the same tests, through the keys' use cases as the CLI and the HTTP services use it.

The Postgres store is shared by the whole run, so each test makes names of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.access import (
    LAST_USE_EVERY,
    Added,
    Caller,
    KeyStore,
    ListedKey,
    RevokedKey,
    is_key_id,
    key_hash,
    key_id,
)
from shared.postgres.connection import connect
from shared.postgres.keys import PostgresKeys
from shared.postgres.migrate import migrate, runtime_role
from shared.runtime.settings import Settings
from shared.usecases.keys import (
    AdminDiffers,
    InvalidKeyName,
    KeyExists,
    NoSuchOwner,
    authenticate,
    create_key,
    issue_key,
    list_keys,
    revoke_key,
    revoke_key_id,
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
    return next(key for key in list_keys(store) if key.owner == name)


def of_owner(store: KeyStore, name: str) -> list[ListedKey]:
    return [key for key in list_keys(store) if key.owner == name]


def test_a_key_is_made_and_found_by_the_key_itself(store: KeyStore) -> None:
    name = unique()
    key = create_key(store, name, admin=False)
    assert key.startswith("gbk_") and len(key) > 40
    assert authenticate(store, key) == Caller(name, admin=False)
    found = store.find(key_hash(key))
    assert found is not None and (found.owner, found.admin, found.revoked) == (name, False, False)
    assert found.id == key_id(key_hash(key)) == listed(store, name).id


def test_the_store_is_given_and_finds_the_hash_never_the_key(store: KeyStore) -> None:
    name = unique()
    key = create_key(store, name, admin=False)
    assert store.find(key) is None  # the key itself is not what is kept
    assert authenticate(store, key + "x") is None
    assert authenticate(store, "gbk_" + uuid.uuid4().hex) is None


def test_a_new_owner_of_a_name_that_has_keys_is_refused(store: KeyStore) -> None:
    name = unique()
    first = create_key(store, name, admin=False)
    with pytest.raises(KeyExists) as refused:
        create_key(store, name, admin=True)
    assert refused.value.code == "key_exists" and name in refused.value.message
    assert authenticate(store, first) == Caller(name, admin=False)  # the first key is untouched
    assert [key.owner for key in list_keys(store)].count(name) == 1
    other = key_hash("gbk_other" + name)
    assert store.add(key_id(other), name, other, admin=False, another=False) is Added.OWNER_EXISTS
    assert store.find(other) is None


def test_an_owner_holds_several_keys_each_with_its_id(store: KeyStore) -> None:
    name = unique()
    first = create_key(store, name, admin=False)
    second = issue_key(store, name, admin=False, another=True)
    third = issue_key(store, name, admin=False, another=True)
    assert second.added is third.added is Added.ANOTHER and not second.reinstated
    for key in (first, second.secret, third.secret):
        assert authenticate(store, key) == Caller(name, admin=False)
    mine = of_owner(store, name)
    assert [key.id for key in mine] == [key_id(key_hash(first)), second.id, third.id]  # oldest first
    assert len({key.id for key in mine}) == 3 and all(is_key_id(key.id) for key in mine)
    assert all(key.revoked_at is None and not key.admin for key in mine)


def test_revoking_one_key_by_id_leaves_the_owners_others(store: KeyStore) -> None:
    name = unique()
    old = create_key(store, name, admin=False)
    new = issue_key(store, name, admin=False, another=True)
    old_id = key_id(key_hash(old))
    assert revoke_key_id(store, old_id) == RevokedKey(old_id, name, owner_revoked=False)
    assert authenticate(store, old) is None
    assert authenticate(store, new.secret) == Caller(name, admin=False)
    assert revoke_key_id(store, old_id) is None  # revoked already
    assert revoke_key_id(store, "k_" + "0" * 16) is None  # no such key
    assert [key.revoked_at is not None for key in of_owner(store, name)] == [True, False]
    assert revoke_key_id(store, new.id) == RevokedKey(new.id, name, owner_revoked=True)  # its last


def test_revoking_an_owner_revokes_all_of_its_keys(store: KeyStore) -> None:
    name, other = unique(), unique()
    keys = [create_key(store, name, admin=True), issue_key(store, name, admin=True, another=True).secret]
    kept = create_key(store, other, admin=False)
    assert revoke_key(store, name) is True
    assert [authenticate(store, key) for key in keys] == [None, None]
    assert all(key.revoked_at is not None for key in of_owner(store, name))
    assert authenticate(store, kept) == Caller(other, admin=False)
    assert revoke_key(store, name) is False


def test_a_revoked_owner_is_reinstated_by_another_key(store: KeyStore) -> None:
    name = unique()
    old = create_key(store, name, admin=False)
    revoke_key(store, name)
    again = issue_key(store, name, admin=False, another=True)
    assert again.added is Added.REINSTATED and again.reinstated
    assert authenticate(store, again.secret) == Caller(name, admin=False)
    assert authenticate(store, old) is None  # the revoked key stays revoked
    assert [key.revoked_at is None for key in of_owner(store, name)] == [False, True]


def test_another_key_needs_an_owner_of_the_same_kind(store: KeyStore) -> None:
    name, admin = unique(), unique("adm")
    with pytest.raises(NoSuchOwner):
        issue_key(store, name, admin=False, another=True)
    assert of_owner(store, name) == []
    create_key(store, name, admin=False)
    create_key(store, admin, admin=True)
    with pytest.raises(AdminDiffers):
        issue_key(store, name, admin=True, another=True)
    with pytest.raises(AdminDiffers):
        issue_key(store, admin, admin=False, another=True)
    assert (len(of_owner(store, name)), len(of_owner(store, admin))) == (1, 1)
    assert authenticate(store, issue_key(store, admin, admin=True, another=True).secret) == Caller(admin, admin=True)


def test_a_keys_last_use_is_recorded_at_most_once_a_minute(store: KeyStore) -> None:
    name = unique()
    key = create_key(store, name, admin=False)
    assert listed(store, name).last_used_at is None  # made, never used
    started = datetime.now(UTC) - timedelta(minutes=5)  # the database's clock may differ a little
    assert authenticate(store, key) == Caller(name, admin=False)
    first = listed(store, name).last_used_at
    assert first is not None and first > started
    found = store.find(key_hash(key))
    assert found is not None and found.last_used_at == first
    store.mark_used(found.id)  # within the minute: nothing written
    assert authenticate(store, key) is not None
    assert listed(store, name).last_used_at == first
    # a minute later (as the clock of the look-up sees it) the use is due; the store itself writes
    # only where its own record is older than the minute, which it is not: still the first time
    assert authenticate(store, key, now=first + LAST_USE_EVERY + timedelta(seconds=1)) is not None
    assert listed(store, name).last_used_at == first


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
    assert found is not None and found.revoked and found.owner == name
    assert authenticate(store, key) is None
    assert revoke_key(store, name) is False  # revoked already: nothing more to revoke


def test_revoking_an_unknown_name_revokes_nothing(store: KeyStore) -> None:
    other = unique()
    key = create_key(store, other, admin=False)
    assert revoke_key(store, unique()) is False
    assert authenticate(store, key) == Caller(other, admin=False)


def test_a_revoked_name_is_not_taken_by_a_new_owner(store: KeyStore) -> None:
    name = unique()
    create_key(store, name, admin=False)
    revoke_key(store, name)
    with pytest.raises(KeyExists):
        create_key(store, name, admin=False)
    assert [key.revoked_at is not None for key in of_owner(store, name)] == [True]  # still the revoked key


def test_the_list_is_by_owner_with_times_and_the_admin_flag(store: KeyStore) -> None:
    prefix = uuid.uuid4().hex[:8]
    made = {f"{prefix}-b": False, f"{prefix}-a2": True, f"{prefix}-c": False, f"{prefix}-a10": False}
    started = datetime.now(UTC) - timedelta(minutes=5)  # the database's clock may differ a little
    for name, admin in made.items():
        create_key(store, name, admin=admin)
    revoke_key(store, f"{prefix}-c")
    mine = [key for key in list_keys(store) if key.owner.startswith(prefix)]
    assert [key.owner for key in mine] == [f"{prefix}-a10", f"{prefix}-a2", f"{prefix}-b", f"{prefix}-c"]
    assert {key.owner: key.admin for key in mine} == made
    assert all(key.created_at > started and key.last_used_at is None for key in mine)
    assert [key.owner for key in mine if key.revoked_at is not None] == [f"{prefix}-c"]
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
