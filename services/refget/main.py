"""Entry point ``genobase-refget``: the read API (refget v2 sequences, sequence collections) under uvicorn."""

from __future__ import annotations

from services.refget.api import create_app
from shared.runtime import metrics
from shared.runtime.consumer_metrics import record_restarts
from shared.runtime.logs import configure_logging
from shared.runtime.settings import get_settings
from shared.web.guard import serve


def main() -> None:
    settings = get_settings()
    configure_logging("refget", settings.log_level, settings.log_json, settings.replica)
    metrics.serve(settings)
    record_restarts("refget")  # how often its supervisor has had to start it again
    serve(create_app(settings), settings.refget_host, settings.refget_port)


if __name__ == "__main__":
    main()
