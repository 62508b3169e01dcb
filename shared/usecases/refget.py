"""The read API's use cases: refget v2.0 sequences and sequence collections, over the read ports.

What a read does, apart from HTTP (``services/refget/api.py`` parses the request and shapes the
answer) and apart from the store (``shared/domain/read_ports.py``: Postgres in the service, fakes
in the unit tests):

* who sees what: a reader sees its owner's finished uploads; an admin key or public reading
  (``reader`` None) sees everyone's; another owner's sequence or collection is not found, as one
  that does not exist;
* an identifier that cannot be a digest is not found without asking the store (a NUL byte, say,
  would be a database error);
* a sequence streams span by span, each span one read of the store: a client that reads slowly
  holds one span in memory, never a database session;
* a collection's level 2 is bounded before it is read: by its count, then by its names' bytes.

Refusals are ``ReadRefused`` (a code and a safe message): ``NotFound``, ``TooLarge``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from shared.domain.access import Caller
from shared.domain.read_ports import CollectionIndex, CollectionReads, ResidueReads, SequenceIndex
from shared.domain.reads import StoredCollection, StoredSequence, read_spans
from shared.domain.seqcol import ATTRIBUTES, compare
from shared.runtime.settings import Settings

# A reader: the owner behind a key, or None when reads are public (GENOBASE_REFGET_PUBLIC=true).
Reader = Caller | None

_MD5 = 32  # hex digits
# A seqcol digest (of a collection or of one attribute): 32 base64url characters.
_DIGEST = re.compile(r"[A-Za-z0-9_-]{32}")
# What a collection listing may filter on: the attributes, and the transient sorted pairs.
LIST_FILTERS = (*ATTRIBUTES, "sorted_name_length_pairs")


class ReadRefused(Exception):
    """A read refused, with a code and a message safe to show (at most 80 characters of the input)."""

    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ReadRefused):
    """Nothing the reader sees answers to this identifier (or attribute)."""

    code = "not_found"


class TooLarge(ReadRefused):
    """A collection too large to serve at level 2."""

    code = "collection_too_large"


@dataclass(frozen=True)
class CollectionLimits:
    """How much of a collection's level 2 is served: elements in an array, and the names' bytes."""

    max_elements: int
    max_names_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> CollectionLimits:
        return cls(settings.seqcol_max_elements, settings.seqcol_max_post_bytes)


@dataclass(frozen=True)
class Page:
    """One page of a listing, and how many there are in all."""

    results: list[str]
    total: int
    page: int
    page_size: int


def visible_owner(reader: Reader) -> str | None:
    """Whose uploads a reader sees: everyone's (public reading, or an admin key) or its owner's."""
    return None if reader is None or reader.admin else reader.name


def sequence_digest(raw: str) -> str | None:
    """An id as stored: ``md5:``/``ga4gh:`` prefixes dropped; None if it cannot be a digest."""
    value = raw
    for prefix in ("md5:", "ga4gh:"):
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
    if value.startswith("SQ.") and len(value) == 35:
        return value
    if len(value) == _MD5 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    return None


# --- sequences --------------------------------------------------------------------------------------


def sequence_service_info() -> dict[str, Any]:
    refget = {
        "circular_supported": True,
        "subsequence_limit": None,
        "algorithms": ["md5", "ga4gh"],
        "identifier_types": ["md5", "ga4gh"],
    }
    return {
        "id": "org.genobase.refget",
        "name": "Genobase refget",
        "type": {"group": "org.ga4gh", "artifact": "refget", "version": "2.0.0"},
        "organization": {"name": "Genobase", "url": "https://github.com/genobase"},
        "version": "2.0.0",
        "refget": refget,
        # v1.0's shape, for clients (and the compliance suite) written against it
        "service": {**refget, "supported_api_versions": ["1.0", "2.0"]},
    }


def find_sequence(sequences: SequenceIndex, raw_id: str, reader: Reader) -> StoredSequence:
    """The sequence, if an upload the reader sees holds it; ``NotFound`` otherwise (another
    owner's like an unknown one)."""
    digest = sequence_digest(raw_id)
    found = None if digest is None else sequences.find_sequence(digest, visible_owner(reader))
    if found is None:
        raise NotFound(f"no sequence {raw_id[:80]}")
    return found


def residues(sequences: ResidueReads, found: StoredSequence, start: int, end: int, *, wraps: bool) -> Iterator[bytes]:
    """``[start, end)`` of the sequence (``wraps``: a circular one read from ``start`` to its end,
    then ``[0, end)``), upper-cased (the digests are of the upper-cased sequence), span by span.
    Each span is one read of the store, done before its pieces are yielded: a client that reads
    slowly holds one span's pieces in memory, never a session other requests wait for."""
    ends = [(start, found.length), (0, end)] if wraps else [(start, end)]
    for first, last in ends:
        for span in read_spans(found, first, last):
            for piece in sequences.read_span(found, span):
                yield piece.upper()


def sequence_metadata(sequences: SequenceIndex, found: StoredSequence, reader: Reader) -> dict[str, Any]:
    """The sequence's digests and length, and the names it has in the uploads the reader sees."""
    names = sequences.aliases(found, visible_owner(reader))
    return {
        "md5": found.md5,
        "ga4gh": found.refget,
        "length": found.length,
        "aliases": [{"alias": name, "naming_authority": "genobase"} for name in names],
    }


# --- sequence collections ---------------------------------------------------------------------------


# The passthru attribute that carries an upload's labels (shared/domain/listing.py).
LABELS = "labels"


def seqcol_service_info() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((resources.files("refget") / "schemas" / "seqcol.json").read_text())
    # The upload's labels: a passthru attribute (served as is at every level, digested nowhere).
    schema["properties"][LABELS] = {
        "type": "object",
        "collated": False,
        "description": "what the owner says the upload holding the collection is (sample, run, project)",
        "additionalProperties": {"type": "string"},
    }
    schema.setdefault("ga4gh", {}).setdefault("passthru", []).append(LABELS)
    return {
        "id": "org.genobase.seqcol",
        "name": "Genobase sequence collections",
        "type": {"group": "org.ga4gh", "artifact": "refget-seqcol", "version": "1.0.0"},
        "organization": {"name": "Genobase", "url": "https://github.com/genobase"},
        "version": "1.0.0",
        "seqcol": {"schema": schema, "sorted_name_length_pairs": True},
    }


def _stored(collections: CollectionIndex, digest: str, reader: Reader) -> StoredCollection:
    found = None
    if _DIGEST.fullmatch(digest):
        found = collections.find_collection(digest, visible_owner(reader))
    if found is None:
        raise NotFound(f"no collection {digest[:80]}")
    return found


def _arrays(collections: CollectionReads, stored: StoredCollection, limits: CollectionLimits) -> dict[str, list[Any]]:
    """Level 2, bounded before it is read: by its count, and by its names' bytes (a name can be as
    long as a FASTA header)."""
    if stored.collection.count > limits.max_elements:
        raise TooLarge(f"collections above {limits.max_elements} sequences are served at level 1 only")
    if collections.names_bytes(stored.upload_id) > limits.max_names_bytes:
        raise TooLarge(
            f"collections whose names exceed {limits.max_names_bytes} bytes are served at level 1 only",
        )
    return collections.collection_arrays(stored.upload_id)


def collection(
    collections: CollectionReads, digest: str, reader: Reader, level: int, limits: CollectionLimits
) -> dict[str, Any]:
    """A collection at level 1 (its attributes' digests) or 2 (its arrays), with the passthru
    attribute ``labels``: those of the upload whose records are the arrays served (when several
    uploads the reader sees hold the same collection, one of them). A reader without a key (refget
    made public) gets none: labels describe an owner's samples and runs, which public reading of
    sequences does not make public."""
    stored = _stored(collections, digest, reader)
    served = stored.collection.level1() if level == 1 else _arrays(collections, stored, limits)
    return {**served, LABELS: dict(stored.labels) if reader is not None else {}}


def attribute(
    collections: CollectionReads, name: str, digest: str, reader: Reader, limits: CollectionLimits
) -> list[Any]:
    """One attribute's array, found by its own digest."""
    if name not in ATTRIBUTES:  # unknown, or transient (sorted_name_length_pairs): never served alone
        raise NotFound(f"no attribute {name[:80]}")
    found = None
    if _DIGEST.fullmatch(digest):
        found = collections.find_collection(digest, visible_owner(reader), attribute=name)
    if found is None:
        raise NotFound(f"no {name} {digest[:80]}")
    return _arrays(collections, found, limits)[name]


def compare_stored(
    collections: CollectionReads, digest_a: str, digest_b: str, reader: Reader, limits: CollectionLimits
) -> dict[str, Any]:
    """The seqcol comparison of two stored collections (``a`` found and read before ``b``)."""
    a = _arrays(collections, _stored(collections, digest_a, reader), limits)
    b = _arrays(collections, _stored(collections, digest_b, reader), limits)
    return {"digests": {"a": digest_a, "b": digest_b}, **compare(a, b)}


def compare_with_posted(
    collections: CollectionReads,
    digest_a: str,
    posted: dict[str, list[Any]],
    reader: Reader,
    limits: CollectionLimits,
) -> dict[str, Any]:
    """The comparison of a stored collection with a posted level-2 one (already checked)."""
    a = _arrays(collections, _stored(collections, digest_a, reader), limits)
    return {"digests": {"a": digest_a, "b": "POSTed seqcol"}, **compare(a, posted)}


def list_collections(
    collections: CollectionIndex, parameters: Mapping[str, str], page: int, page_size: int, reader: Reader
) -> Page:
    """Collections of finished uploads the reader sees; any attribute given among ``parameters``
    (``names=<digest>``…) must match (AND); other parameters are ignored. A value that is not a
    digest matches nothing (and the store is not asked)."""
    filters = {k: v for k, v in parameters.items() if k in LIST_FILTERS}
    if not all(_DIGEST.fullmatch(v) for v in filters.values()):
        return Page([], 0, page, page_size)
    results, total = collections.list_collections(filters, page, page_size, visible_owner(reader))
    return Page(results, total, page, page_size)


def list_attribute_digests(collections: CollectionIndex, name: str, page: int, page_size: int, reader: Reader) -> Page:
    """The distinct digests of one attribute over the collections the reader sees."""
    if name not in ATTRIBUTES:
        raise NotFound(f"no attribute {name[:80]}")
    results, total = collections.list_attribute_digests(name, page, page_size, visible_owner(reader))
    return Page(results, total, page, page_size)
