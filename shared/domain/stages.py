"""The pipeline's three queues and how each one's messages are decoded, in one place.

The consumer (``shared/rabbitmq/broker.py``) decodes a body once with its stage's decoder and hands the
handler, and ``give_up``, the typed message; a body that does not decode is an ``InvalidMessage``
and goes to the dead-letter queue at once. ``genobase dead-letters`` decodes with the same stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError

from shared.domain.events import MalformedEvent, normalise_event
from shared.domain.messages import AssembleRequested, ParseCompleted, PersistMessage, SequenceBatch, ShardRequested
from shared.domain.uploads import ObjectCreated
from shared.parsing.errors import bounded
from shared.runtime.settings import Settings

M = TypeVar("M")
M_co = TypeVar("M_co", covariant=True)


class PermanentFailure(Exception):
    """Retrying cannot help: the consumer dead-letters the message at once (after ``give_up``)."""


class InvalidMessage(PermanentFailure, ValueError):
    """The body is not a message of its queue: dead-letter it at once (there is nothing to give up)."""


@dataclass(frozen=True)
class GiveUp:
    """Why a message is being dead-lettered, safe to show a user; its detail is logged under ``error_id``."""

    reason: str
    error_id: str


class Decoder(Protocol[M_co]):
    def __call__(self, body: bytes, *, from_pipeline: bool) -> M_co:
        """``from_pipeline``: the body was published on the pipeline's own exchange (by a service),
        not on the events exchange, which the object store's AMQP user may also write to."""


@dataclass(frozen=True)
class Stage(Generic[M]):
    name: str  # the queue is ``<prefix>.<name>``
    decode: Decoder[M]
    # The largest body the stage takes: anything longer is refused before it is decoded, so that a
    # forged giant costs one read, not a JSON parse and a model per field.
    max_body_bytes: Callable[[Settings], int]


# A shard request names its kind where a bucket notification never does.
_SHARD_KIND = b'"kind":"parse_shard"'
_SHARD = TypeAdapter(ShardRequested)


def _parse_message(body: bytes, *, from_pipeline: bool) -> list[ObjectCreated] | ShardRequested:
    """The parse queue carries the store's notifications and the parsers' own shard requests.

    Both exchanges reach the queue, so the object store's AMQP user (which may publish on the events
    exchange only) could send a shard request too: one is taken only from the pipeline's exchange.
    """
    if _SHARD_KIND in body[:200]:
        if not from_pipeline:
            raise InvalidMessage("a parse_shard message not published on the pipeline exchange")
        try:
            return _SHARD.validate_json(body)
        except ValidationError as exc:
            raise InvalidMessage(bounded(f"invalid parse_shard message: {exc}")) from exc
    try:
        return normalise_event(body)
    except (MalformedEvent, ValidationError) as exc:
        raise InvalidMessage(bounded(f"invalid bucket notification: {exc}")) from exc


def _decoder(adapter: TypeAdapter[M], what: str) -> Decoder[M]:
    """For a queue that only the pipeline's exchange reaches: the origin changes nothing."""

    def decode(body: bytes, *, from_pipeline: bool) -> M:
        try:
            return adapter.validate_json(body)
        except ValidationError as exc:
            raise InvalidMessage(bounded(f"invalid {what} message: {exc}")) from exc

    return decode


# A bucket notification is a few KiB (one record; a key is at most 1 KiB) and a shard request or an
# assembly request a few hundred bytes.
SMALL_MESSAGE_BYTES = 256 * 1024


def _persist_body_limit(settings: Settings) -> int:
    """A batch closes at ``batch_bytes`` plus one record, whose title the engine bounds at a few MiB;
    JSON adds its quoting and the numbers. 16x the batch size (64 MiB by default) is far above
    that and below RabbitMQ's own 128 MiB message limit."""
    return max(16 * settings.batch_bytes, 64 * 1024 * 1024)


PARSE: Stage[list[ObjectCreated] | ShardRequested] = Stage(
    "parse", _parse_message, lambda settings: SMALL_MESSAGE_BYTES
)
PERSIST: Stage[SequenceBatch | ParseCompleted] = Stage(
    "persist",
    _decoder(TypeAdapter[SequenceBatch | ParseCompleted](PersistMessage), "persist"),
    _persist_body_limit,
)
ASSEMBLE: Stage[AssembleRequested] = Stage(
    "assemble", _decoder(TypeAdapter(AssembleRequested), "assemble"), lambda settings: SMALL_MESSAGE_BYTES
)
STAGES: dict[str, Stage[Any]] = {stage.name: stage for stage in (PARSE, PERSIST, ASSEMBLE)}
STAGE_NAMES: tuple[str, ...] = (PARSE.name, PERSIST.name, ASSEMBLE.name)
