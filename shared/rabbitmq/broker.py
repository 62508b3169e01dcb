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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pika
import pika.exceptions
import structlog
from pika.adapters.blocking_connection import BlockingChannel
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from shared.domain.messages import Message
from shared.domain.stages import STAGE_NAMES, GiveUp, InvalidMessage, PermanentFailure, Stage
from shared.domain.uploads import new_error_id
from shared.parsing.errors import bounded
from shared.runtime import metrics
from shared.runtime.consumer_metrics import Refusal, refused
from shared.runtime.settings import Settings

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
        self.publish_once(routing_key, body, exchange, content_type)

    def publish_once(
        self, routing_key: str, body: bytes, exchange: str | None = None, content_type: str | None = "application/json"
    ) -> None:
        """``publish_body`` without its retries: one attempt, its failure raised."""
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


class RequestEventPublisher:
    """Notifications published from a request handler (the intake's retry): confirmed, from any
    thread (one connection behind a lock), and quick to give up.

    A stale connection (the broker restarted since) is replaced and tried once more; beyond that the
    failure is raised at once rather than retried for minutes while a client waits. The caller has
    committed its work before publishing, and the watchdog re-issues what it then left unpublished.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._publisher = Publisher(settings)
        self._lock = threading.Lock()

    def publish_event(self, body: bytes) -> None:
        key, exchange = self._settings.events_routing_key, self._settings.events_exchange
        with self._lock:
            try:
                self._publisher.publish_once(key, body, exchange, content_type=None)
            except CONNECTION_ERRORS as exc:
                if not _retryable(exc):
                    raise
                self._publisher.close()
                self._publisher.publish_once(key, body, exchange, content_type=None)

    def close(self) -> None:
        with self._lock:
            self._publisher.close()


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


# Headers only the broker writes (dead-lettering) or this module writes (refusing a message): a
# message that arrives on a work queue carrying one is forged, since a genuine one is published
# without them. Refusing those on arrival is what lets ``genobase dead-letters`` trust the ones it
# finds on a dead letter: the broker updates a forged ``x-death`` entry instead of adding its own.
RESERVED_HEADER_PREFIXES = ("x-death", "x-first-death-", "x-last-death-", "x-genobase-")
REFUSED_HEADER = "x-genobase-refused"  # a ``Refusal``: the consumer refused the message on arrival
REFUSED_DETAIL_HEADER = "x-genobase-detail"  # why, in a few words (bounded, no secrets: about the message)
ORIGIN_HEADER = "x-genobase-origin"  # the exchange the broker said it was published to
# A refused body is kept in its dead letter up to this much: enough to see what it was, while a
# forged giant is not stored again whole.
REFUSED_BODY_KEPT_BYTES = 64 * 1024
MAX_DETAIL_BYTES = 300


class Refused(Exception):
    """A message refused on arrival (its headers, size or body): dead-lettered at once, with ``reason``."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = bounded(detail, MAX_DETAIL_BYTES)


@dataclass(frozen=True)
class Arrival:
    """What a consumer takes from one delivery once its headers and size passed the checks."""

    body: bytes
    previous: int  # deliveries before this one, as the broker counted them
    from_pipeline: bool  # published on the pipeline's own exchange (the broker says so, not the message)


def check_arrival(
    stage: Stage[Any], settings: Settings, exchange: str, redelivered: bool, headers: object, body: bytes
) -> Arrival:
    """Check what arrived before anything decodes it; raises ``Refused``.

    ``exchange`` and ``redelivered`` come from the broker's delivery, which a publisher cannot
    forge; the headers come from the publisher, so each is checked for its type.
    """
    limit = stage.max_body_bytes(settings)
    if len(body) > limit:
        raise Refused(Refusal.TOO_LARGE, f"a body of {len(body)} bytes, above the {stage.name} limit of {limit}")
    if headers is None:
        headers = {}
    if not isinstance(headers, dict):
        raise Refused(Refusal.BAD_HEADER, "the headers are not a table")
    for name in headers:
        if not isinstance(name, str) or name.lower().startswith(RESERVED_HEADER_PREFIXES):
            raise Refused(Refusal.BAD_HEADER, f"header {str(name)[:60]!r} is set by the broker only")
    previous = delivery_count(headers, redelivered=redelivered, max_deliveries=settings.max_deliveries)
    return Arrival(body, previous, exchange == settings.pipeline_exchange)


def delivery_count(headers: dict[str, object], *, redelivered: bool, max_deliveries: int) -> int:
    """Deliveries before this one, from the quorum queue's ``x-delivery-count``.

    A first delivery has had none, whatever the header says (some broker versions pass a
    publisher's header through until they count one themselves); a count is clamped to the range
    the broker can send. A header that is not an integer is a forgery: ``Refused``.
    """
    raw = headers.get("x-delivery-count")
    if raw is None:
        return 0
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise Refused(Refusal.BAD_HEADER, "x-delivery-count is not a number")
    if not redelivered:
        return 0
    return min(max(raw, 0), max_deliveries)


@dataclass(frozen=True)
class DeadLetter:
    stage: str
    body: bytes
    reason: str
    # Set when the consumer refused it on arrival (a ``Refusal``): it never was a message of its queue.
    refused: str | None = None
    # The exchange it was first published to, as the broker recorded it (None: unknown).
    origin: str | None = None


def _text(value: object, limit: int = 200) -> str:
    return bounded(str(value), limit) if isinstance(value, str | int) else "?"


def read_dead_letter(stage: str, properties: pika.BasicProperties, body: bytes) -> DeadLetter:
    """A dead letter as the broker holds it; never raises, whatever its headers are."""
    headers = properties.headers if isinstance(properties.headers, dict) else {}
    reason = headers.get(REFUSED_HEADER)
    if isinstance(reason, str):
        detail = headers.get(REFUSED_DETAIL_HEADER)
        origin = headers.get(ORIGIN_HEADER)
        why = f"refused on arrival: {_text(reason, 40)}" + (f" ({_text(detail, 300)})" if detail else "")
        return DeadLetter(
            stage, body, why, refused=_text(reason, 40), origin=origin if isinstance(origin, str) else None
        )
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        first = deaths[0]
        why = f"{_text(first.get('reason'))} after {_text(first.get('count'))} time(s) from {_text(first.get('queue'))}"
        origin = first.get("exchange")
        return DeadLetter(stage, body, why, origin=origin if isinstance(origin, str) else None)
    return DeadLetter(stage, body, "unknown")


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
            found.append(read_dead_letter(stage, properties, body))
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
            handle(read_dead_letter(stage, properties, body))
            channel.basic_ack(method.delivery_tag)
            taken += 1
        return taken
    finally:
        connection.close()


# How one message is settled: acknowledged, returned for another try, dead-lettered by the broker
# (after its handler failed for good) or refused (dead-lettered by the consumer, with its reason).
Outcome = str | Refused


class Consumer(Generic[M]):
    """Consumes one queue: one message at a time on a worker thread, ack after the handler returns.

    Every delivery is checked on arrival (``check_arrival``: its size and headers) and decoded
    once, by the stage's decoder; one that fails either is refused: acknowledged and put on the
    dead-letter queue with its reason, and counted (``genobase_messages_refused_total``). A handler
    that raises is retried with backoff by requeueing; on the last allowed delivery ``give_up`` is
    told why (to fail the upload) and the message goes to the dead-letter queue.

    Nothing a message holds can stop the consumer: pika's callback and the worker catch every
    exception, and a done-callback on the worker's future settles the message should anything
    still escape, so no message is left unacknowledged holding a prefetch slot.
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
        """Consume, reconnecting with backoff whenever the broker goes away, until ``stop``.

        Any other failure of the loop is logged and treated the same way: the connection is
        dropped (its unacknowledged messages go back to the queue) and a new one made.
        """
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                self._consume()
                backoff = 0.5
            except Exception as exc:
                if self._stopping.is_set():
                    break
                if isinstance(exc, CONNECTION_ERRORS):
                    log.warning("broker connection lost, reconnecting", queue=self._queue, error=str(exc))
                else:
                    log.exception("consumer loop failed, reconnecting", queue=self._queue)
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
            if self._settings.amqp_declare_topology:
                declare_topology(channel, self._settings)
            else:  # a user that may not configure: the topology must already be there
                channel.queue_declare(self._queue, passive=True)
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
        """pika's callback, on the connection's thread. It never raises: an exception here would
        leave pika's loop and end the process with every prefetched message in it."""
        tag, exchange = method.delivery_tag, method.exchange
        try:
            arrival = check_arrival(
                self._stage, self._settings, exchange, bool(method.redelivered), properties.headers, body
            )
        except Exception as exc:
            refusal = exc if isinstance(exc, Refused) else self._internal(exc)
            log.error("refusing message on arrival", queue=self._queue, reason=refusal.reason, detail=refusal.detail)
            self._count(refusal, len(body))
            self._settle(channel, tag, refusal, body, exchange)
            return
        try:
            future = self._worker.submit(self._work, connection, channel, tag, arrival, exchange)
        except RuntimeError:  # the worker is shutting down: the message goes back with the connection
            return
        future.add_done_callback(functools.partial(self._settle_if_raised, connection, channel, tag, body, exchange))

    def _work(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        tag: int,
        arrival: Arrival,
        exchange: str,
    ) -> None:
        structlog.contextvars.clear_contextvars()
        outcome: Outcome
        try:
            outcome = self._handle(arrival.body, arrival.previous, arrival.from_pipeline)
        except Exception as exc:
            outcome = self._internal(exc)
            self._count(outcome, len(arrival.body))
        self._settle_threadsafe(connection, channel, tag, outcome, arrival.body, exchange)

    def _settle_if_raised(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        tag: int,
        body: bytes,
        exchange: str,
        future: Future[None],
    ) -> None:
        """The last guard: should ``_work`` itself raise, the message is still settled (refused)."""
        if future.cancelled() or future.exception() is None:
            return
        refusal = self._internal(future.exception())
        self._count(refusal, len(body))
        self._settle_threadsafe(connection, channel, tag, refusal, body, exchange)

    def _internal(self, exc: BaseException | None) -> Refused:
        log.error("the consumer failed around its handler; refusing the message", queue=self._queue, exc_info=exc)
        return Refused(Refusal.INTERNAL, f"the {self._stage.name} consumer failed: {type(exc).__name__}")

    def _count(self, outcome: Outcome, size: int) -> None:
        """Metrics of a message settled without ``_handle`` having counted it."""
        name = self._stage.name
        metrics.MESSAGE_BYTES.labels(name).inc(size)
        metrics.MESSAGES.labels(name, "dead-letter").inc()
        metrics.DEAD_LETTERS.labels(name).inc()
        if isinstance(outcome, Refused):
            refused(name, outcome.reason)

    def _settle_threadsafe(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        tag: int,
        outcome: Outcome,
        body: bytes,
        exchange: str,
    ) -> None:
        try:
            connection.add_callback_threadsafe(functools.partial(self._settle, channel, tag, outcome, body, exchange))
        except CONNECTION_ERRORS:
            log.warning("connection gone before settling; the broker will redeliver", queue=self._queue)

    def _handle(self, body: bytes, previous: int, from_pipeline: bool) -> Outcome:
        """Decode and handle one body; returns how to settle it: ack, requeue, dead-letter or refuse."""
        started = time.perf_counter()
        metrics.MESSAGE_BYTES.labels(self._stage.name).inc(len(body))
        outcome = self._outcome(body, previous, from_pipeline)
        label = "dead-letter" if isinstance(outcome, Refused) else outcome
        metrics.MESSAGES.labels(self._stage.name, label).inc()
        metrics.STAGE_SECONDS.labels(self._stage.name).observe(time.perf_counter() - started)
        if label == "dead-letter":
            metrics.DEAD_LETTERS.labels(self._stage.name).inc()
        if isinstance(outcome, Refused):
            refused(self._stage.name, outcome.reason)
        return outcome

    def _outcome(self, body: bytes, previous: int, from_pipeline: bool) -> Outcome:
        try:
            message = self._stage.decode(body, from_pipeline=from_pipeline)
        except InvalidMessage as exc:
            log.error("refusing message that does not decode", queue=self._queue, error=str(exc))
            return Refused(Refusal.INVALID, str(exc))
        except Exception as exc:  # a decoder that broke on what it was given: the body is at fault
            log.error("refusing message that broke its decoder", queue=self._queue, exc_info=True)
            return Refused(Refusal.INVALID, f"the body broke the {self._stage.name} decoder: {type(exc).__name__}")
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

    def _settle(self, channel: BlockingChannel, tag: int, outcome: Outcome, body: bytes, exchange: str) -> None:
        """On the connection's thread. A lost channel is left to the broker (it redelivers); any
        other failure is logged, never raised into pika's loop."""
        if not channel.is_open:
            return
        try:
            if isinstance(outcome, Refused):
                self._refuse(channel, tag, outcome, body, exchange)
            elif outcome == "ack":
                channel.basic_ack(tag)
            else:
                channel.basic_nack(tag, requeue=outcome == "requeue")
        except CONNECTION_ERRORS:
            log.warning("channel lost while settling; the broker will redeliver", queue=self._queue)
        except Exception:
            log.exception("could not settle a message", queue=self._queue)

    def _refuse(self, channel: BlockingChannel, tag: int, refusal: Refused, body: bytes, exchange: str) -> None:
        """Dead-letter a refused message ourselves, with clean headers that say why, then ack it.

        The broker's own dead-lettering (a nack) would keep the publisher's headers, forged ones
        included; these dead letters carry only what this consumer wrote.
        """
        channel.basic_publish(
            exchange=self._settings.dead_letter_exchange,
            routing_key=self._queue,
            body=body[:REFUSED_BODY_KEPT_BYTES],
            properties=pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Persistent,
                headers={
                    REFUSED_HEADER: refusal.reason.value,
                    REFUSED_DETAIL_HEADER: refusal.detail,
                    ORIGIN_HEADER: exchange,
                },
            ),
        )
        channel.basic_ack(tag)
