"""Registry changes that change the device's broker identity too, in step: for the API,
the web UI and the CLI alike.

The order is the registry's change first, in a transaction that holds the device's row,
then the broker's, then the commit. A broker that fails or does not answer rolls the
registry's change back, so that the refusal ("nothing was changed") is true of rpm. The
one gap left is the commit failing after the broker's change: then a registration leaves
a broker client whose secret nobody was shown (registering again says the broker has
the client; delete it with `mosquitto_ctrl dynsec deleteClient`), a rotation leaves the
device with a secret nobody was shown (rotate again), and a deactivation leaves a device
that the broker refuses but rpm still counts as active: each fails closed.

`identities` None: rpm does not manage the broker (`RPM_MQTT_DYNSEC_URL` unset, the
embedded development broker), and the registry alone changes, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rpm.devices import registry
from rpm.devices.identities import Identities
from rpm.devices.model import DeviceKind
from rpm.devices.registry import Connection, DeviceRecord


class NotManaged(registry.Conflict):
    """A secret was asked for, but rpm does not manage the broker's identities."""


@dataclass(frozen=True)
class Issued:
    device: DeviceRecord
    # The device's new MQTT password, to be shown once; None when none was issued.
    secret: str | None = None


async def register(
    conn: Connection, identities: Identities | None, serial: str, kind: DeviceKind, model: str
) -> Issued:
    async with conn.transaction():
        device = await registry.register(conn, serial, kind, model)
        secret = await identities.create(device.serial) if identities else None
    return Issued(device, secret)


async def assign(
    conn: Connection,
    identities: Identities | None,
    serial: str,
    patient_id: int,
    at: datetime | None,
) -> Issued:
    """Give the device to the patient. A device that was another patient's gets a new
    secret: whoever had it before (their household, a refurbisher) cannot send readings
    as the new patient's. Its first assignment keeps the secret it was registered with,
    which the vendor may already have installed."""
    async with conn.transaction():
        device = await registry.assign(conn, serial, patient_id, at)
        periods = await registry.history(conn, serial)
        moved = len(periods) > 1 and periods[-2].patient_id != patient_id
        secret = await identities.rotate(serial) if identities and moved else None
    return Issued(device, secret)


async def rotate(conn: Connection, identities: Identities | None, serial: str) -> Issued:
    """A new secret for an active device (its identity made if it had none: a device
    registered before rpm managed the broker); the old one stops working at once."""
    if identities is None:
        raise NotManaged(
            "rpm does not manage the broker's device identities (RPM_MQTT_DYNSEC_URL is"
            " unset): set the device's password on the broker itself"
        )
    async with conn.transaction():
        if await registry.lock(conn, serial) != "active":
            raise registry.Conflict(f"device {serial} is deactivated; it gets no new secret")
        secret = await identities.rotate(serial)
        device = await registry.get(conn, serial)
    return Issued(device, secret)


async def deactivate(conn: Connection, identities: Identities | None, serial: str) -> DeviceRecord:
    """Retire the device: the broker refuses it, and drops its sessions, at once."""
    async with conn.transaction():
        device = await registry.deactivate(conn, serial)
        if identities is not None:
            await identities.revoke(serial)
    return device
