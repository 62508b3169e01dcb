"""``FakeKeys``: the ``KeyStore`` port in memory, for the keys' use cases and the HTTP key check.

It passes the contract suite that ``PostgresKeys`` passes (tests/contract/test_keys_contract.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from shared.domain.access import ApiKey, ListedKey


@dataclass(frozen=True)
class _Stored:
    hashed: str
    key: ListedKey


class FakeKeys:
    """Keys by name, each with its hash, its admin flag and its times, like the ``api_keys`` table."""

    def __init__(self) -> None:
        self.stored: dict[str, _Stored] = {}
        self.lookups = 0  # how many times ``find`` ran (the key check must not look up some keys)
        self._lock = threading.Lock()

    def add(self, name: str, hashed: str, *, admin: bool) -> bool:
        with self._lock:
            if name in self.stored:
                return False
            self.stored[name] = _Stored(hashed, ListedKey(name, admin, datetime.now(UTC), None))
            return True

    def find(self, hashed: str) -> ApiKey | None:
        with self._lock:
            self.lookups += 1
            for stored in self.stored.values():
                if stored.hashed == hashed:
                    return ApiKey(stored.key.name, stored.key.admin, stored.key.revoked_at is not None)
            return None

    def revoke(self, name: str) -> bool:
        with self._lock:
            stored = self.stored.get(name)
            if stored is None or stored.key.revoked_at is not None:
                return False
            self.stored[name] = replace(stored, key=replace(stored.key, revoked_at=datetime.now(UTC)))
            return True

    def all_keys(self) -> list[ListedKey]:
        with self._lock:
            return [self.stored[name].key for name in sorted(self.stored)]
