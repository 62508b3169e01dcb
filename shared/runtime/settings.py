"""One settings object for every process, read from the environment and the stack file.

The stack file (``GENOBASE_STACK_FILE``, default ``.genobase/stack.env``) is written by ``genobase up``
so that the services, the CLI and the tests all find the same endpoints; environment variables win
over it so that compose, tests and operators can override any single value.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STACK_FILE = Path(".genobase/stack.env")
MiB = 1024 * 1024


def stack_file() -> Path:
    return Path(os.environ.get("GENOBASE_STACK_FILE", str(DEFAULT_STACK_FILE)))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENOBASE_", extra="ignore")

    # Postgres. The services connect as the runtime role of ``pg_dsn`` (read and write the tables,
    # nothing else); migrations run as the owner of ``pg_owner_dsn`` and grant the runtime role
    # what it needs. Without an owner DSN both are the same role.
    pg_dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/genobase")
    pg_owner_dsn: SecretStr | None = None

    # RabbitMQ
    amqp_url: SecretStr = SecretStr("amqp://127.0.0.1:5672/%2F")  # no user: the broker default (guest, loopback only)
    events_exchange: str = "genobase.events"
    events_routing_key: str = "genobase-uploads"
    pipeline_exchange: str = "genobase.pipeline"
    dead_letter_exchange: str = "genobase.dead"
    queue_prefix: str = "genobase"
    max_deliveries: int = 5
    prefetch: int = 4

    # S3
    s3_endpoint: str = "http://127.0.0.1:7480"
    # Which object store: users and grants are made differently (shared/s3/users.py).
    s3_kind: Literal["rgw", "minio"] = "rgw"
    # The endpoint clients outside the network use; presigned URLs sign the Host header.
    s3_public_endpoint: str | None = None
    s3_access_key: SecretStr = SecretStr("")
    s3_secret_key: SecretStr = SecretStr("")
    # The intake's second S3 user, which signs the links to results (and can do nothing else);
    # unset, the main user signs them.
    # The roles of the stages that need less than the runtime role's rows of every table (refget
    # reads, the persister loads batches): set, the migrations grant each its own tables
    # (shared/postgres/migrate.py) and the stack gives it as that service's GENOBASE_PG_DSN.
    refget_pg_dsn: SecretStr = SecretStr("")
    persister_pg_dsn: SecretStr = SecretStr("")
    # false for a broker user that may not configure (the persister's own): the topology is then
    # only checked (its queue declared passively), as `genobase up` declared it
    amqp_declare_topology: bool = True
    s3_download_access_key: SecretStr = SecretStr("")
    s3_download_secret_key: SecretStr = SecretStr("")
    s3_region: str = "us-east-1"
    uploads_bucket: str = "uploads"
    results_bucket: str = "results"
    presign_ttl_seconds: int = 900
    # The longest one statement of an HTTP request may run (the intake's and refget's pools): a
    # request whose query would scan without bound (a prefix no record has in a huge upload) ends
    # with a 500 rather than hold one of the pool's few sessions, which every key check needs too.
    request_statement_timeout_seconds: float = 30
    # A registered upload with no object this long after its ticket ended is 'expired' (watchdog).
    ticket_grace_seconds: float = 300
    # The largest object a ticket is issued for (S3's own limit: 5 TiB). Up to the multipart
    # threshold a ticket is one presigned PUT whose size is signed, so the store refuses a body of
    # any other length; above it, a multipart upload whose parts each sign their size and MD5.
    max_upload_bytes: int = 5 * 1024**4
    multipart_threshold_bytes: int = 64 * MiB
    multipart_min_part_bytes: int = 16 * MiB
    # A multipart ticket lives longer than a PUT URL: its part URLs are asked for as they are sent.
    multipart_ttl_seconds: int = 24 * 3600
    s3_connect_timeout_seconds: float = 10
    # A ranged GET or part upload that hears nothing for this long is retried (tenacity, backoff).
    s3_read_timeout_seconds: float = 60

    # Streaming sizes: each bounds the memory of one stage.
    read_range_bytes: int = 4 * MiB
    batch_bytes: int = 4 * MiB
    part_bytes: int = 1 * MiB
    result_part_bytes: int = 8 * MiB
    # A FASTA (plain or bgzip) larger than this is parsed in shards of at least this size, by every parser
    # replica at once (services/parser). 0: never split -- the planning reads the object once
    # more, which pays only where several parsers share the work (docs/operations.md "One large file over several
    # parsers").
    shard_bytes: int = 0
    # How often the assembler looks for newly committed batches while it follows a parse.
    assembly_poll_seconds: float = 0.1

    # Input limits (docs/architecture.md "Limits"): each refuses an input with its own error code.
    max_header_bytes: int = 64 * 1024  # FASTA header: header_too_long
    max_title_bytes: int = 64 * 1024  # FASTQ title: title_too_long
    max_field_bytes: int = 64 * 1024  # CSV/TSV name, attribute, column name: field_too_long
    max_attributes_bytes: int = 1 * MiB  # CSV/TSV extra columns of one row together: attributes_too_long
    max_row_bytes: int = 64 * MiB  # CSV/TSV row that cannot be streamed: row_too_long
    max_line_bytes: int = 64 * MiB  # FASTQ line: line_too_long (reads are bounded by part_bytes)
    max_records: int = 1_000_000_000  # too_many_records
    max_decompressed_bytes: int = 64 * 1024**3  # decompression_limit
    max_compression_ratio: int = 1000  # decompression_limit
    # gzip content an owner's uploads may inflate together (the parser draws it as it inflates;
    # each upload is bounded on its own by max_decompressed_bytes): inflation_quota_exceeded.
    quota_inflated_bytes: int = 10 * 1024**4
    # A parse that reads no new range and publishes no batch for this long fails with parse_stalled
    # (a last line of defence: e.g. a small gzip that inflates to endless empty lines).
    parse_stall_seconds: float = 120

    # intake
    # The key the CLI and the benchmark send (GENOBASE_API_KEY in the environment first, then the
    # stack file, where `genobase up` writes the admin key it makes on its first run).
    api_key: SecretStr | None = None
    intake_host: str = "127.0.0.1"
    # An owner's quotas (admin keys are not held to them). Registrations beyond a count are refused
    # with 429 and Retry-After, beyond the stored bytes with 413 (each with its code); the stored
    # bytes are the sizes of the owner's objects plus those its open tickets declared.
    quota_stored_bytes: int = 10 * 1024**4
    quota_uploads_in_flight: int = 100  # waiting for their object or being processed
    quota_open_multipart_uploads: int = 10  # multipart tickets waiting for their parts
    quota_registrations_per_minute: int = 60
    intake_port: int = 8000
    public_base_url: str | None = None

    # refget: the read API (GA4GH refget v2 sequences and sequence collections). Sequences and
    # collections are their owners' data: every read needs an API key, which reads what its owner's
    # uploads hold (an admin key: everything), unless refget_public, which lets anyone read
    # everything (reference sequences meant to be shared). A level-2 collection or a comparison
    # holds its arrays: above seqcol_max_elements records, or names together above
    # seqcol_max_post_bytes, they are refused (413), and so is a posted collection over
    # seqcol_max_post_bytes (before it is read further) or with an element over max_header_bytes.
    refget_host: str = "127.0.0.1"
    refget_port: int = 8001
    refget_public: bool = False
    seqcol_max_elements: int = 100_000
    seqcol_max_post_bytes: int = 16 * MiB

    # watchdog: an upload whose stage made no progress for this long is reported as stalled and
    # its stage's message issued again (consumers are idempotent, so a false alarm costs nothing).
    stall_after_seconds: float = 300
    watchdog_interval_seconds: float = 15
    # The reconciler (in the watchdog, services/watchdog/reconcile.py): uploads whose notification
    # was late or lost are started from what the store shows. A registered upload whose object
    # exists starts within the first bound, an object nobody registered (or an overwrite nobody
    # knows) within the second; an object younger than the grace is left to its notification.
    # Its passes' periods follow from these (shared/domain/reconcile.py: ``ReconcileSchedule``).
    reconcile_enabled: bool = True
    reconcile_tickets_within_seconds: float = 10
    reconcile_objects_within_seconds: float = 120
    reconcile_grace_seconds: float = 3
    # An object already announced is announced again only this long after (its event may sit in a
    # backed-up parse queue: each pass would otherwise queue another copy behind it).
    reconcile_repeat_seconds: float = 60
    reconcile_ticket_batch: int = 100  # registered uploads looked at per pass (one listing request each)
    reconcile_page_keys: int = 1000  # objects per listing page (S3's maximum)
    # Listing pages read per step of a walk (a step a second while a walk is under way), so that a
    # large bucket never holds up the ticket passes: at the defaults a walk covers ~580,000 objects
    # within its period.
    reconcile_pages_per_step: int = 10

    # Prometheus metrics (shared/runtime/metrics.py): this process's /metrics port; none: not served.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    log_level: str = "INFO"
    log_json: bool = True
    # Which of a stage's processes this is (``genobase up --replicas``): on every log line.
    replica: int = 1

    @property
    def pg_migration_dsn(self) -> str:
        return (self.pg_owner_dsn or self.pg_dsn).get_secret_value()

    @property
    def presign_endpoint(self) -> str:
        return self.s3_public_endpoint or self.s3_endpoint

    @property
    def status_base_url(self) -> str:
        return self.public_base_url or f"http://{self.intake_host}:{self.intake_port}"

    def queue(self, stage: str) -> str:
        return f"{self.queue_prefix}.{stage}"


def load_settings() -> Settings:
    """Read the environment and the stack file now (the CLI does, after writing the file)."""
    path = stack_file()
    return Settings(_env_file=path if path.exists() else None)  # type: ignore[call-arg]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once at start-up."""
    return load_settings()
