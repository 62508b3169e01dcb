"""A posted level-2 collection: typed as the seqcol schema types it, every element bounded."""

from __future__ import annotations

import json

import pytest

from services.refget.posted import PostLimits, parse_collection
from services.refget.ranges import Refused

LIMITS = PostLimits(max_elements=10, max_element_bytes=100)


def _parse(document: object) -> dict[str, list[object]]:
    return parse_collection(json.dumps(document).encode(), LIMITS)


def test_a_level_2_collection_is_taken_as_posted() -> None:
    collection = {
        "names": ["chr1", "chr2"],
        "lengths": [10, 20],
        "sequences": ["SQ.a", "SQ.b"],
        "name_length_pairs": [{"name": "chr1", "length": 10}, {"length": 20, "name": "chr2"}],
        "topology": ["linear", None],  # outside the schema: scalars
    }
    parsed = _parse(collection)
    assert parsed["names"] == ["chr1", "chr2"] and parsed["topology"] == ["linear", None]
    assert parsed["name_length_pairs"][1] == {"length": 20, "name": "chr2"}


@pytest.mark.parametrize(
    ("document", "status", "code"),
    [
        ([1, 2], 400, "bad_request"),
        ({"names": "chr1"}, 400, "bad_request"),
        ({"names": [1]}, 400, "bad_request"),
        ({"lengths": [-1]}, 400, "bad_request"),
        ({"lengths": [True]}, 400, "bad_request"),
        ({"lengths": [2**63]}, 400, "bad_request"),
        ({"name_length_pairs": [{"name": "x"}]}, 400, "bad_request"),
        ({"name_length_pairs": [{"name": "x", "length": 1, "more": [1]}]}, 400, "bad_request"),
        ({"other": [{"a": 1}]}, 400, "bad_request"),
        ({"names": ["x" * 101]}, 413, "element_too_large"),
        ({"name_length_pairs": [{"name": "x" * 101, "length": 1}]}, 413, "element_too_large"),
        ({"other": ["x" * 101]}, 413, "element_too_large"),
        ({"names": ["x"] * 11}, 413, "collection_too_large"),
        ({f"a{i}": [] for i in range(33)}, 413, "collection_too_large"),
    ],
)
def test_refusals(document: object, status: int, code: str) -> None:
    with pytest.raises(Refused) as refused:
        _parse(document)
    assert (refused.value.status, refused.value.code) == (status, code)


def test_not_json_and_huge_integers_are_bad_requests() -> None:
    for body in (b"{", b'{"lengths": [' + b"9" * 5000 + b"]}", b"\xff"):
        with pytest.raises(Refused) as refused:
            parse_collection(body, LIMITS)
        assert refused.value.status == 400


def test_a_collection_read_back_with_its_labels_is_taken_without_them() -> None:
    """``labels`` is a passthru attribute: served with a collection, never compared."""
    parsed = _parse({"names": ["chr1"], "lengths": [10], "sequences": ["SQ.a"], "labels": {"sample": "s1"}})
    assert parsed == {"names": ["chr1"], "lengths": [10], "sequences": ["SQ.a"]}
