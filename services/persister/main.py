"""Entry point ``genobase-persister``: wires the adapters and consumes the persist queue."""

from __future__ import annotations

import functools

from services.persister.handler import PersisterDeps, give_up, handle_persist
from shared.broker import Consumer, Publisher
from shared.db import Database
from shared.logging import configure_logging
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging("persister", settings.log_level, settings.log_json)
    deps = PersisterDeps(Database(settings), Publisher(settings))
    Consumer(
        settings,
        "persist",
        functools.partial(handle_persist, deps=deps),
        functools.partial(give_up, deps=deps),
    ).run()


if __name__ == "__main__":
    main()
