"""Bucket-notification wiring: how each object store is told to publish to RabbitMQ.

* Ceph RGW: an SNS-style topic on the RGW endpoint whose push endpoint is the broker, then a
  bucket notification naming the topic. RGW publishes with the topic name as routing key, into an
  exchange that must already exist. ``persistent=true`` queues events inside RGW while the broker
  is unreachable; ``amqp-ack-level=broker`` waits for the broker's confirm.
* MinIO: the AMQP target is server configuration (``MINIO_NOTIFY_AMQP_*_<ID>``, see compose.yaml);
  the bucket notification names its ARN ``arn:minio:sqs::<ID>:amqp``. Only the four kinds of
  creation are subscribed, because ``s3:ObjectCreated:*`` also fires on tagging and retention.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

MINIO_CREATION_EVENTS = [
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectCreated:Copy",
]


def wire_rgw(
    endpoint: str,
    access_key: str,
    secret_key: str,
    bucket: str,
    topic: str,
    amqp_endpoint: str,
    exchange: str,
    region: str = "us-east-1",
) -> str:
    """Create (or update) the topic and point the bucket's notifications at it; returns the topic ARN.

    ``endpoint`` is the wiring gateway (``CephCluster.wiring_gateway``): the serving gateway
    refuses topic and bucket-notification calls. ``amqp_endpoint`` carries the broker user and
    password. RGW accepts a password in a topic only over HTTPS; the wiring gateway listens on
    loopback, only while it wires, and trusts ``X-Forwarded-Proto`` (ceph.sh), so these calls say
    they came through a TLS proxy.
    """
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
    sns = boto3.client(
        "sns",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=config,
    )
    sns.meta.events.register("before-sign.sns.*", _forwarded_https)
    arn: str = sns.create_topic(
        Name=topic,
        Attributes={
            "push-endpoint": amqp_endpoint,
            "amqp-exchange": exchange,
            "amqp-ack-level": "broker",
            "persistent": "true",
            "OpaqueData": "genobase",
        },
    )["TopicArn"]
    s3: Any = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=config,
    )
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "TopicConfigurations": [{"Id": f"{topic}-created", "TopicArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    return arn


def _forwarded_https(request: Any, **_: Any) -> None:
    request.headers["X-Forwarded-Proto"] = "https"


def wire_minio(endpoint: str, access_key: str, secret_key: str, bucket: str, target_id: str) -> None:
    """Point the bucket at the AMQP target ``target_id`` configured on the MinIO server."""
    from urllib.parse import urlparse

    from minio import Minio
    from minio.notificationconfig import NotificationConfig, QueueConfig

    url = urlparse(endpoint)
    client = Minio(url.netloc, access_key=access_key, secret_key=secret_key, secure=url.scheme == "https")
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    client.set_bucket_notification(
        bucket,
        NotificationConfig(
            queue_config_list=[
                QueueConfig(
                    queue=f"arn:minio:sqs::{target_id}:amqp", events=MINIO_CREATION_EVENTS, config_id="genobase-created"
                )
            ]
        ),
    )
