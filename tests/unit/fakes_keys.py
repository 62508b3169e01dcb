"""``FakeKeys``: the ``KeyStore`` port in memory, for the keys' use cases and the HTTP key check.

It passes the contract suite that ``PostgresKeys`` passes (tests/contract/test_keys_contract.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from shared.domain.access import LAST_USE_EVERY, Added, ApiKey, ListedKey, OwnerKeys, RevokedKey, decide_add


@dataclass(frozen=True)
class _Stored:
    hashed: str
    key: ListedKey


class FakeKeys:
    """Keys by id, each with its owner, its hash, its admin flag and its times, like ``api_keys``."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.stored: dict[str, _Stored] = {}
        self.lookups = 0  # how many times ``find`` ran (the key check must not look up some keys)
        self.writes_of_use = 0  # how many times ``mark_used`` wrote a time
        self._clock = clock
        self._lock = threading.Lock()

    def of_owner(self, owner: str) -> list[ListedKey]:
        with self._lock:
            return [s.key for s in self.stored.values() if s.key.owner == owner]

    def add(self, key_id: str, owner: str, hashed: str, *, admin: bool, another: bool) -> Added:
        with self._lock:
            mine = [s.key for s in self.stored.values() if s.key.owner == owner]
            existing = OwnerKeys(len(mine), sum(k.revoked_at is None for k in mine), any(k.admin for k in mine))
            added = decide_add(existing, admin=admin, another=another)
            if added.kept:
                if key_id in self.stored or any(s.hashed == hashed for s in self.stored.values()):
                    raise ValueError("a key of that id or hash exists")  # the table's unique columns
                listed = ListedKey(key_id, owner, admin, self._clock(), None, None)
                self.stored[key_id] = _Stored(hashed, listed)
            return added

    def find(self, hashed: str) -> ApiKey | None:
        with self._lock:
            self.lookups += 1
            for stored in self.stored.values():
                if stored.hashed == hashed:
                    key = stored.key
                    return ApiKey(key.id, key.owner, key.admin, key.revoked_at is not None, key.last_used_at)
            return None

    def mark_used(self, key_id: str) -> None:
        with self._lock:
            stored = self.stored.get(key_id)
            now = self._clock()
            if stored is None or (
                stored.key.last_used_at is not None and stored.key.last_used_at >= now - LAST_USE_EVERY
            ):
                return
            self.stored[key_id] = replace(stored, key=replace(stored.key, last_used_at=now))
            self.writes_of_use += 1

    def revoke(self, key_id: str) -> RevokedKey | None:
        with self._lock:
            stored = self.stored.get(key_id)
            if stored is None or stored.key.revoked_at is not None:
                return None
            self.stored[key_id] = replace(stored, key=replace(stored.key, revoked_at=self._clock()))
            owner = stored.key.owner
            valid = any(s.key.owner == owner and s.key.revoked_at is None for s in self.stored.values())
            return RevokedKey(key_id, owner, owner_revoked=not valid)

    def revoke_owner(self, owner: str) -> int:
        with self._lock:
            mine = [i for i, s in self.stored.items() if s.key.owner == owner and s.key.revoked_at is None]
            for key_id in mine:
                stored = self.stored[key_id]
                self.stored[key_id] = replace(stored, key=replace(stored.key, revoked_at=self._clock()))
            return len(mine)

    def all_keys(self) -> list[ListedKey]:
        with self._lock:
            return sorted((s.key for s in self.stored.values()), key=lambda k: (k.owner, k.created_at, k.id))
