"""The keys' use cases over ``FakeKeys``: what the CLI, the stack and the HTTP key check rely on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.access import (
    LAST_USE_EVERY,
    Added,
    Caller,
    OwnerKeys,
    RevokedKey,
    decide_add,
    is_key_id,
    key_hash,
    key_id,
    last_use_due,
    valid_key_name,
)
from shared.usecases.keys import (
    ADMIN_NAMES,
    AdminDiffers,
    InvalidKeyName,
    KeyExists,
    KeyRefused,
    NoSuchOwner,
    authenticate,
    create_admin_key,
    create_key,
    issue_key,
    list_keys,
    revoke_key,
    revoke_key_id,
)
from tests.unit.fakes_keys import FakeKeys


def test_a_made_key_is_kept_only_as_its_hash_under_an_id_made_from_it() -> None:
    keys = FakeKeys()
    key = create_key(keys, "alice", admin=False)
    [(made_id, stored)] = keys.stored.items()
    assert stored.hashed == key_hash(key) and key not in repr(stored)
    assert made_id == key_id(key_hash(key)) == "k_" + key_hash(key)[:16] and is_key_id(made_id)
    assert stored.key.owner == "alice"
    assert authenticate(keys, key) == Caller("alice", admin=False)


def test_a_key_id_is_never_an_owners_name() -> None:
    assert not any(is_key_id(name) for name in ("alice", "k-0123456789abcdef", "k_0123456789ABCDEF", "k_12"))
    assert not valid_key_name("k_0123456789abcdef")


@pytest.mark.parametrize(
    ("total", "valid", "owner_admin", "admin", "another", "added"),
    [
        (0, 0, False, False, False, Added.NEW_OWNER),
        (0, 0, False, True, False, Added.NEW_OWNER),
        (0, 0, False, False, True, Added.NO_OWNER),
        (1, 1, False, False, False, Added.OWNER_EXISTS),
        (1, 0, False, False, False, Added.OWNER_EXISTS),  # a revoked name is not taken by chance
        (2, 1, False, False, True, Added.ANOTHER),
        (2, 0, False, False, True, Added.REINSTATED),
        (1, 1, True, True, True, Added.ANOTHER),
        (1, 1, True, False, True, Added.ADMIN_DIFFERS),
        (1, 0, False, True, True, Added.ADMIN_DIFFERS),
    ],
)
def test_which_new_key_is_kept(
    total: int, valid: int, owner_admin: bool, admin: bool, another: bool, added: Added
) -> None:
    assert decide_add(OwnerKeys(total, valid, owner_admin), admin=admin, another=another) is added
    assert added.kept == (added in (Added.NEW_OWNER, Added.ANOTHER, Added.REINSTATED))


def test_last_use_is_due_when_never_or_not_within_the_minute() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert last_use_due(None, now)
    assert not last_use_due(now - LAST_USE_EVERY + timedelta(seconds=1), now)
    assert last_use_due(now - LAST_USE_EVERY, now)


def test_authentication_writes_a_keys_use_at_most_once_a_minute() -> None:
    now = [datetime(2026, 1, 1, 12, tzinfo=UTC)]
    keys = FakeKeys(clock=lambda: now[0])
    key = create_key(keys, "alice", admin=False)
    for _ in range(5):
        assert authenticate(keys, key, now=now[0]) == Caller("alice", admin=False)
    assert keys.writes_of_use == 1 and keys.all_keys()[0].last_used_at == now[0]
    now[0] += timedelta(seconds=59)
    authenticate(keys, key, now=now[0])
    assert keys.writes_of_use == 1
    now[0] += timedelta(seconds=2)
    authenticate(keys, key, now=now[0])
    assert keys.writes_of_use == 2 and keys.all_keys()[0].last_used_at == now[0]
    revoke_key(keys, "alice")
    now[0] += timedelta(minutes=5)
    assert authenticate(keys, key, now=now[0]) is None
    assert keys.writes_of_use == 2  # a revoked key's attempt is not a use


def test_another_key_rotates_with_no_gap_and_the_owner_stays() -> None:
    keys = FakeKeys()
    old = create_key(keys, "alice", admin=False)
    new = issue_key(keys, "alice", admin=False, another=True)
    assert new.added is Added.ANOTHER and not new.reinstated and new.owner == "alice"
    assert authenticate(keys, old) == authenticate(keys, new.secret) == Caller("alice", admin=False)
    revoked = revoke_key_id(keys, key_id(key_hash(old)))
    assert revoked == RevokedKey(key_id(key_hash(old)), "alice", owner_revoked=False)
    assert authenticate(keys, old) is None
    assert authenticate(keys, new.secret) == Caller("alice", admin=False)
    assert revoke_key_id(keys, key_id(key_hash(old))) is None  # revoked already


def test_a_revoked_owner_is_reinstated_by_another_key() -> None:
    keys = FakeKeys()
    old = create_key(keys, "bob", admin=False)
    assert revoke_key(keys, "bob")
    with pytest.raises(KeyExists):
        create_key(keys, "bob", admin=False)
    again = issue_key(keys, "bob", admin=False, another=True)
    assert again.reinstated and authenticate(keys, again.secret) == Caller("bob", admin=False)
    assert authenticate(keys, old) is None  # the revoked key stays revoked


def test_another_key_of_no_owner_or_of_another_kind_is_refused() -> None:
    keys = FakeKeys()
    with pytest.raises(NoSuchOwner) as none:
        issue_key(keys, "carol", admin=False, another=True)
    create_key(keys, "carol", admin=False)
    with pytest.raises(AdminDiffers) as differs:
        issue_key(keys, "carol", admin=True, another=True)
    assert (none.value.code, differs.value.code) == ("no_such_owner", "admin_differs")
    assert "--another" in none.value.message and "'carol'" in differs.value.message
    assert len(keys.of_owner("carol")) == 1


def test_refusals_carry_a_code_and_a_safe_message() -> None:
    keys = FakeKeys()
    create_key(keys, "alice", admin=False)
    with pytest.raises(KeyRefused) as taken:
        create_key(keys, "alice", admin=False)
    with pytest.raises(KeyRefused) as invalid:
        create_key(keys, "Alice!", admin=False)
    assert (taken.value.code, invalid.value.code) == ("key_exists", "invalid_key_name")
    assert isinstance(taken.value, KeyExists) and isinstance(invalid.value, InvalidKeyName)
    assert isinstance(taken.value, ValueError)  # what callers caught before the use cases had codes
    assert "'alice'" in taken.value.message and "a-z" in invalid.value.message


def test_an_invalid_name_never_reaches_the_store() -> None:
    keys = FakeKeys()
    with pytest.raises(InvalidKeyName):
        create_key(keys, "has/slash", admin=True)
    assert keys.stored == {}


def test_a_revoked_key_authenticates_no_one_and_an_unknown_one_looks_the_same() -> None:
    keys = FakeKeys()
    key = create_key(keys, "bob", admin=True)
    assert authenticate(keys, key) == Caller("bob", admin=True)
    assert revoke_key(keys, "bob") and not revoke_key(keys, "bob")
    assert authenticate(keys, key) is None
    assert authenticate(keys, "gbk_unknown") is None


def test_the_list_shows_owners_flags_and_revocations_by_owner() -> None:
    keys = FakeKeys()
    for name, admin in (("carol", False), ("admin", True), ("bob", False)):
        create_key(keys, name, admin=admin)
    revoke_key(keys, "bob")
    listed = list_keys(keys)
    assert [(k.owner, k.admin, k.revoked_at is not None) for k in listed] == [
        ("admin", True, False),
        ("bob", False, True),
        ("carol", False, False),
    ]


def test_the_first_admin_key_takes_the_first_free_admin_name() -> None:
    keys = FakeKeys()
    first = create_admin_key(keys)
    create_key(keys, "admin-1", admin=False)
    third = create_admin_key(keys)
    assert authenticate(keys, first) == Caller("admin", admin=True)
    assert authenticate(keys, third) == Caller("admin-2", admin=True)


def test_no_free_admin_name_is_a_refusal() -> None:
    keys = FakeKeys()
    for attempt in range(ADMIN_NAMES):
        create_key(keys, "admin" if attempt == 0 else f"admin-{attempt}", admin=False)
    with pytest.raises(KeyExists):
        create_admin_key(keys)
