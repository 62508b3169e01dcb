"""Entry point ``genobase-refget``: the read API (refget v2 sequences, sequence collections) under uvicorn."""

from __future__ import annotations

import uvicorn

from services.refget.api import create_app
from shared import metrics
from shared.logging import configure_logging
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging("refget", settings.log_level, settings.log_json, settings.replica)
    metrics.serve(settings)
    uvicorn.run(create_app(settings), host=settings.refget_host, port=settings.refget_port, log_level="warning")


if __name__ == "__main__":
    main()
