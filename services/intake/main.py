"""Entry point ``genobase-intake``: the HTTP service under uvicorn."""

from __future__ import annotations

import uvicorn

from services.intake.api import create_app
from shared import metrics
from shared.consumer_metrics import record_restarts
from shared.logging import configure_logging
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging("intake", settings.log_level, settings.log_json, settings.replica)
    metrics.serve(settings)
    record_restarts("intake")  # how often its supervisor has had to start it again
    # proxy_headers off: the client's address is the connection's, never an X-Forwarded-For a
    # client wrote (uvicorn believes one from 127.0.0.1 by default, and every client here is that)
    uvicorn.run(
        create_app(settings),
        host=settings.intake_host,
        port=settings.intake_port,
        log_level="warning",
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
