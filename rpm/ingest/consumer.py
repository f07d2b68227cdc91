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

`MqttConsumer.stop` is the clean stop: the batch in hand is committed and acknowledged, no
new one is taken, and the session is kept for the next start. With `leave_on_stop` a
shared-subscription consumer that is scaled down for good leaves its group instead (see
`_leave` and docs/mqtt-consumer.md). Cancelling `run` is the abrupt stop: nothing more is
acknowledged, so the broker keeps whatever was in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

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
# Never subscribed to: see `_ManualAckClient.flush`.
_FLUSH_FILTER = "rpm/v1/consumer-flush"
# Leaving the group, the drain ends when nothing has arrived for this long after our last
# acknowledgement: the broker sends what it still holds for us as soon as it gets one.
DRAIN_QUIET_S = 1.0
# Messages decoded between two turns of the event loop: a few milliseconds of work, so
# that the batch being written does not wait long for its next step.
DECODE_SLICE = 20

# Mosquitto publishes its version here, retained, e.g. "mosquitto version 2.0.11".
VERSION_TOPIC = "$SYS/broker/version"
VERSION_WAIT_S = 5.0
# Mosquitto 2.0.12's change log: "Fix $share subscriptions not being recovered for durable
# clients that reconnect". 2.0.11 measured: after a restart, what was published to the
# shared group until its member subscribed again was acknowledged and dropped.
SHARED_SUBSCRIPTIONS_RESTORED_SINCE = (2, 0, 12)

# A batch taken and planned; None once taking has stopped.
Batch = tuple[list[aiomqtt.Message], BatchPlan] | None
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
    # On a clean stop, leave the shared group for good (scale-down) rather than keep the
    # session for a restart. Only a shared MQTT 5 subscriber can: see `MqttConsumer._leave`.
    leave_on_stop: bool = False

    @property
    def leaves_on_stop(self) -> bool:
        # A plain subscriber that unsubscribed would have nothing queued for it while down:
        # every message published until its restart would be lost.
        return (
            self.leave_on_stop
            and self.shared_group is not None
            and self.protocol == aiomqtt.ProtocolVersion.V5
        )

    def topic_filters(self) -> list[str]:
        prefix = f"$share/{self.shared_group}/" if self.shared_group else ""
        return [prefix + READINGS_TOPIC, prefix + STATUS_TOPIC]


def loses_shared_subscriptions(version: str) -> bool | None:
    """Whether a broker of this `$SYS/broker/version` is known to drop shared subscriptions
    when it restarts; None when it is not a Mosquitto version we can read."""
    found = re.fullmatch(r"mosquitto version (\d+)\.(\d+)\.(\d+)\S*", version.strip())
    if found is None:
        return None
    return tuple(int(part) for part in found.groups()) < SHARED_SUBSCRIPTIONS_RESTORED_SINCE


class _ClosedIfHandshakeFails(ssl.SSLSocket):
    """paho leaves the socket open when the TLS handshake fails (a certificate that does
    not verify, say), one leaked socket for every reconnection attempt: this closes it."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def tls_context(address: BrokerAddress) -> ssl.SSLContext | None:
    if address.tls is None:
        return None
    context = address.tls.context()
    context.sslsocket_class = _ClosedIfHandshakeFails
    return context


# What OpenSSL says, inside Python's message, when the peer's certificate fails: e.g.
# "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in
# certificate chain (_ssl.c:1006)". aiomqtt keeps only the text of the error it wraps.
_CLOSED_BEFORE_CONNACK = "the broker closed the connection before accepting it"
_VERIFY_FAILED = re.compile(
    r"CERTIFICATE_VERIFY_FAILED\]\s*(?:certificate verify failed: )?(.*?)\s*(?:\(_ssl\.c:\d+\))?$"
)


def describe_broker_error(address: BrokerAddress, error: aiomqtt.MqttError) -> str:
    """What went wrong connecting, in words an operator can act on: a certificate that did
    not verify, or TLS on one side only, rather than OpenSSL's bare text."""
    text = str(error)
    if (failed := _VERIFY_FAILED.search(text)) is not None:
        trusted = (
            f"RPM_MQTT_CA_FILE ({address.tls.ca_file})"
            if address.tls and address.tls.ca_file
            else "the system's trust store (RPM_MQTT_CA_FILE is unset)"
        )
        return (
            f"the broker's certificate did not verify for host {address.host} ({address}):"
            f" {failed.group(1).rstrip('.')}. It must be signed by a CA in {trusted} and"
            f" name {address.host} (docs/tls.md)"
        )
    if address.tls is not None and ("SSL" in text or "reset" in text or "EOF" in text):
        return (
            f"{address}: no TLS connection ({text}); is port {address.port} the broker's"
            " TLS listener?"
        )
    if address.tls is None and text == _CLOSED_BEFORE_CONNACK:
        return (
            f"{address}: {text}; if port {address.port} is a TLS listener (8883, say),"
            " use an mqtts:// URL"
        )
    return f"{address}: {text}"


async def broker_version(address: BrokerAddress, protocol: aiomqtt.ProtocolVersion) -> str | None:
    """The broker's `$SYS/broker/version`, through a connection of its own (clean session,
    QoS 0, nothing to acknowledge); None if it says nothing within `VERSION_WAIT_S`."""
    try:
        async with asyncio.timeout(VERSION_WAIT_S):
            async with aiomqtt.Client(
                address.host,
                address.port,
                username=address.username,
                password=address.password,
                protocol=protocol,
                tls_context=tls_context(address),
            ) as client:
                await client.subscribe(VERSION_TOPIC)
                async for message in client.messages:
                    return _payload_bytes(message.payload).decode(errors="replace")
    except (aiomqtt.MqttError, TimeoutError):
        pass
    return None


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
            tls_context=tls_context(address),
            # A persistent session: unacknowledged messages survive our restart.
            clean_session=None if v5 else False,
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self.client._client.manual_ack_set(True)
        self._fail_connect_on_close()
        self._getter: asyncio.Task[aiomqtt.Message] | None = None

    def _fail_connect_on_close(self) -> None:
        """Fail the connection attempt as soon as the broker closes it before its CONNACK.

        aiomqtt ignores a disconnection before CONNACK and waits out its timeout instead,
        which is what a plain client sees on a TLS listener: the broker drops it at once.
        """
        paho_client = self.client._client
        aiomqtt_on_disconnect = paho_client.on_disconnect
        assert aiomqtt_on_disconnect is not None
        loop = self.client._loop

        def fail_connect() -> None:
            if not self.client._connected.done():
                self.client._connected.set_exception(aiomqtt.MqttError(_CLOSED_BEFORE_CONNACK))

        def on_disconnect(*args: Any) -> None:
            # paho calls this from the connecting thread as well as from the event loop.
            loop.call_soon_threadsafe(fail_connect)
            aiomqtt_on_disconnect(*args)

        paho_client.on_disconnect = on_disconnect

    def ack(self, message: aiomqtt.Message) -> None:
        if message.qos > 0:
            self.client._client.ack(message.mid, message.qos)

    async def next_batch(
        self, size: int, stop: asyncio.Event | None = None, quiet_s: float | None = None
    ) -> list[aiomqtt.Message]:
        """Wait for one message, then take whatever else is already waiting, up to `size`.

        An empty batch means `stop` was set, or nothing arrived within `quiet_s`.
        """
        queue: asyncio.Queue[aiomqtt.Message] = self.client._queue
        disconnected = self.client._disconnected
        if stop is not None and stop.is_set():
            return []
        if self._getter is None:
            self._getter = asyncio.create_task(queue.get())
        # The getter task is kept across calls rather than cancelled: a get that completes
        # while being cancelled would drop a message we would then never acknowledge.
        waiting: set[asyncio.Future[Any]] = {self._getter, disconnected}
        stopping = asyncio.create_task(stop.wait()) if stop is not None else None
        if stopping is not None:
            waiting.add(stopping)
        try:
            done, _ = await asyncio.wait(
                waiting, timeout=quiet_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if stopping is not None:
                stopping.cancel()
        if self._getter not in done:
            if disconnected in done:
                raise aiomqtt.MqttError(
                    "disconnected while waiting for messages"
                ) from disconnected.exception()
            return []
        batch = [self._getter.result()]
        self._getter = None
        self._read_waiting(size - len(batch) - queue.qsize())
        while len(batch) < size and not queue.empty():
            batch.append(queue.get_nowait())
        return batch

    async def unsubscribe(self, topic_filters: list[str]) -> None:
        await self.client.unsubscribe(topic_filters)

    async def flush(self) -> None:
        """Return once the broker has processed everything we sent, acknowledgements included.

        Closing a socket that has unread data (the broker keeps sending up to our Receive
        Maximum) resets the connection, and the reset discards what the broker had not read
        yet: without this, the last acknowledgements before a clean stop were lost and the
        messages delivered again. The broker handles a connection's packets in order, so
        the answer to an UNSUBSCRIBE sent after them says they were all processed. The
        filter is one we never subscribe to: the broker answers (refused, or "no
        subscription existed") and changes nothing.
        """
        await self.client.unsubscribe(_FLUSH_FILTER)

    async def end_session(self) -> None:
        """Disconnect and have the broker drop our session now (MQTT 5 only).

        The session expiry set at connection can be lowered in DISCONNECT (MQTT 5.0,
        3.14.2.2.2); aiomqtt's own disconnect sends no properties.
        """
        properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0
        self.client._client.disconnect(properties=properties)
        # Resolved by the DISCONNECT going out; `async with` then has nothing left to do.
        await self.client._disconnected

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
        disconnected = self.client._disconnected
        if disconnected.done() and not disconnected.cancelled():
            # Retrieved, so that asyncio does not log it as never retrieved: an unexpected
            # disconnection has already been reported by whatever it interrupted.
            disconnected.exception()


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
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask `run` to return once the batch in hand is committed and acknowledged."""
        self._stop.set()

    async def run(self) -> None:
        """Consume until `stop` (or cancellation), reconnecting with backoff."""
        backoff = Backoff()
        checking: asyncio.Task[None] | None = None
        while not self._stop.is_set():
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
                    if self._options.shared_group is not None:
                        checking = asyncio.create_task(
                            self._check_shared_subscriptions(), name="mqtt-broker-version"
                        )
                    await self._consume(connection)
                    await connection.flush()
                    if self._options.leaves_on_stop:
                        await self._leave(connection)
                    # Otherwise `async with` disconnects normally and the broker keeps the
                    # session, and whatever we took but did not acknowledge, for our return.
            except aiomqtt.MqttError as exc:
                delay = backoff.next_delay()
                self._health.set("broker", False, describe_broker_error(self._address, exc))
                logger.debug("reconnecting to %s in %.1f s", self._address, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            else:
                return
            finally:
                connection.close()
                if checking is not None:
                    checking.cancel()
                    checking = None
        if self._options.leaves_on_stop:
            logger.warning(
                "stopped while not connected to %s: the session of %s is kept, with any "
                "messages the broker holds for it",
                self._address,
                self._options.client_id,
            )

    async def _check_shared_subscriptions(self) -> None:
        """Warn, at each connection, when the broker is known to lose shared subscriptions.

        On such a broker a restart drops our `$share/...` subscription until we subscribe
        again, and whatever devices publish meanwhile is acknowledged to them and lost: 65
        to 85 of 1,747 readings published in the 0.3 s after a Mosquitto 2.0.11 came back,
        in one report.
        A plain subscription is restored with the session.
        """
        version = await broker_version(self._address, self._options.protocol)
        if version is None:
            logger.info("%s did not say its version (%s)", self._address, VERSION_TOPIC)
            return
        if loses_shared_subscriptions(version):
            logger.warning(
                "READINGS WILL BE LOST AT EVERY BROKER RESTART: %s (%s) does not restore "
                "shared subscriptions, and RPM_MQTT_SHARED_GROUP=%s is set. What devices "
                "publish until we subscribe again is acknowledged to them and dropped. "
                "Upgrade Mosquitto to %s or later, or run one process with a plain "
                "subscription (RPM_MQTT_SHARED_GROUP empty). See docs/mqtt-consumer.md.",
                self._address,
                version,
                self._options.shared_group,
                ".".join(map(str, SHARED_SUBSCRIPTIONS_RESTORED_SINCE)),
            )

    async def _commit_and_ack(
        self, connection: _ManualAckClient, batch: list[aiomqtt.Message]
    ) -> None:
        """All the steps for one batch, in turn (the drain of `_leave`)."""
        decoded = await self._decode(batch)
        plan = await self._retrying(partial(self._ingest.plan, decoded), len(batch))
        await self._retrying(partial(self._ingest.store, plan), len(batch))
        for message in batch:
            connection.ack(message)

    async def _leave(self, connection: _ManualAckClient) -> None:
        """Leave the shared group for good: drain what the broker routed to us, then go.

        Mosquitto hands none of a member's unacknowledged messages to the others, and drops
        them with its session (docs/mqtt-consumer.md). So: unsubscribe first, so that no new
        message is routed here; then store and acknowledge everything already routed here
        (in flight, and queued behind our Receive Maximum), which the broker keeps sending
        as we acknowledge; only when nothing has come for `DRAIN_QUIET_S` end the session.
        Anything failing on the way (the broker, or cancellation while the database is
        down) leaves by the ordinary path instead, keeping the session and its messages.
        """
        await connection.unsubscribe(self._options.topic_filters())
        drained = 0
        size = self._options.batch_size
        while batch := await connection.next_batch(size, quiet_s=DRAIN_QUIET_S):
            await self._commit_and_ack(connection, batch)
            drained += len(batch)
        await connection.flush()
        await connection.end_session()
        logger.info(
            "left the shared group %s: stored and acknowledged %d more messages, then "
            "ended the session of %s",
            self._options.shared_group,
            drained,
            self._options.client_id,
        )

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
        """Until `stop`: then the writer finishes what was taken, and both return."""
        size = self._options.batch_size
        while batch := await connection.next_batch(size, self._stop):
            decoded = await self._decode(batch)
            plan = await self._retrying(partial(self._ingest.plan, decoded), len(batch))
            await planned.put((batch, plan))
        await planned.put(None)

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
        while (taken := await planned.get()) is not None:
            batch, plan = taken
            await self._retrying(partial(self._ingest.store, plan), len(batch))
            for message in batch:
                connection.ack(message)

    async def _retrying(self, step: Callable[[], Awaitable[T]], messages: int) -> T:
        """Run a step of storing a batch until the database lets it; never give up on it."""
        backoff = Backoff()
        while True:
            try:
                result = await step()
            except (psycopg.OperationalError, PoolTimeout) as exc:
                delay = backoff.next_delay()
                self._health.set("database", False, str(exc).strip().splitlines()[0])
                logger.warning(
                    "could not store a batch of %d messages; retrying in %.1f s",
                    messages,
                    delay,
                )
                await asyncio.sleep(delay)
            else:
                # After an outage, ready again at the first commit rather than the next probe.
                self._health.set("database", True)
                return result


def _payload_bytes(payload: object) -> bytes:
    match payload:
        case bytes() | bytearray():
            return bytes(payload)
        case None:
            return b""
        case _:
            return str(payload).encode()
