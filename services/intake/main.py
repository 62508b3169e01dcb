"""Entry point ``genobase-intake``: the HTTP service under uvicorn."""

from __future__ import annotations

from services.intake.app import create_app
from shared.runtime import metrics
from shared.runtime.consumer_metrics import record_restarts
from shared.runtime.logs import configure_logging
from shared.runtime.settings import get_settings
from shared.web.guard import serve


def main() -> None:
    settings = get_settings()
    configure_logging("intake", settings.log_level, settings.log_json, settings.replica)
    metrics.serve(settings)
    record_restarts("intake")  # how often its supervisor has had to start it again
    serve(create_app(settings), settings.intake_host, settings.intake_port)


if __name__ == "__main__":
    main()
