"""One-shot set-up of MinIO bucket notifications for the compose stack.

MinIO's AMQP target itself is server configuration (``MINIO_NOTIFY_AMQP_*_GENOBASE`` in
compose.yaml); this script makes the rest exist in the right order, so that no event is published
before a queue is bound to receive it:

1. the RabbitMQ exchanges and queues (``declare_topology``),
2. the uploads and results buckets,
3. the uploads bucket's notification to ``arn:minio:sqs::GENOBASE:amqp`` for the four kinds of
   object creation (``s3:ObjectCreated:*`` would also fire on tagging and retention changes),
4. a MinIO user and policy for each service that uses S3 (``shared/s3/users.py``), with the
   secrets compose gives it (``GENOBASE_<SERVICE>_S3_SECRET_KEY``) -- the services never get the
   root user.

Settings come from the same ``GENOBASE_*`` variables as the services; ``MINIO_TARGET_ID`` names
the target (default GENOBASE).
"""

from __future__ import annotations

import os
import time

from shared.rabbitmq.broker import connect, declare_topology
from shared.runtime.settings import get_settings
from shared.s3.notify import wire_minio
from shared.s3.store import ObjectStore
from shared.s3.users import S3_SERVICES, provision_services


def main() -> None:
    settings = get_settings()
    for attempt in range(60):
        try:
            connection = connect(settings)
            declare_topology(connection.channel(), settings)
            connection.close()
            store = ObjectStore(settings)
            store.ensure_bucket(settings.uploads_bucket)
            store.ensure_bucket(settings.results_bucket)
            wire_minio(
                settings.s3_endpoint,
                settings.s3_access_key.get_secret_value(),
                settings.s3_secret_key.get_secret_value(),
                settings.uploads_bucket,
                os.environ.get("MINIO_TARGET_ID", "GENOBASE"),
            )
            secrets = {s: os.environ[f"GENOBASE_{s.upper()}_S3_SECRET_KEY"] for s in S3_SERVICES}
            provision_services(settings, secrets)
            print("MinIO notifications wired to RabbitMQ; service users and policies made")
            return
        except Exception as exc:  # the servers may still be starting
            print(f"waiting for MinIO and RabbitMQ ({attempt + 1}/60): {exc}")
            time.sleep(2)
    raise SystemExit("could not wire MinIO notifications")


if __name__ == "__main__":
    main()
