"""The MQTT adapter: consume device messages in batches, acknowledge after the commit.

QoS 1 with a persistent session: the broker keeps a message until we acknowledge it, and
we acknowledge a batch only once `IngestService.store` has committed it, as readings
or dead letters. A crash at any point before that leaves the messages unacknowledged, and
the broker delivers them again when the session resumes; the reading's natural key makes
the second delivery harmless.

aiomqtt 2.x has no public manual acknowledgement; the paho client under it does
(`manual_ack_set`, `ack(mid, qos)`). Everything that reaches past aiomqtt's public API is
in `_ManualAckClient` below, and `tests/integration/test_consumer.py` proves that an
unacknowledged message is delivered again.

Batches form by themselves: the consumer takes every message that is already waiting (up
to the batch size), so under load a batch holds what arrived during the previous commit
and at low rates a message is stored at once rather than waiting for company.

Two tasks share the work. One takes a batch, decodes it and looks its devices up; the
other writes, commits and acknowledges the batches, one transaction at a time and in the
order they arrived. Under load the next batch is decoded while the last one is written, a
slice at a time so that the write is never kept waiting long: the database and our
decoding then share the two cores instead of taking turns (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import aiomqtt
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg_pool import PoolTimeout

from rpm.backoff import Backoff
from rpm.config import BrokerAddress
from rpm.health import Health
from rpm.ingest import metrics
from rpm.ingest.pipeline import BatchPlan, DecodedMessage, Envelope, Transport
from rpm.ingest.service import IngestService

logger = logging.getLogger(__name__)

READINGS_TOPIC = "rpm/v1/devices/+/readings"
STATUS_TOPIC = "rpm/v1/devices/+/status"
# Messages decoded between two turns of the event loop: a few milliseconds of work, so
# that the batch being written does not wait long for its next step.
DECODE_SLICE = 20

Batch = tuple[list[aiomqtt.Message], BatchPlan]
T = TypeVar("T")


@dataclass(frozen=True)
class ConsumerOptions:
    client_id: str
    keepalive_s: int
    # None subscribes plainly: the embedded broker has no shared subscriptions.
    shared_group: str | None
    protocol: aiomqtt.ProtocolVersion
    batch_size: int = 500
    # How long the broker keeps our session (and our unacknowledged messages) while we are
    # disconnected. MQTT 5 only; with 3.1.1 the broker's own setting applies.
    session_expiry_s: int = 7 * 24 * 3600

    def topic_filters(self) -> list[str]:
        prefix = f"$share/{self.shared_group}/" if self.shared_group else ""
        return [prefix + READINGS_TOPIC, prefix + STATUS_TOPIC]


class _ManualAckClient:
    """aiomqtt's client with acknowledgement left to us, and a batch-wise message getter.

    The only place that touches aiomqtt's private attributes (`_client`, `_queue`,
    `_disconnected`): pinned to aiomqtt 2.x in pyproject.toml.
    """

    def __init__(self, address: BrokerAddress, options: ConsumerOptions) -> None:
        v5 = options.protocol == aiomqtt.ProtocolVersion.V5
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = options.session_expiry_s
            # At most this many unacknowledged messages in flight to us: four batches'
            # worth, one being written, one decoded and waiting, one being decoded and
            # one arriving meanwhile.
            properties.ReceiveMaximum = min(65535, 4 * options.batch_size)
        self.client = aiomqtt.Client(
            address.host,
            address.port,
            username=address.username,
            password=address.password,
            identifier=options.client_id,
            protocol=options.protocol,
            keepalive=options.keepalive_s,
            tls_params=aiomqtt.TLSParameters() if address.tls else None,
            # A persistent session: unacknowledged messages survive our restart.
            clean_session=None if v5 else False,
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self.client._client.manual_ack_set(True)
        self._getter: asyncio.Task[aiomqtt.Message] | None = None

    def ack(self, message: aiomqtt.Message) -> None:
        if message.qos > 0:
            self.client._client.ack(message.mid, message.qos)

    async def next_batch(self, size: int) -> list[aiomqtt.Message]:
        """Wait for one message, then take whatever else is already waiting, up to `size`."""
        queue: asyncio.Queue[aiomqtt.Message] = self.client._queue
        disconnected = self.client._disconnected
        if self._getter is None:
            self._getter = asyncio.create_task(queue.get())
        # The getter task is kept across calls rather than cancelled: a get that completes
        # while being cancelled would drop a message we would then never acknowledge.
        done, _ = await asyncio.wait(
            (self._getter, disconnected), return_when=asyncio.FIRST_COMPLETED
        )
        if self._getter not in done:
            raise aiomqtt.MqttError("disconnected while waiting for messages")
        batch = [self._getter.result()]
        self._getter = None
        self._read_waiting(size - len(batch) - queue.qsize())
        while len(batch) < size and not queue.empty():
            batch.append(queue.get_nowait())
        return batch

    def _read_waiting(self, wanted: int) -> None:
        """Read up to `wanted` more messages that are already in the socket's buffer.

        aiomqtt reads one packet a turn of the event loop, so under load a batch taken at
        its pace stayed small (44 messages on average with one reading a message) and the
        per-batch work dominated.
        """
        queue: asyncio.Queue[aiomqtt.Message] = self.client._queue
        for _ in range(wanted):
            before = queue.qsize()
            try:
                # A lost connection is reported to aiomqtt by paho's disconnect callback.
                if self.client._client.loop_read() != paho.MQTT_ERR_SUCCESS:
                    return
            except Exception as exc:
                # As aiomqtt's own reader does: a read that fails means a broken connection.
                if not self.client._disconnected.done():
                    self.client._disconnected.set_exception(exc)
                return
            if queue.qsize() == before:  # nothing more waiting, or not a message
                return

    def close(self) -> None:
        if self._getter is not None:
            self._getter.cancel()
            self._getter = None


class MqttConsumer:
    def __init__(
        self,
        address: BrokerAddress,
        options: ConsumerOptions,
        ingest: IngestService,
        health: Health,
    ) -> None:
        self._address = address
        self._options = options
        self._ingest = ingest
        self._health = health

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with backoff."""
        backoff = Backoff()
        while True:
            connection = _ManualAckClient(self._address, self._options)
            try:
                async with connection.client as client:
                    for topic_filter in self._options.topic_filters():
                        await client.subscribe(topic_filter, qos=1)
                    self._health.set("broker", True)
                    logger.info(
                        "subscribed to %s on %s as %s",
                        ", ".join(self._options.topic_filters()),
                        self._address,
                        self._options.client_id,
                    )
                    backoff.reset()
                    await self._consume(connection)
            except aiomqtt.MqttError as exc:
                delay = backoff.next_delay()
                self._health.set("broker", False, f"{self._address}: {exc}")
                logger.debug("reconnecting to %s in %.1f s", self._address, delay)
                await asyncio.sleep(delay)
            finally:
                connection.close()

    async def _consume(self, connection: _ManualAckClient) -> None:
        """Take, decode and plan in one task, write and acknowledge in another."""
        # One planned batch may wait while another is written; then taking pauses.
        planned: asyncio.Queue[Batch] = asyncio.Queue(maxsize=1)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._take(connection, planned), name="mqtt-take")
                tasks.create_task(self._write(connection, planned), name="mqtt-write")
        except ExceptionGroup as failed:
            # One task failed and the other was cancelled, its batch left unacknowledged.
            # Raise the failure itself: a lost broker means reconnecting, anything else
            # stops the service, as when one task did both.
            raise failed.exceptions[0] from None

    async def _take(self, connection: _ManualAckClient, planned: asyncio.Queue[Batch]) -> None:
        while True:
            batch = await connection.next_batch(self._options.batch_size)
            decoded = await self._decode(batch)
            plan = await self._retrying(partial(self._ingest.plan, decoded), len(batch))
            await planned.put((batch, plan))

    async def _decode(self, batch: list[aiomqtt.Message]) -> list[DecodedMessage]:
        """Decode a slice at a time, letting the batch being written go on in between."""
        received_at = datetime.now(UTC)
        metrics.MESSAGES_RECEIVED.labels(Transport.MQTT.value).inc(len(batch))
        decoded = []
        for start in range(0, len(batch), DECODE_SLICE):
            if start:
                await asyncio.sleep(0)
            decoded += [
                self._ingest.decode(
                    Envelope(Transport.MQTT, str(m.topic), _payload_bytes(m.payload), received_at)
                )
                for m in batch[start : start + DECODE_SLICE]
            ]
        return decoded

    async def _write(self, connection: _ManualAckClient, planned: asyncio.Queue[Batch]) -> None:
        """Store each batch and then acknowledge it.

        Until the commit nothing is acknowledged, so the broker holds the messages for us
        whatever happens to this process meanwhile.
        """
        while True:
            batch, plan = await planned.get()
            await self._retrying(partial(self._ingest.store, plan), len(batch))
            for message in batch:
                connection.ack(message)

    async def _retrying(self, step: Callable[[], Awaitable[T]], messages: int) -> T:
        """Run a step of storing a batch until the database lets it; never give up on it."""
        backoff = Backoff()
        while True:
            try:
                return await step()
            except (psycopg.OperationalError, PoolTimeout) as exc:
                delay = backoff.next_delay()
                self._health.set("database", False, str(exc).strip().splitlines()[0])
                logger.warning(
                    "could not store a batch of %d messages; retrying in %.1f s",
                    messages,
                    delay,
                )
                await asyncio.sleep(delay)


def _payload_bytes(payload: object) -> bytes:
    match payload:
        case bytes() | bytearray():
            return bytes(payload)
        case None:
            return b""
        case _:
            return str(payload).encode()
