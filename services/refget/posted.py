"""A posted level-2 sequence collection (``POST /comparison/{digest}``), checked before it is compared.

The body has been bounded by bytes and by nesting (``BodyLimit``: at most ``MAX_DEPTH``, an object
of arrays of pairs) before it gets here; here every element is bounded too, not only their count,
and typed as the seqcol schema types it. The comparison keys each element by value, so one huge
or odd element would cost as much as a collection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from services.refget.ranges import Refused
from shared.usecases.refget import LABELS

MAX_DEPTH = 3  # {"name_length_pairs": [{"name": …, "length": …}]}
STRING_ARRAYS = frozenset({"names", "sequences", "sorted_sequences", "accessions"})
INTEGER_ARRAYS = frozenset({"lengths"})
PAIR_ARRAYS = frozenset({"name_length_pairs", "sorted_name_length_pairs"})
# Attributes served with a collection but never digested nor compared (the seqcol schema's
# ``passthru``): a client that posts back a collection it read sends them; they are dropped.
PASSTHRU = frozenset({LABELS})
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_NAME = 64
_LARGEST_LENGTH = 2**63  # a length is a bigint, as stored


@dataclass(frozen=True)
class PostLimits:
    max_elements: int  # in one array
    max_element_bytes: int  # one string element (a name is at most a FASTA header)


def _bad(message: str) -> Refused:
    return Refused(400, "bad_request", message)


def _too_large(message: str) -> Refused:
    return Refused(413, "element_too_large", message)


def _string(value: object, attribute: str, limits: PostLimits) -> str:
    if not isinstance(value, str):
        raise _bad(f"{attribute}: every element must be a string")
    if len(value) > limits.max_element_bytes:  # characters: at most 4 bytes each, still bounded
        raise _too_large(f"{attribute}: an element is longer than {limits.max_element_bytes}")
    return value


def _length(value: object, attribute: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _LARGEST_LENGTH:
        raise _bad(f"{attribute}: every element must be a non-negative integer below 2^63")
    return value


def _pair(value: object, attribute: str, limits: PostLimits) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != {"name", "length"}:
        raise _bad(f"{attribute}: every element must be an object of exactly 'name' and 'length'")
    return {"length": _length(value["length"], attribute), "name": _string(value["name"], attribute, limits)}


def _scalar(value: object, attribute: str, limits: PostLimits) -> object:
    """An element of an attribute outside the schema: a string, number, boolean or null."""
    if isinstance(value, str):
        return _string(value, attribute, limits)
    if value is None or isinstance(value, bool | int | float):
        return value
    raise _bad(f"{attribute}: elements of an attribute outside the schema must be strings, numbers or null")


def _elements(attribute: str, values: list[Any], limits: PostLimits) -> list[Any]:
    if attribute in STRING_ARRAYS:
        return [_string(v, attribute, limits) for v in values]
    if attribute in INTEGER_ARRAYS:
        return [_length(v, attribute) for v in values]
    if attribute in PAIR_ARRAYS:
        return [_pair(v, attribute, limits) for v in values]
    return [_scalar(v, attribute, limits) for v in values]


def parse_collection(body: bytes, limits: PostLimits) -> dict[str, list[Any]]:
    """The posted collection: an object of arrays, each element typed and bounded; else ``Refused``."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: only if BodyLimit's depth check was skipped
        raise _bad("the body must be a JSON object") from None
    if not isinstance(document, dict):
        raise _bad("the body must be a JSON object of arrays (a level-2 collection)")
    if len(document) > MAX_ATTRIBUTES:
        raise Refused(413, "collection_too_large", f"a collection has at most {MAX_ATTRIBUTES} attributes")
    collection: dict[str, list[Any]] = {}
    for attribute, values in document.items():
        if len(attribute) > MAX_ATTRIBUTE_NAME:
            raise _bad(f"attribute names are at most {MAX_ATTRIBUTE_NAME} characters")
        if attribute in PASSTHRU:
            continue
        if not isinstance(values, list):
            raise _bad(f"{attribute}: must be an array")
        if len(values) > limits.max_elements:
            raise Refused(
                413, "collection_too_large", f"collections above {limits.max_elements} elements are not compared"
            )
        collection[attribute] = _elements(attribute, values, limits)
    return collection
