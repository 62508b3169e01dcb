"""Random headers and bodies on every queue, against the running stack: the consumers take them all.

A seeded generator (the same messages every run) publishes a bounded number of messages: on the
events exchange as the object store's broker user would, and on the pipeline exchange to the parse,
persist and assemble queues as a service would. Bodies are random bytes, or real messages with
fields swapped for values of other types; headers are random tables, often with the broker's own
names in them. Afterwards every queue drains, no consumer has died, and a genuine upload completes.
"""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Any

import orjson
import pika
import pytest

from shared.domain.messages import AssembleRequested, ParseCompleted, ShardRequested
from shared.rabbitmq.broker import connect
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.builders import record, sequence_batch
from tests.conftest import Pipeline
from tests.helpers import ready_messages, rgw_style_event
from tests.security.helpers import RgwPublisher, clear_dead_letters, genuine_upload_completes

pytestmark = pytest.mark.e2e
SEED = 20240611
PER_TARGET = 40  # messages to each of the four destinations
HEADER_NAMES = ["x-delivery-count", "x-death", "x-first-death-exchange", "x-genobase-refused", "x-genobase-origin"]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of any type, small: what a forger puts where a field belongs."""
    kinds = ["int", "str", "bool", "none", "float", "bigint"] + (["list", "dict"] if depth < 2 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([-1, 0, 1, 7, 2**31, 2**63 - 1])
    if kind == "bigint":
        return rng.choice([2**53 + 1, -(2**63)])
    if kind == "str":
        return rng.choice(["", "abc", "12", "\u00e9\u4e2d", "x" * rng.randint(0, 3000), str(uuid.uuid4()), "NaN"])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float":
        return rng.choice([0.5, -1e300, 1e-9])
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "dict":
        return {f"k{i}": random_value(rng, depth + 1) for i in range(rng.randint(0, 3))}
    return None


def mutate(rng: random.Random, doc: Any) -> Any:
    """``doc`` with one field, somewhere inside it, replaced, removed or added."""
    if isinstance(doc, dict) and doc:
        key = rng.choice(list(doc))
        action = rng.random()
        copy = dict(doc)
        if action < 0.5:
            copy[key] = mutate(rng, doc[key]) if rng.random() < 0.5 else random_value(rng)
        elif action < 0.75:
            del copy[key]
        else:
            copy[f"extra{rng.randint(0, 9)}"] = random_value(rng)
        return copy
    if isinstance(doc, list) and doc:
        index = rng.randrange(len(doc))
        return [mutate(rng, item) if i == index else item for i, item in enumerate(doc)]
    return random_value(rng)


def templates(settings: Settings) -> dict[str, list[bytes]]:
    """Genuine messages of each destination, the fuzzer's starting points."""
    upload = uuid.uuid4()
    batch = sequence_batch(upload, 1, 0, [record(0, residues="ACGT", length=4)]).to_bytes()
    done = ParseCompleted(
        upload_id=upload, generation=1, batch_count=1, record_count=1, source_bytes=8, format="fasta"
    ).to_bytes()
    event = rgw_style_event(settings.uploads_bucket, f"fuzz/{upload}.fa", 8, "0" * 32)
    shard = ShardRequested(upload_id=upload, generation=1, shard=0).to_bytes()
    return {
        "events": [event, shard],
        "parse": [event, shard],
        "persist": [batch, done],
        "assemble": [AssembleRequested(upload_id=upload, generation=1).to_bytes()],
    }


def random_body(rng: random.Random, starts: list[bytes]) -> bytes:
    choice = rng.random()
    if choice < 0.15:
        return rng.randbytes(rng.randint(0, 2048))
    if choice < 0.2:
        return rng.choice(starts)[: rng.randint(0, 200)]  # cut short
    doc = orjson.loads(rng.choice(starts))
    for _ in range(rng.randint(1, 3)):
        doc = mutate(rng, doc)
    return orjson.dumps(doc)


def random_headers(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() < 0.3:
        return None
    values: list[Any] = ["abc", b"\x00\xff", 3, -1, 2**40, True, None, Decimal("1.5"), [1, "a"], {"n": 1}]
    names = [rng.choice(HEADER_NAMES) if rng.random() < 0.6 else f"x-fuzz-{rng.randint(0, 99)}"]
    return {name: rng.choice(values) for name in names * rng.randint(1, 2)}


def test_random_messages_on_every_queue_stop_nothing(
    pipeline: Pipeline,
    settings: Settings,
    rgw_publisher: RgwPublisher,
) -> None:
    rng = random.Random(SEED)
    clear_dead_letters(settings)
    before = pipeline.pids()
    starts = templates(settings)
    for _ in range(PER_TARGET):
        rgw_publisher.publish(random_body(rng, starts["events"]), random_headers(rng))
    connection = connect(settings)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for routing_key in ("parse", "persist", "assemble"):
            for _ in range(PER_TARGET):
                channel.basic_publish(
                    settings.pipeline_exchange,
                    routing_key,
                    random_body(rng, starts[routing_key]),
                    pika.BasicProperties(headers=random_headers(rng), delivery_mode=pika.DeliveryMode.Persistent),
                    mandatory=True,
                )
    finally:
        connection.close()
    # Every queue drains: nothing is left holding a prefetch slot.
    queues = [settings.queue(stage) for stage in ("parse", "persist", "assemble")]
    poll_until(
        lambda: not any(ready_messages(settings, queue) for queue in queues),
        timeout=240,
        interval=1,
        what="every queue drained",
        describe=lambda: str({queue: ready_messages(settings, queue) for queue in queues}),
    )
    genuine_upload_completes(pipeline, "after-the-fuzz.fa")
    assert pipeline.pids() == before, pipeline.logs()  # no consumer died (nor had to be restarted)
    clear_dead_letters(settings)
