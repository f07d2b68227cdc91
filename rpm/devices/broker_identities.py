"""The MQTT adapter of device identities: sends `rpm.devices.identities`' commands to
Mosquitto's dynamic security plugin and waits for their answers.

One connection per change, as the plugin's admin client (`RPM_MQTT_DYNSEC_URL`): changes
are rare (an admin registering, moving or retiring a device) and a short connection has
no reconnect loop to get wrong; on the same host it costs a few milliseconds. The
answer comes on the response topic, which every admin client subscribed to gets, so the
commands carry a correlation of this call's own.

Errors become ours at this edge: `BrokerUnavailable` when the broker cannot be reached or
does not answer in time (nothing is known to have changed), `BrokerRefused` when the
plugin answered with an error. Passwords never reach a log or an error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable, Sequence

import aiomqtt

from rpm.config import BrokerAddress, MqttSettings
from rpm.devices import identities
from rpm.devices.identities import Command

# The consumer's: whatever TLS the service uses to reach the broker, this uses too.
from rpm.ingest.consumer import tls_context

logger = logging.getLogger(__name__)


class BrokerIdentityError(Exception):
    """The broker did not make a device's identity change; the message says why."""


class BrokerUnavailable(BrokerIdentityError):
    pass


class BrokerRefused(BrokerIdentityError):
    pass


class ServiceClient(BrokerIdentityError):
    """The serial is the name of one of the service's own broker clients."""


class BrokerIdentities:
    """Device identities on a Mosquitto with the dynamic security plugin."""

    def __init__(
        self, admin: BrokerAddress, timeout_s: float = 5.0, reserved: Iterable[str] = ()
    ) -> None:
        self._admin = admin
        self._timeout_s = timeout_s
        # The service's own broker clients (the admin, the ingest service): never a device's,
        # whatever a serial says.
        self._reserved = frozenset(reserved) | {admin.username or ""}

    async def create(self, serial: str) -> str:
        """A new device's identity; its secret, to be shown once."""
        secret = identities.new_secret()
        await self._send(serial, "create", identities.create(serial, secret))
        return secret

    async def rotate(self, serial: str) -> str:
        """A new secret for the device; the old one stops working at once."""
        secret = identities.new_secret()
        await self._send(serial, "rotate", identities.rotate(serial, secret))
        return secret

    async def revoke(self, serial: str) -> None:
        await self._send(serial, "revoke", identities.revoke(serial))

    async def _send(self, serial: str, action: str, commands: Sequence[Command]) -> None:
        if serial in self._reserved:
            raise ServiceClient(
                f"{serial!r} is the name of one of the service's own broker clients, never a"
                " device's; nothing was changed in rpm"
            )
        correlation = uuid.uuid4().hex
        payload = json.dumps(identities.request(commands, correlation))
        try:
            async with asyncio.timeout(self._timeout_s):
                found = await self._exchange(payload, correlation, len(commands))
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            logger.warning(
                "broker identity change not confirmed",
                extra={"action": action, "device_serial": serial, "error": type(exc).__name__},
            )
            raise BrokerUnavailable(
                f"the MQTT broker ({self._admin}) did not confirm the change of device"
                f" {serial}'s broker identity within {self._timeout_s:g} s"
                f" ({type(exc).__name__}: {exc or 'timed out'}); nothing was changed in rpm:"
                " try again"
            ) from None
        try:
            identities.check(commands, found)
        except identities.IdentityRefused as exc:
            logger.warning(
                "broker identity change refused",
                extra={"action": action, "device_serial": serial, "error": str(exc)},
            )
            raise BrokerRefused(
                f"the MQTT broker refused to {action} device {serial}'s identity ({exc});"
                " nothing was changed in rpm"
            ) from None
        logger.info("broker identity changed", extra={"action": action, "device_serial": serial})

    async def _exchange(
        self, payload: str, correlation: str, expected: int
    ) -> dict[int, str | None]:
        found: dict[int, str | None] = {}
        async with aiomqtt.Client(
            self._admin.host,
            self._admin.port,
            username=self._admin.username,
            password=self._admin.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=tls_context(self._admin),
        ) as client:
            # Subscribed (SUBACK) before publishing: the answer cannot come before we listen.
            await client.subscribe(identities.RESPONSE_TOPIC, qos=1)
            await client.publish(identities.CONTROL_TOPIC, payload, qos=1)
            async for message in client.messages:
                if not isinstance(message.payload, (bytes, bytearray, str)):
                    continue
                try:
                    response = json.loads(message.payload)
                except ValueError:
                    continue
                if isinstance(response, dict):
                    found |= identities.answers(response, correlation)
                if len(found) >= expected:
                    break
        return found


def from_settings(mqtt: MqttSettings) -> BrokerIdentities | None:
    """The broker's device identities as configured; None when rpm does not manage them."""
    admin = mqtt.dynsec_broker()
    if admin is None:
        return None
    service = mqtt.broker().username if mqtt.url else None
    return BrokerIdentities(admin, mqtt.dynsec_timeout_s, {service or ""})
