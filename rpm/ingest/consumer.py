"""The MQTT adapter: subscribe to the device topics and keep subscribed.

A reconnect loop with backoff wraps the client: a broker that is down at start-up or
goes away later is retried, logged once per outage, and reported to `/readyz`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomqtt

from rpm.backoff import Backoff
from rpm.config import BrokerAddress
from rpm.health import Health

logger = logging.getLogger(__name__)

READINGS_TOPIC = "rpm/v1/devices/+/readings"
STATUS_TOPIC = "rpm/v1/devices/+/status"

MessageHandler = Callable[[aiomqtt.Message], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerOptions:
    client_id: str
    keepalive_s: int
    # None subscribes plainly: the embedded broker has no shared subscriptions.
    shared_group: str | None
    protocol: aiomqtt.ProtocolVersion

    def topic_filters(self) -> list[str]:
        prefix = f"$share/{self.shared_group}/" if self.shared_group else ""
        return [prefix + READINGS_TOPIC, prefix + STATUS_TOPIC]


class MqttConsumer:
    def __init__(
        self,
        address: BrokerAddress,
        options: ConsumerOptions,
        on_message: MessageHandler,
        health: Health,
    ) -> None:
        self._address = address
        self._options = options
        self._on_message = on_message
        self._health = health

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self._address.host,
            self._address.port,
            username=self._address.username,
            password=self._address.password,
            identifier=self._options.client_id,
            protocol=self._options.protocol,
            keepalive=self._options.keepalive_s,
            tls_params=aiomqtt.TLSParameters() if self._address.tls else None,
        )

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with backoff."""
        backoff = Backoff()
        while True:
            try:
                async with self._client() as client:
                    for topic_filter in self._options.topic_filters():
                        await client.subscribe(topic_filter, qos=1)
                    self._health.set("broker", True)
                    logger.info(
                        "subscribed to %s on %s",
                        ", ".join(self._options.topic_filters()),
                        self._address,
                    )
                    backoff.reset()
                    async for message in client.messages:
                        await self._on_message(message)
            except aiomqtt.MqttError as exc:
                delay = backoff.next_delay()
                self._health.set("broker", False, f"{self._address}: {exc}")
                logger.debug("reconnecting to %s in %.1f s", self._address, delay)
                await asyncio.sleep(delay)
