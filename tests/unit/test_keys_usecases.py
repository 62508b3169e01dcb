"""The keys' use cases over ``FakeKeys``: what the CLI, the stack and the HTTP key check rely on."""

from __future__ import annotations

import pytest

from shared.domain.access import Caller, key_hash
from shared.usecases.keys import (
    ADMIN_NAMES,
    InvalidKeyName,
    KeyExists,
    KeyRefused,
    authenticate,
    create_admin_key,
    create_key,
    list_keys,
    revoke_key,
)
from tests.unit.fakes_keys import FakeKeys


def test_a_made_key_is_kept_only_as_its_hash() -> None:
    keys = FakeKeys()
    key = create_key(keys, "alice", admin=False)
    stored = keys.stored["alice"]
    assert stored.hashed == key_hash(key) and key not in repr(stored)
    assert authenticate(keys, key) == Caller("alice", admin=False)


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


def test_the_list_shows_names_flags_and_revocations_by_name() -> None:
    keys = FakeKeys()
    for name, admin in (("carol", False), ("admin", True), ("bob", False)):
        create_key(keys, name, admin=admin)
    revoke_key(keys, "bob")
    listed = list_keys(keys)
    assert [(k.name, k.admin, k.revoked_at is not None) for k in listed] == [
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
