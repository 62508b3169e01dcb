"""File names are shown to people: what a terminal or a page would obey never gets into one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.intake.schemas import UploadRequest
from shared.domain.uploads import filename_of_key, unprintable


@pytest.mark.parametrize(
    "name",
    ["a\x1b[2J.fa", "a\x9b31m.fa", "report\u202egnp.fa", "a\u200b.fa", "a\x07.fa", "a\ue000.fa", "a\u2028b.fa"],
)
def test_a_registration_refuses_control_and_format_characters(name: str) -> None:
    assert unprintable(name)
    with pytest.raises(ValidationError, match="control or format characters"):
        UploadRequest(filename=name, size=10)


@pytest.mark.parametrize("name", ["reads.fastq.gz", "échantillon 7.fa", "基因组.fa", "[link=x]a[/link].fa"])
def test_printable_names_are_kept(name: str) -> None:
    assert not unprintable(name)
    assert UploadRequest(filename=name, size=10).filename == name


def test_a_key_s_name_is_made_printable_and_the_rest_kept() -> None:
    assert filename_of_key("alice/run 1/x\x1b]52;c;AAAA\x07.fa") == "x\ufffd]52;c;AAAA\ufffd.fa"
    assert filename_of_key("alice/plain.fa") == "plain.fa"
