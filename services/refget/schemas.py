"""The shapes of refget's answers, for its OpenAPI document.

The routes build their answers as plain values (``shared/usecases/refget.py``) and return them as
they are: a level-2 collection can hold 100,000 elements per array, and checking it against a
model on every read would cost more than reading it. These models say what the answers hold;
``tests/unit/test_refget_routes.py`` checks real answers against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class ServiceType(BaseModel):
    group: str
    artifact: str
    version: str


class Organization(BaseModel):
    name: str
    url: str


class ServiceInfo(BaseModel):
    """GA4GH service-info (more members are allowed)."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    type: ServiceType
    organization: Organization
    version: str


class RefgetCapabilities(BaseModel):
    model_config = ConfigDict(extra="allow")

    circular_supported: bool
    subsequence_limit: int | None
    algorithms: list[str]
    identifier_types: list[str]


class SequenceServiceInfo(ServiceInfo):
    refget: RefgetCapabilities
    service: dict[str, Any] = Field(description="refget v1.0's shape of the same, for v1 clients")


class SeqcolCapabilities(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    seqcol_schema: dict[str, Any] = Field(alias="schema", description="the seqcol JSON schema served")
    sorted_name_length_pairs: bool


class SeqcolServiceInfo(ServiceInfo):
    seqcol: SeqcolCapabilities


class Alias(BaseModel):
    alias: str
    naming_authority: str


class Metadata(BaseModel):
    md5: str
    ga4gh: str = Field(description="the refget v2 digest, SQ.…")
    length: int
    aliases: list[Alias] = Field(description="each record name that holds the sequence, in the uploads the reader sees")


class SequenceMetadata(BaseModel):
    metadata: Metadata


class Collection(RootModel[dict[str, list[Any] | str | dict[str, str]]]):
    """A sequence collection: at level 2 each attribute's array; at level 1 each attribute's digest;
    and the upload's ``labels`` (a passthru attribute, never digested), at either level."""


class AttributeValue(RootModel[list[Any]]):
    """One attribute's array (names, lengths, sequences, name_length_pairs, …)."""


class ComparedDigests(BaseModel):
    a: str
    b: str = Field(description='the second digest, or "POSTed seqcol"')


class ComparedAttributes(BaseModel):
    a_only: list[str]
    b_only: list[str]
    a_and_b: list[str]


class ComparedElements(BaseModel):
    a_count: dict[str, int]
    b_count: dict[str, int]
    a_and_b_count: dict[str, int]
    a_and_b_same_order: dict[str, bool | None] = Field(description="null where the order is undefined")


class Comparison(BaseModel):
    """The seqcol comparison of two collections."""

    digests: ComparedDigests
    attributes: ComparedAttributes
    array_elements: ComparedElements


class Pagination(BaseModel):
    page: int
    page_size: int
    total: int


class DigestPage(BaseModel):
    """One page of a listing: collection digests, or one attribute's digests."""

    results: list[str]
    pagination: Pagination


class Healthy(BaseModel):
    status: Literal["ok"]
