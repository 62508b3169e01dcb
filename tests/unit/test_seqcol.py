"""Collection digests and comparisons against the reference implementation (the ``refget`` package)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from refget.utils import canonical_str, compare_seqcols, fasta_to_seqcol_dict, seqcol_digest, sha512t24u_digest

from shared.domain import seqcol
from shared.domain.seqcol import (
    CollectionDigester,
    canonical,
    canonical_pair,
    compare,
    name_length_pair,
    pair_digest,
    sha512t24u,
)
from tests.unit.helpers import require_native

FIXTURES = Path(__file__).parents[1] / "fixtures" / "seqcol"
FASTAS = sorted(FIXTURES.glob("*.fa"))
EXPECTED = json.loads(
    (Path(__import__("refget").__file__).parent / "compliance_data" / "test_fasta_digests.json").read_text()
)


def records(path: Path) -> list[tuple[str, int, str]]:
    """(name, length, SQ. digest) in file order, read plainly."""
    out: list[tuple[str, int, str]] = []
    name, residues = None, []
    for line in [*path.read_text().splitlines(), ">"]:
        if line.startswith(">"):
            if name is not None:
                seq = "".join(residues).upper()
                out.append((name, len(seq), "SQ." + sha512t24u(seq.encode())))
            name, residues = line[1:].split()[0] if line[1:].strip() else None, []
        else:
            residues.append(line.strip())
    return out


def digest_of(path: Path) -> dict[str, str]:
    digester = CollectionDigester()
    rows = records(path)
    for row in rows:
        digester.add(*row)
    collection = digester.finish(sorted(pair_digest(n, length) for n, length, _ in rows), sorted(s for *_, s in rows))
    return {"digest": collection.digest, **collection.level1()}


@pytest.mark.parametrize("fasta", FASTAS, ids=lambda p: p.name)
def test_streamed_digests_equal_the_reference_implementations(fasta: Path) -> None:
    ours = digest_of(fasta)
    reference = fasta_to_seqcol_dict(str(fasta))
    assert ours["digest"] == seqcol_digest(reference)
    expected = EXPECTED[fasta.name]
    assert ours["digest"] == expected["top_level_digest"]
    assert {k: ours[k] for k in expected["level1"]} == expected["level1"]


def level2(path: Path) -> dict[str, list[object]]:
    rows = records(path)
    return {
        "lengths": [length for _, length, _ in rows],
        "name_length_pairs": [{"length": length, "name": n} for n, length, _ in rows],
        "names": [n for n, _, _ in rows],
        "sequences": [s for *_, s in rows],
        "sorted_sequences": sorted(s for *_, s in rows),
    }


@pytest.mark.parametrize("other", FASTAS, ids=lambda p: p.name)
def test_linear_comparison_equals_the_reference(other: Path) -> None:
    a, b = level2(FIXTURES / "base.fa"), level2(other)
    assert compare(a, b) == compare_seqcols(a, b)
    assert compare(b, a) == compare_seqcols(b, a)


def test_comparison_with_duplicates_and_missing_attributes() -> None:
    a = {"names": ["x", "x", "y"], "lengths": [1, 1, 2]}
    b = {"names": ["x", "y", "y", "z"], "sequences": ["SQ.a"]}
    assert compare(a, b) == compare_seqcols(a, b)


@pytest.mark.parametrize(
    "element",
    [
        "chr1",
        "SQ.2648ae1bacce4ec4b6cf337dcae37816",
        "",
        'quote"inside',
        "back\\slash",
        "tab\there",
        "new\nline",
        "\x00\x1f\x7f",
        "caf\u00e9 \u4e2d\u6587 \U0001f9ec",
        "~ !#$%&'()*+,-./:;<=>?@[]^_`{|}",
        0,
        1,
        -7,
        40_000_000,
        2**70,
        True,
        {"length": 5, "name": 'a"b'},
    ],
)
def test_the_fast_canonical_form_equals_refgets(element: object) -> None:
    assert canonical(element) == canonical_str(element)  # type: ignore[arg-type]


def test_the_fast_pair_equals_refgets() -> None:
    for name, length in [("chr1", 248956422), ('we"ird\\', 0), ("caf\u00e9", 3)]:
        expected = canonical_str(name_length_pair(name, length))
        assert canonical_pair(canonical(name), canonical(length)) == expected


@pytest.mark.parametrize("chunk", [1, 2, 3, 1000])
@pytest.mark.parametrize("fasta", FASTAS[:3], ids=lambda p: p.name)
def test_records_added_many_at_a_time_digest_as_one_by_one(fasta: Path, chunk: int) -> None:
    rows = records(fasta)
    digester = CollectionDigester()
    for start in range(0, len(rows), chunk):
        names, lengths, sequences = zip(*rows[start : start + chunk], strict=True)
        digester.add_many(list(names), list(lengths), list(sequences))
    collection = digester.finish(sorted(pair_digest(n, length) for n, length, _ in rows), sorted(s for *_, s in rows))
    assert {"digest": collection.digest, **collection.level1()} == digest_of(fasta)


def test_a_batch_with_one_unusual_element_digests_as_the_reference() -> None:
    """Names needing escapes, non-ASCII, a bool among the lengths: the batch is taken element by
    element, and each array's digest is still that of its whole canonical JSON."""
    names = ["chr1", 'quo"te', "caf\u00e9", "tab\tx", "plain"]
    lengths = [5, 0, 3, 40_000_000, True]
    sequences = ["SQ.a", "SQ.b", "SQ.\u4e2d", "SQ.d", "SQ.e"]
    digester = CollectionDigester()
    digester.add_many(names[:2], lengths[:2], sequences[:2])
    digester.add_many([], [], [])
    digester.add_many(names[2:], lengths[2:], sequences[2:])
    collection = digester.finish([], [])
    assert collection.names == sha512t24u_digest(canonical_str(names))
    assert collection.lengths == sha512t24u_digest(canonical_str(lengths))
    assert collection.sequences == sha512t24u_digest(canonical_str(sequences))
    pairs = [name_length_pair(n, length) for n, length in zip(names, lengths, strict=True)]
    assert collection.name_length_pairs == sha512t24u_digest(canonical_str(pairs))
    with pytest.raises(ValueError, match="unequal"):
        digester.add_many(["a"], [], ["SQ.a"])


@pytest.mark.parametrize("native", [True, False], ids=["C", "Python"])
def test_pair_digests_equal_refgets_in_c_and_in_python(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    require_native(seqcol)  # the "C" run must not be a second Python run
    if not native:
        monkeypatch.setattr(seqcol, "_native", None)
    names = ["chr1", "", "a b~!", 'we"ird', "back\\slash", "tab\tx", "del\x7f", "caf\u00e9", "\U0001f9ec", "x" * 70_000]
    for name in names:
        for length in (0, 1, 150, 248_956_422, -7, 2**63 - 1, 2**63, 2**80):
            expected = sha512t24u_digest(canonical_str(name_length_pair(name, length)))
            assert pair_digest(name, length) == expected, (name, length)
