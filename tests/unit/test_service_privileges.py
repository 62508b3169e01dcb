"""What the stack gives the services that need least: refget reads, and never talks to the broker."""

from __future__ import annotations

from genobase import stack

VALUES = {
    "GENOBASE_PG_DSN": "postgresql://genobase_app:rt@127.0.0.1/genobase",
    "GENOBASE_AMQP_URL": "amqp://genobase:broker-secret@127.0.0.1:5672/genobase",
    "GENOBASE_RABBITMQ_PASSWORD": "broker-secret",
}


def test_refget_gets_no_broker_credentials() -> None:
    given = stack.service_settings("refget", VALUES)
    assert "GENOBASE_AMQP_URL" not in given
    assert "broker-secret" not in "\n".join(given.values())


def test_the_consumers_keep_theirs() -> None:
    for service in ("intake", "parser", "persister", "assembler", "watchdog"):
        assert stack.service_settings(service, VALUES)["GENOBASE_AMQP_URL"] == VALUES["GENOBASE_AMQP_URL"], service
