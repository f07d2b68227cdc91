"""An embedded MQTT broker (amqtt) for `rpm up` with no `RPM_MQTT_URL`.

A development default only: amqtt speaks MQTT 3.1.1, keeps no queue for offline
clients and is slow. Production runs against Mosquitto (see docker-compose.yml).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from amqtt.broker import Broker

from rpm.config import BrokerAddress

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


def broker_config(port: int) -> dict[str, object]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{port}"}},
        # Naming the plugins replaces amqtt's defaults, one of which warns on start-up.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


@asynccontextmanager
async def embedded_broker(port: int) -> AsyncIterator[BrokerAddress]:
    broker = Broker(broker_config(port))
    await broker.start()
    address = BrokerAddress(HOST, port)
    logger.warning(
        "embedded MQTT broker on %s: a development default (MQTT 3.1.1 only, no queue for "
        "offline clients, slow); set RPM_MQTT_URL to use Mosquitto",
        address,
    )
    try:
        yield address
    finally:
        await broker.shutdown()
        logger.info("embedded MQTT broker stopped")
