"""Keys, callers and owners (shared/domain/access.py): who may see an upload."""

from __future__ import annotations

from shared.domain.access import Caller, can_see, key_hash, new_key, owner_of_object, valid_key_name


def test_keys_are_random_and_only_hashed() -> None:
    first, second = new_key(), new_key()
    assert first != second and len(first) > 40
    assert key_hash(first) == key_hash(first) != key_hash(second)
    assert first not in key_hash(first)


def test_key_names_are_path_safe() -> None:
    assert valid_key_name("alice") and valid_key_name("lab-7")
    for bad in ("", "Alice", "a/b", "-x", "x" * 64, "a b", "ü"):
        assert not valid_key_name(bad), bad


def test_an_object_belongs_to_the_owner_whose_prefix_it_is_under() -> None:
    owners = {"alice", "bob"}
    assert owner_of_object("alice/run1/reads.fa", owners) == "alice"
    assert owner_of_object("carol/reads.fa", owners) is None  # not a key's name
    assert owner_of_object("alice", owners) is None  # a bare name is not under the prefix


def test_owners_see_theirs_and_admins_see_all() -> None:
    alice, admin = Caller("alice", admin=False), Caller("root", admin=True)
    assert can_see(alice, "alice") and not can_see(alice, "bob") and not can_see(alice, None)
    assert can_see(admin, "bob") and can_see(admin, None)
