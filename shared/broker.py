"""RabbitMQ adapter: topology, a confirming publisher and a consumer that keeps its connection alive.

pika's ``BlockingConnection`` is not thread-safe and sends no heartbeats while a callback runs.
The consumer therefore runs handlers on one worker thread while the connection's own thread keeps
pumping I/O, and hands acks back with ``add_callback_threadsafe`` -- the pattern pika documents.
A message is acknowledged only after its handler returned, i.e. after its work committed.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pika
import pika.exceptions
import structlog
from pika.adapters.blocking_connection import BlockingChannel
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from shared import metrics
from shared.messages import Message
from shared.settings import Settings
from shared.stages import STAGE_NAMES, GiveUp, InvalidMessage, PermanentFailure, Stage
from shared.uploads import new_error_id

M = TypeVar("M")
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    ConnectionError,
)

log = structlog.get_logger()


def _retryable(exc: BaseException) -> bool:
    """Lost connections are worth another try; a refused or unroutable message is not."""
    unroutable = (pika.exceptions.UnroutableError, pika.exceptions.NackError)
    return isinstance(exc, CONNECTION_ERRORS) and not isinstance(exc, unroutable)


# pika reads its socket 4 KiB at a time and appends every read to a ``bytes`` frame buffer, which
# copies all that the buffer holds: a 4 MiB batch arrives in ~1,000 reads, and each 128 KiB frame
# (RabbitMQ's default ``frame_max``) is copied ~16 times over before it is whole. Reading a frame's
# worth at a time cut a consumer's CPU for 512 MiB of 4 MiB messages from 0.61 s to 0.15-0.20 s
# (the persister receives every residue of every upload). Memory stays bounded: a read and at most
# one partial frame.
RECV_BYTES = 128 * 1024


def _read_frames_whole() -> None:
    """Raise pika's read size (a class attribute of its transports: pika has no setting for it)."""
    from pika.adapters.utils.io_services_utils import _AsyncTransportBase

    if not hasattr(_AsyncTransportBase, "_MAX_RECV_BYTES"):  # a pika that reads otherwise
        log.warning("pika has no _MAX_RECV_BYTES: its socket reads keep their own size")
        return
    _AsyncTransportBase._MAX_RECV_BYTES = RECV_BYTES


def connect(settings: Settings, heartbeat: int = 60) -> pika.BlockingConnection:
    _read_frames_whole()
    params = pika.URLParameters(settings.amqp_url.get_secret_value())
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = 300
    params.connection_attempts = 1
    return pika.BlockingConnection(params)


def declare_topology(channel: BlockingChannel, settings: Settings) -> None:
    """Exchanges and queues of the pipeline; idempotent, every process runs it at start."""
    channel.exchange_declare(settings.events_exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(settings.pipeline_exchange, exchange_type="direct", durable=True)
    channel.exchange_declare(settings.dead_letter_exchange, exchange_type="direct", durable=True)
    for stage in STAGE_NAMES:
        name = settings.queue(stage)
        channel.queue_declare(
            name,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                # The broker itself dead-letters a message that keeps being returned, even one
                # that kills its consumer before any code of ours can count the attempt.
                "x-delivery-limit": settings.max_deliveries,
                "x-dead-letter-exchange": settings.dead_letter_exchange,
                "x-dead-letter-routing-key": name,
            },
        )
        channel.queue_declare(f"{name}.dead", durable=True)
        channel.queue_bind(f"{name}.dead", settings.dead_letter_exchange, routing_key=name)
    channel.queue_bind(settings.queue("parse"), settings.events_exchange, routing_key=settings.events_routing_key)
    # The parsers' shard requests (ShardRequested) join the notifications on the parse queue.
    channel.queue_bind(settings.queue("parse"), settings.pipeline_exchange, routing_key="parse")
    channel.queue_bind(settings.queue("persist"), settings.pipeline_exchange, routing_key="persist")
    channel.queue_bind(settings.queue("assemble"), settings.pipeline_exchange, routing_key="assemble")


class Publisher:
    """Persistent messages with publisher confirms; reconnects on a lost connection.

    Used from one thread only (pika connections are not thread-safe).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def _ensure(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self.close()
            # No heartbeats: this connection is only touched between pieces of work, which may be
            # minutes apart; a dead socket surfaces as an error on the next publish and is retried.
            self._connection = connect(self._settings, heartbeat=0)
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def publish(self, message: Message, exchange: str | None = None, routing_key: str | None = None) -> None:
        self.publish_body(routing_key or message.routing_key, message.to_bytes(), exchange)

    @retry(
        retry=retry_if_exception(_retryable),
        wait=wait_exponential(multiplier=0.5, max=10),
        stop=stop_after_delay(300),
        reraise=True,
    )
    def publish_body(
        self, routing_key: str, body: bytes, exchange: str | None = None, content_type: str | None = "application/json"
    ) -> None:
        """Publish an encoded message, persistent, and wait for the broker's confirm."""
        try:
            channel = self._ensure()
            channel.basic_publish(
                exchange=self._settings.pipeline_exchange if exchange is None else exchange,
                routing_key=routing_key,
                body=body,
                properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, content_type=content_type),
                mandatory=True,
            )
        except CONNECTION_ERRORS as exc:
            if _retryable(exc):
                self._channel = None
            raise

    def publish_raw(self, exchange: str, routing_key: str, body: bytes) -> None:
        """Publish bytes as they are, with no content type (replaying a captured event, for instance)."""
        self.publish_body(routing_key, body, exchange, content_type=None)

    def publish_event(self, body: bytes) -> None:
        """A bucket notification onto the events exchange, where the object store sends its own."""
        self.publish_raw(self._settings.events_exchange, self._settings.events_routing_key, body)

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            with contextlib.suppress(*CONNECTION_ERRORS):
                self._connection.close()
        self._connection = None
        self._channel = None


class PipelinedPublisher:
    """Publishes from a thread of its own so that the caller keeps working while confirms arrive.

    Waiting for each confirm in line would idle the parser for the broker's fsync of every batch;
    here at most ``depth`` messages wait in memory, order is kept (one thread, FIFO), and
    ``flush`` returns only when every message is confirmed -- or raises the first failure.
    """

    def __init__(self, settings: Settings, depth: int = 1) -> None:
        self._settings = settings
        self._publisher = Publisher(settings)
        # Encoded bodies wait here, not models: a batch's bytes are a fraction of its Python objects.
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="publisher", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self._publisher.publish_body(*item)
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()

    def publish(self, message: Message) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((message.routing_key, message.to_bytes()))

    def flush(self) -> None:
        self._queue.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._publisher.close()


@dataclass(frozen=True)
class DeadLetter:
    stage: str
    body: bytes
    reason: str


def _death_reason(properties: pika.BasicProperties) -> str:
    headers = properties.headers or {}
    deaths = headers.get("x-death") or []
    if deaths:
        first = deaths[0]
        return f"{first.get('reason', '?')} after {first.get('count', '?')} time(s) from {first.get('queue', '?')}"
    return str(headers.get("x-first-death-reason", "unknown"))


def list_dead_letters(settings: Settings, stage: str, limit: int = 1000) -> list[DeadLetter]:
    """Read a stage's dead-letter queue without removing anything (messages are returned on close)."""
    connection = connect(settings)
    try:
        channel = connection.channel()
        found = []
        for _ in range(limit):
            method, properties, body = channel.basic_get(f"{settings.queue(stage)}.dead", auto_ack=False)
            if method is None:
                break
            found.append(DeadLetter(stage, body, _death_reason(properties)))
        return found
    finally:
        connection.close()


def take_dead_letters(settings: Settings, stage: str, handle: Callable[[DeadLetter], None], limit: int = 1000) -> int:
    """Hand each dead letter of a stage to ``handle``; remove it only once ``handle`` returned."""
    connection = connect(settings)
    taken = 0
    try:
        channel = connection.channel()
        for _ in range(limit):
            method, properties, body = channel.basic_get(f"{settings.queue(stage)}.dead", auto_ack=False)
            if method is None:
                break
            handle(DeadLetter(stage, body, _death_reason(properties)))
            channel.basic_ack(method.delivery_tag)
            taken += 1
        return taken
    finally:
        connection.close()


class Consumer(Generic[M]):
    """Consumes one queue: one message at a time on a worker thread, ack after the handler returns.

    The body is decoded once, by the stage's decoder; one that does not decode is dead-lettered at
    once. A handler that raises is retried with backoff by requeueing; on the last allowed delivery
    ``give_up`` is told why (to fail the upload) and the message goes to the dead-letter queue.
    """

    def __init__(
        self,
        settings: Settings,
        stage: Stage[M],
        handler: Callable[[M], None],
        give_up: Callable[[M, GiveUp], None],
    ) -> None:
        self._settings = settings
        self._stage = stage
        self._queue = settings.queue(stage.name)
        self._handler = handler
        self._give_up = give_up
        self._stopping = threading.Event()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{stage.name}-worker")
        self._connection: pika.BlockingConnection | None = None

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT; the message in hand is finished and settled first."""
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        self.serve()

    def serve(self) -> None:
        """Consume, reconnecting with backoff whenever the broker goes away, until ``stop``."""
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                self._consume()
                backoff = 0.5
            except CONNECTION_ERRORS as exc:
                if self._stopping.is_set():
                    break
                log.warning("broker connection lost, reconnecting", queue=self._queue, error=str(exc))
                time.sleep(backoff)
                backoff = min(backoff * 2, 15)
        # Messages still waiting for the worker go back to the broker with the connection.
        self._worker.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        self._stopping.set()

    def _consume(self) -> None:
        connection = connect(self._settings)
        self._connection = connection
        try:
            channel = connection.channel()
            declare_topology(channel, self._settings)
            channel.basic_qos(prefetch_count=self._settings.prefetch)
            channel.basic_consume(self._queue, functools.partial(self._on_message, connection))
            log.info("consuming", queue=self._queue)
            while not self._stopping.is_set():
                connection.process_data_events(time_limit=1)
            channel.cancel()
        finally:
            if connection.is_open:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    connection.close()

    def _on_message(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        method: Any,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        headers = properties.headers or {}
        previous = int(headers.get("x-delivery-count", 0))
        # Where the body was published (kept on redelivery): the stage decides what it takes from whom.
        from_pipeline = method.exchange == self._settings.pipeline_exchange
        self._worker.submit(self._work, connection, channel, method.delivery_tag, previous, body, from_pipeline)

    def _work(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        tag: int,
        previous: int,
        body: bytes,
        from_pipeline: bool,
    ) -> None:
        structlog.contextvars.clear_contextvars()
        outcome = self._handle(body, previous, from_pipeline)
        try:
            connection.add_callback_threadsafe(functools.partial(self._settle, channel, tag, outcome))
        except CONNECTION_ERRORS:
            log.warning("connection gone before settling; the broker will redeliver", queue=self._queue)

    def _handle(self, body: bytes, previous: int, from_pipeline: bool) -> str:
        """Decode and handle one body; returns how to settle it: ack, requeue or dead-letter."""
        started = time.perf_counter()
        metrics.MESSAGE_BYTES.labels(self._stage.name).inc(len(body))
        outcome = self._outcome(body, previous, from_pipeline)
        metrics.MESSAGES.labels(self._stage.name, outcome).inc()
        metrics.STAGE_SECONDS.labels(self._stage.name).observe(time.perf_counter() - started)
        if outcome == "dead-letter":
            metrics.DEAD_LETTERS.labels(self._stage.name).inc()
        return outcome

    def _outcome(self, body: bytes, previous: int, from_pipeline: bool) -> str:
        try:
            message = self._stage.decode(body, from_pipeline=from_pipeline)
        except InvalidMessage as exc:
            log.error("rejecting message that does not decode", queue=self._queue, error=str(exc))
            return "dead-letter"
        try:
            self._handler(message)
            outcome = "ack"
        except PermanentFailure as exc:
            error_id = new_error_id()
            log.error("rejecting message", queue=self._queue, error=str(exc), error_id=error_id)
            self._safe_give_up(message, GiveUp(f"the {self._stage.name} stage cannot process it", error_id))
            outcome = "dead-letter"
        except Exception as exc:
            attempt = previous + 1
            reason = f"{type(exc).__name__}: {exc}"
            if attempt >= self._settings.max_deliveries:
                # The detail (exception text, maybe an address or a query) goes to the log only;
                # the upload shows a safe reason and the id to find it here.
                error_id = new_error_id()
                log.error("giving up on message", queue=self._queue, attempt=attempt, error=reason, error_id=error_id)
                safe = f"the {self._stage.name} stage failed {attempt} times; see the {self._stage.name} log"
                self._safe_give_up(message, GiveUp(safe, error_id))
                outcome = "dead-letter"
            else:
                log.warning(
                    "handler failed, will retry",
                    queue=self._queue,
                    attempt=attempt,
                    error=reason,
                    exc_info=True,
                )
                time.sleep(min(2**attempt, 30))
                outcome = "requeue"
        return outcome

    def _safe_give_up(self, message: M, why: GiveUp) -> None:
        try:
            self._give_up(message, why)
        except Exception:
            log.exception("could not record the failure", queue=self._queue)

    @staticmethod
    def _settle(channel: BlockingChannel, tag: int, outcome: str) -> None:
        if not channel.is_open:
            return
        if outcome == "ack":
            channel.basic_ack(tag)
        else:
            channel.basic_nack(tag, requeue=outcome == "requeue")
