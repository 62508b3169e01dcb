"""An owner's uploads as a list, their labels, and idempotent registration: the rules, no I/O.

* **Listing** is keyset pagination over ``(created_at, id)``, newest first: a page is the uploads
  strictly before the previous page's last one, so that a page costs the same wherever it is, and
  uploads registered meanwhile (newer) neither shift nor repeat what follows. The cursor handed to
  the client is that last ``(created_at, id)``, opaque (base64url) and checked strictly on its way
  back (``Cursor.decode``): a malformed one is refused, never a server error.
* **Labels** are string keys and values describing an upload (sample, run, project), bounded
  (``check_labels``); ``merge_labels`` applies a JSON merge patch (RFC 7396) to them.
* **Idempotency**: a registration may carry a client's key; the same key and the same request
  (``request_fingerprint``) give the same upload back, another request under the key is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.domain.uploads import State, unprintable

# --- the listing ----------------------------------------------------------------------------------

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_NAME_PREFIX_BYTES = 512  # a file name's own bound (services/intake/schemas.py)
MAX_LABEL_FILTERS = 32

# States an upload can be in that a listing leaves out unless asked for by name (``state=``): a
# deleted upload's tombstone. Defined once, here.
HIDDEN_FROM_LISTING: frozenset[State] = frozenset({State.DELETED})


class InvalidCursor(ValueError):
    """A cursor this service did not hand out (or one mangled on the way)."""


@dataclass(frozen=True, order=True)
class Cursor:
    """Where a page ends: the last upload's creation time and id (the listing's sort key)."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        text = f"{self.created_at.astimezone(UTC).isoformat()}|{self.id}"
        return base64.urlsafe_b64encode(text.encode("ascii")).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """The cursor ``encode`` made, or ``InvalidCursor``; anything else, however built, is refused."""
        if not 1 <= len(token) <= 128 or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
            raise InvalidCursor("not a cursor this service handed out")
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
            stamp, _, upload_id = text.partition("|")
            created_at = datetime.fromisoformat(stamp)
            parsed_id = uuid.UUID(upload_id)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidCursor("not a cursor this service handed out") from exc
        if created_at.tzinfo is None or str(parsed_id) != upload_id:
            raise InvalidCursor("not a cursor this service handed out")
        return cls(created_at.astimezone(UTC), parsed_id)


@dataclass(frozen=True)
class UploadFilter:
    """Which uploads a listing shows. ``owner`` None: every owner's (an admin's listing).

    ``states`` empty: every state but ``HIDDEN_FROM_LISTING``. ``name_prefix``: the file name
    starts with it (a plain prefix: no wildcards). ``labels``: each pair must be among the
    upload's. ``created_after``/``created_before``: exclusive bounds.
    """

    owner: str | None
    states: frozenset[State] = frozenset()
    name_prefix: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None

    def shown_states(self) -> frozenset[State]:
        return self.states or frozenset(State) - HIDDEN_FROM_LISTING

    def matches(
        self, owner: str | None, state: State, filename: str, labels: Mapping[str, str], created_at: datetime
    ) -> bool:
        """The filter in Python, as the store's query applies it (the fake's listing)."""
        return (
            (self.owner is None or owner == self.owner)
            and state in self.shown_states()
            and (self.name_prefix is None or filename.startswith(self.name_prefix))
            and all(labels.get(k) == v for k, v in self.labels.items())
            and (self.created_after is None or created_at > self.created_after)
            and (self.created_before is None or created_at < self.created_before)
        )


# --- labels ---------------------------------------------------------------------------------------

MAX_LABELS = 32
MAX_LABEL_VALUE_BYTES = 256
MAX_LABELS_BYTES = 4096  # keys and values together, UTF-8
LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}")


class InvalidLabels(ValueError):
    """Labels beyond their bounds; the message says which bound, safe to show."""


def check_labels(labels: Mapping[str, Any]) -> dict[str, str]:
    """The labels if they keep within the bounds: at most ``MAX_LABELS``, keys matching
    ``LABEL_KEY``, string values of at most ``MAX_LABEL_VALUE_BYTES`` without control
    characters, ``MAX_LABELS_BYTES`` in all."""
    if len(labels) > MAX_LABELS:
        raise InvalidLabels(f"at most {MAX_LABELS} labels")
    total = 0
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY.fullmatch(key):
            raise InvalidLabels(f"a label key matches {LABEL_KEY.pattern} (1 to 63 characters)")
        if not isinstance(value, str):
            raise InvalidLabels(f"the value of label {key} is not a string")
        size = len(value.encode("utf-8", errors="surrogatepass"))
        if size > MAX_LABEL_VALUE_BYTES:
            raise InvalidLabels(f"the value of label {key} is over {MAX_LABEL_VALUE_BYTES} bytes of UTF-8")
        if unprintable(value):  # control and format characters, lone surrogates (Unicode category C)
            raise InvalidLabels(f"the value of label {key} holds control or format characters")
        total += len(key) + size
    if total > MAX_LABELS_BYTES:
        raise InvalidLabels(f"labels are at most {MAX_LABELS_BYTES} bytes of UTF-8 in all")
    return dict(labels)


def merge_labels(current: Mapping[str, str], patch: Mapping[str, str | None] | None) -> dict[str, str]:
    """RFC 7396 merge patch of the ``labels`` member: a key set to a string is set, to null removed;
    the member itself null removes every label. The result is checked (``InvalidLabels``)."""
    if patch is None:
        return {}
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return check_labels(merged)


def parse_label_filter(text: str) -> tuple[str, str]:
    """``key=value`` of a listing's ``label`` parameter (the value may hold ``=``)."""
    key, equals, value = text.partition("=")
    if not equals or not LABEL_KEY.fullmatch(key):
        raise InvalidLabels(f"a label filter is key=value, the key matching {LABEL_KEY.pattern}")
    check_labels({key: value})
    return key, value


# --- idempotent registration ----------------------------------------------------------------------

IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")


class IdempotencyKeyReused(Exception):
    """The owner registered another request under the same idempotency key."""


def request_fingerprint(request: Mapping[str, Any]) -> str:
    """The SHA-256 of a request's canonical JSON: equal requests (whatever their key order or
    defaults spelled out) have equal fingerprints."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
