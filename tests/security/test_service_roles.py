"""refget's and the persister's own credentials against the running stack: each reaches its part.

refget reads (its callers' keys, the uploads they may see, records, parts and collections) and
writes nothing. The persister loads batches and moves its uploads' counters (and drops the rows of
a generation it fails); it neither reads a key nor makes or deletes an upload. The persister's
broker user consumes its own queue and publishes to the pipeline and dead-letter exchanges,
nothing else (RabbitMQ lets whoever may consume a queue also purge it: both are "read").
"""

from __future__ import annotations

from collections.abc import Callable

import pika
import pika.exceptions
import psycopg
import pytest

from genobase import stack
from tests.conftest import Pipeline

pytestmark = pytest.mark.e2e


def refused_by_postgres(dsn: str, statement: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return True
    return False


def test_refget_reads_and_writes_only_a_keys_last_use(pipeline: Pipeline, stack_env: dict[str, str]) -> None:
    dsn = stack.service_settings("refget", stack_env)["GENOBASE_PG_DSN"]
    assert dsn == stack_env["GENOBASE_REFGET_PG_DSN"]
    for table in ("api_keys", "uploads", "sequence_records", "sequence_parts", "collections"):
        assert not refused_by_postgres(dsn, f"SELECT 1 FROM {table} LIMIT 1"), table
    writes = [
        "UPDATE uploads SET state = state WHERE false",
        "DELETE FROM sequence_records WHERE false",
        "INSERT INTO api_keys (id, owner, key_hash, admin) VALUES ('k_0000000000000000', 'x', 'x', true)",
        "UPDATE api_keys SET admin = true WHERE false",
        "UPDATE api_keys SET revoked_at = NULL WHERE false",
        "DELETE FROM api_keys WHERE false",
        "SELECT 1 FROM upload_batches LIMIT 1",
        "CREATE TABLE mine (x int)",
    ]
    assert [w for w in writes if not refused_by_postgres(dsn, w)] == []
    # one column of a key it may write: the last use of its caller's key
    assert not refused_by_postgres(dsn, "UPDATE api_keys SET last_used_at = now() WHERE false")


def test_the_persister_loads_batches_and_touches_no_key_nor_upload_row(
    pipeline: Pipeline, stack_env: dict[str, str]
) -> None:
    dsn = stack.service_settings("persister", stack_env)["GENOBASE_PG_DSN"]
    assert dsn == stack_env["GENOBASE_PERSISTER_PG_DSN"]
    assert not refused_by_postgres(dsn, "UPDATE uploads SET records_done = records_done WHERE false")
    beyond = [
        "SELECT 1 FROM api_keys LIMIT 1",
        "UPDATE api_keys SET admin = true WHERE false",
        "DELETE FROM api_keys WHERE false",
        "DELETE FROM uploads WHERE false",
        "INSERT INTO uploads (id) VALUES (gen_random_uuid())",
        "UPDATE sequence_records SET upload_id = upload_id WHERE false",
        "INSERT INTO collections (upload_id) VALUES (gen_random_uuid())",
        "TRUNCATE upload_batches",
    ]
    assert [b for b in beyond if not refused_by_postgres(dsn, b)] == []


def _broker_refuses(url: str, action: Callable[[pika.adapters.blocking_connection.BlockingChannel], object]) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        try:
            action(channel)
        except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.UnroutableError) as exc:
            return not isinstance(exc, pika.exceptions.UnroutableError) and exc.reply_code == 403
        return False
    finally:
        if connection.is_open:
            connection.close()


def test_the_persisters_broker_user_reaches_only_its_queue_and_exchanges(
    pipeline: Pipeline, stack_env: dict[str, str]
) -> None:
    given = stack.service_settings("persister", stack_env)
    url = given["GENOBASE_AMQP_URL"]
    assert url == stack_env["GENOBASE_PERSISTER_AMQP_URL"] and given["GENOBASE_AMQP_DECLARE_TOPOLOGY"] == "false"
    settings = pipeline.settings
    assert not _broker_refuses(url, lambda ch: ch.queue_declare(settings.queue("persist"), passive=True))
    beyond = {
        "take parse work": lambda ch: ch.basic_get(settings.queue("parse")),
        "take assembly work": lambda ch: ch.basic_get(settings.queue("assemble")),
        "publish an event": lambda ch: ch.basic_publish(settings.events_exchange, settings.events_routing_key, b"{}"),
        "declare a queue": lambda ch: ch.queue_declare("mine"),
        "read the dead letters": lambda ch: ch.basic_get(settings.queue("persist") + ".dead"),
    }
    assert [name for name, action in beyond.items() if not _broker_refuses(url, action)] == []
    for service in stack.SERVICES:
        if service != "persister":
            assert stack_env["GENOBASE_PERSISTER_AMQP_URL"] not in stack.service_settings(service, stack_env).values()


def test_the_intakes_broker_user_only_publishes_events(pipeline: Pipeline, stack_env: dict[str, str]) -> None:
    """The intake publishes a retry's parse message (a notification, checked by the parser against
    the store as any event) to the events exchange; it may do nothing else on the broker."""
    given = stack.service_settings("intake", stack_env)
    url = given["GENOBASE_AMQP_URL"]
    assert url == stack_env["GENOBASE_INTAKE_AMQP_URL"]
    settings = pipeline.settings
    assert not _broker_refuses(  # what it does (an event for no object: the parser ignores it)
        url,
        lambda ch: ch.basic_publish(settings.events_exchange, settings.events_routing_key, b'{"Records": []}'),
    )
    beyond = {
        "publish a batch": lambda ch: ch.basic_publish(settings.pipeline_exchange, "persist", b"{}"),
        "publish a dead letter": lambda ch: ch.basic_publish(settings.dead_letter_exchange, "parse", b"{}"),
        "publish to a queue directly": lambda ch: ch.basic_publish("", settings.queue("parse"), b"{}"),
        "take parse work": lambda ch: ch.basic_get(settings.queue("parse")),
        "read the dead letters": lambda ch: ch.basic_get(settings.queue("parse") + ".dead"),
        "declare a queue": lambda ch: ch.queue_declare("mine"),
        "bind the events elsewhere": lambda ch: ch.queue_bind(
            settings.queue("persist"), settings.events_exchange, routing_key="#"
        ),
    }
    assert [name for name, action in beyond.items() if not _broker_refuses(url, action)] == []
    for service in stack.SERVICES:
        if service != "intake":
            assert stack_env["GENOBASE_INTAKE_AMQP_URL"] not in stack.service_settings(service, stack_env).values()
