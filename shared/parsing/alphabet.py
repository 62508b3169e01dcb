"""Residue alphabets. Validation is a ``bytes.translate`` that deletes every allowed byte."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AlphabetName(StrEnum):
    NUCLEOTIDE = "nucleotide"
    PROTEIN = "protein"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class Alphabet:
    name: AlphabetName
    allowed: bytes
    # Allowed bytes that are not letters: refget and MD5 are computed without them.
    non_letters: bytes


def _both_cases(letters: str) -> str:
    return letters.upper() + letters.lower()


ALPHABETS: dict[AlphabetName, Alphabet] = {
    AlphabetName.NUCLEOTIDE: Alphabet(
        AlphabetName.NUCLEOTIDE, (_both_cases("ACGTURYKMSWBDHVN") + "-.").encode(), b"-."
    ),
    AlphabetName.PROTEIN: Alphabet(
        AlphabetName.PROTEIN, (_both_cases("ACDEFGHIKLMNPQRSTVWYBJOUXZ") + "*-.").encode(), b"*-."
    ),
    AlphabetName.ANY: Alphabet(
        AlphabetName.ANY,
        bytes(range(0x21, 0x7F)),
        bytes(c for c in range(0x21, 0x7F) if not chr(c).isalpha()),
    ),
}


def get_alphabet(name: str | AlphabetName) -> Alphabet:
    return ALPHABETS[AlphabetName(name)]
