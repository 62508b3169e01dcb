"""Sequence collections (GA4GH seqcol): an upload's names, lengths and sequences, and their digests.

Each completed upload is one collection, its records in file order. The digests follow the
seqcol specification as the ``refget`` package (the reference implementation) computes them:
each attribute's array is canonical JSON (RFC 8785, ``refget.canonical_str``) digested with
``sha512t24u``; the collection's digest is that of the canonical level-1 object of the inherent
attributes (``refget.utils.level1_dict_to_seqcol_digest``).

The arrays can hold millions of elements, so they are never built: ``ArrayDigest`` hashes the
canonical JSON of an array as its elements stream by ("[" a "," b … "]" is exactly what
``canonical_str`` gives for the whole list), and ``compare`` counts with dictionaries, in time
linear in the arrays (the reference's comparison is quadratic). Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from refget.utils import canonical_str, level1_dict_to_seqcol_digest

from shared.parsing.native import accelerator as _native

# The attributes the collection's digest is made of (the seqcol schema's "inherent" ones).
INHERENT = ("names", "sequences")
ARRAYS = ("lengths", "names", "sequences")
# Level 2 serves these arrays; level 1 their digests and the transient one's (never served alone).
ATTRIBUTES = ("lengths", "name_length_pairs", "names", "sequences", "sorted_sequences")
TRANSIENT = ("sorted_name_length_pairs",)


def sha512t24u(data: bytes) -> str:
    """The GA4GH digest: SHA-512 truncated to 24 bytes, base64url (what ``refget`` computes)."""
    return base64.urlsafe_b64encode(hashlib.sha512(data).digest()[:24]).decode("ascii")


# ASCII from space to tilde, less '"' and '\\': a string of these is its own canonical JSON, quoted.
_PLAIN = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*\Z")


def canonical(element: Any) -> bytes:
    """``refget``'s ``canonical_str`` (RFC 8785 JSON, as the seqcol spec digests elements), without
    a ``json.dumps`` for the elements collections are made of: plain ASCII names and digests, and
    lengths. Anything else goes through ``canonical_str`` itself (a unit test holds them equal)."""
    kind = type(element)
    if kind is str and _PLAIN.match(element):
        return b'"' + str(element).encode("ascii") + b'"'
    if kind is int:
        return str(element).encode("ascii")
    encoded: bytes = canonical_str(element)
    return encoded


# The canonical name-length pair of a plain name and an int length (``canonical_pair``, as a format).
_PLAIN_PAIR = '{{"length":{},"name":"{}"}}'.format


def canonical_pair(name: bytes, length: bytes) -> bytes:
    """The canonical name-length pair from its canonical name and length (keys in sorted order)."""
    return b'{"length":' + length + b',"name":' + name + b"}"


class ArrayDigest:
    """The seqcol digest of a JSON array, fed one element at a time (bounded memory)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha512(b"[")
        self._first = True
        self.count = 0

    def add(self, element: Any) -> None:
        self._hash.update(canonical(element) if self._first else b"," + canonical(element))
        self._first = False
        self.count += 1

    def add_canonical(self, encoded: bytes) -> None:
        """An element already in canonical JSON (a plain digest string, say)."""
        self._hash.update(encoded if self._first else b"," + encoded)
        self._first = False
        self.count += 1

    def add_joined(self, encoded: bytes, count: int) -> None:
        """``count`` elements already in canonical JSON, joined by commas."""
        if not count:
            return
        if not self._first:
            self._hash.update(b",")
        self._hash.update(encoded)
        self._first = False
        self.count += count

    def digest(self) -> str:
        final = self._hash.copy()
        final.update(b"]")
        return base64.urlsafe_b64encode(final.digest()[:24]).decode("ascii")


def name_length_pair(name: str, length: int) -> dict[str, Any]:
    return {"length": length, "name": name}


def pair_digest(name: str, length: int) -> str:
    """One element of ``sorted_name_length_pairs``: the digest of a canonical name-length pair.

    (Hot: the parser computes it for every record.) In C where the extension is built, for a plain
    name and an int length: the same digest (``tests/unit/test_seqcol.py``) at about a quarter of
    the cost (0.7 against 2.7 µs here).
    """
    if _native is not None and type(length) is int:
        try:
            digest: str | None = _native.pair_digest(name, length)
        except OverflowError:  # beyond 64 bits: Python's
            digest = None
        if digest is not None:
            return digest
    return sha512t24u(canonical_pair(canonical(name), canonical(length)))


@dataclass(frozen=True)
class Collection:
    """A collection's level-1 form: one digest per attribute, and its own digest."""

    digest: str
    names: str
    lengths: str
    sequences: str
    name_length_pairs: str
    sorted_name_length_pairs: str
    sorted_sequences: str
    count: int

    def level1(self) -> dict[str, str]:
        return {
            "lengths": self.lengths,
            "name_length_pairs": self.name_length_pairs,
            "names": self.names,
            "sequences": self.sequences,
            "sorted_name_length_pairs": self.sorted_name_length_pairs,
            "sorted_sequences": self.sorted_sequences,
        }

    def attribute(self, name: str) -> str | None:
        """The digest of a servable attribute (a transient one is not: it has no array here)."""
        return self.level1()[name] if name in ATTRIBUTES else None


class CollectionDigester:
    """Digests of one collection from its records in file order and two sorted streams.

    ``add`` takes each record (name, length, ``SQ.`` digest) in order; ``finish`` takes the
    records' name-length pair digests and their sequence digests, each already sorted (the
    database sorts them, on disk if need be), and gives the ``Collection``.
    """

    def __init__(self) -> None:
        self._arrays = {name: ArrayDigest() for name in ARRAYS}
        self._names, self._lengths = self._arrays["names"], self._arrays["lengths"]
        self._sequences = self._arrays["sequences"]
        self._pairs = ArrayDigest()

    def add(self, name: str, length: int, sequence: str) -> None:
        """One record (``add_many`` takes many at a time, far cheaper per record)."""
        self.add_many([name], [length], [sequence])

    def add_many(self, names: Sequence[str], lengths: Sequence[int], sequences: Sequence[str]) -> None:
        """The next records, in order: the i-th name, length and ``SQ.`` digest make one record.

        (Hot: every record of an upload.) Records whose names and digests are all plain ASCII (the
        usual case, checked at once over their concatenation) are written as whole arrays slices
        by a few joins; anything else goes element by element through ``canonical``.
        """
        if not len(names) == len(lengths) == len(sequences):
            raise ValueError("names, lengths and sequences of unequal length")
        if not names:
            return
        if _PLAIN.match("".join(names)) and _PLAIN.match("".join(sequences)) and set(map(type, lengths)) == {int}:
            count = len(names)
            self._names.add_joined(('"' + '","'.join(names) + '"').encode("ascii"), count)
            self._lengths.add_joined(",".join(map(str, lengths)).encode("ascii"), count)
            self._sequences.add_joined(('"' + '","'.join(sequences) + '"').encode("ascii"), count)
            self._pairs.add_joined(",".join(map(_PLAIN_PAIR, lengths, names)).encode("ascii"), count)
            return
        for name, length, sequence in zip(names, lengths, sequences, strict=True):
            encoded_name, encoded_length = canonical(name), canonical(length)
            self._names.add_canonical(encoded_name)
            self._lengths.add_canonical(encoded_length)
            self._sequences.add_canonical(canonical(sequence))
            self._pairs.add_canonical(canonical_pair(encoded_name, encoded_length))

    def digest(self) -> str:
        """The collection's own digest from the records added so far: it is made of the inherent
        attributes alone (names and sequences), so it needs no sort (a validation reports it)."""
        level1 = {name: array.digest() for name, array in self._arrays.items()}
        return level1_dict_to_seqcol_digest(level1, list(INHERENT))  # type: ignore[no-any-return]

    def finish(self, sorted_pair_digests: Iterable[str], sorted_sequences: Iterable[str]) -> Collection:
        return self.complete(sorted_arrays(sorted_pair_digests, sorted_sequences))

    def complete(self, sorted_digests: SortedArrays) -> Collection:
        """The collection, once every record was added, with its sorted arrays digested apart
        (``sorted_arrays``: they can be read while the last records are still being added)."""
        level1 = {name: array.digest() for name, array in self._arrays.items()}
        return Collection(
            digest=level1_dict_to_seqcol_digest(level1, list(INHERENT)),
            names=level1["names"],
            lengths=level1["lengths"],
            sequences=level1["sequences"],
            name_length_pairs=self._pairs.digest(),
            sorted_name_length_pairs=sorted_digests.sorted_name_length_pairs,
            sorted_sequences=sorted_digests.sorted_sequences,
            count=self._arrays["names"].count,
        )


@dataclass(frozen=True)
class SortedArrays:
    """The level-1 digests of the two arrays that need every record sorted."""

    sorted_name_length_pairs: str
    sorted_sequences: str


def sorted_arrays(sorted_pair_digests: Iterable[str], sorted_sequences: Iterable[str]) -> SortedArrays:
    """Digests of the records' name-length pair digests and sequence digests, each already sorted
    (the database sorts them, on disk if need be)."""
    snlp, ordered = ArrayDigest(), ArrayDigest()
    for digest in sorted_pair_digests:
        snlp.add_canonical(b'"' + digest.encode("ascii") + b'"')
    for sequence in sorted_sequences:
        ordered.add(sequence)
    return SortedArrays(snlp.digest(), ordered.digest())


def compare(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> dict[str, Any]:
    """The seqcol comparison of two level-2 collections (without ``digests``), in linear time.

    The same answer as ``refget.utils.compare_seqcols``: attributes in a only, b only and both;
    per shared attribute, the elements in common (duplicates counted up to the smaller count) and
    whether the common elements come in the same order (None when it is undefined).
    """
    a_keys, b_keys = sorted(a), sorted(b)
    both = [k for k in sorted(set(a) | set(b)) if k in a and k in b]
    common: dict[str, int] = {}
    same_order: dict[str, bool | None] = {}
    for key in both:
        common[key], same_order[key] = _compare_elements(a[key], b[key])
    return {
        "attributes": {
            "a_only": [k for k in a_keys if k not in b],
            "b_only": [k for k in b_keys if k not in a],
            "a_and_b": both,
        },
        "array_elements": {
            "a_count": {k: len(a[k]) for k in a_keys},
            "b_count": {k: len(b[k]) for k in b_keys},
            "a_and_b_count": common,
            "a_and_b_same_order": same_order,
        },
    }


def _compare_elements(a: list[Any], b: list[Any]) -> tuple[int, bool | None]:
    in_a, in_b = Counter(_key(x) for x in a), Counter(_key(x) for x in b)
    a_filtered = [x for x in a if _key(x) in in_b]
    b_filtered = [x for x in b if _key(x) in in_a]
    overlap = min(len(a_filtered), len(b_filtered))
    if len(a_filtered) + len(b_filtered) < 1 or not (len(a_filtered) == len(b_filtered) == overlap):
        return overlap, None
    return overlap, [_key(x) for x in a_filtered] == [_key(x) for x in b_filtered]


def _key(element: Any) -> Any:
    """A hashable stand-in for an element (pairs are dictionaries)."""
    return canonical_str(element) if isinstance(element, (dict, list)) else element
