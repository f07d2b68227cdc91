"""`rpm devices ...`: the device registry (the same calls as /api/v1/devices).

With `RPM_MQTT_DYNSEC_URL` set, `register`, `assign` (to another patient) and
`rotate-secret` print the device's new MQTT password in `mqtt_password`, this once: rpm
keeps no copy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from rpm.api.devices import DeviceWithSecret
from rpm.cli.common import aware, echo_json, settings_or_exit, with_connection
from rpm.devices import broker_identities, provisioning, registry
from rpm.devices.identities import Identities
from rpm.devices.model import DeviceKind

app = typer.Typer(help="The device registry.", no_args_is_help=True)

T = TypeVar("T")


def _registry(call: Callable[[registry.Connection], Awaitable[T]]) -> T:
    return with_connection(call, (registry.RegistryError, broker_identities.BrokerIdentityError))


def _identities() -> Identities | None:
    return broker_identities.from_settings(settings_or_exit().mqtt)


def _issuing(call: Callable[[registry.Connection], Awaitable[provisioning.Issued]]) -> None:
    echo_json(DeviceWithSecret.of(_registry(call)))


@app.command("register")
def register(
    serial: str,
    kind: Annotated[DeviceKind, typer.Option(help="What the device measures.")],
    model: Annotated[str, typer.Option(help="Make and model, for people.")] = "",
) -> None:
    """Register a device under its serial (its MQTT identity), with its broker identity."""
    identities = _identities()
    _issuing(lambda conn: provisioning.register(conn, identities, serial, kind, model))


@app.command("assign")
def assign(
    serial: str,
    patient_id: int,
    at: Annotated[
        str | None, typer.Option(help="When the patient got it, RFC 3339 (default now).")
    ] = None,
) -> None:
    """Give a device to a patient, ending its current assignment (from another patient:
    with a new MQTT password)."""
    identities, since = _identities(), aware(at)
    _issuing(lambda conn: provisioning.assign(conn, identities, serial, patient_id, since))


@app.command("rotate-secret")
def rotate_secret(serial: str) -> None:
    """A new MQTT password for a device; the old one stops working at once."""
    identities = _identities()
    _issuing(lambda conn: provisioning.rotate(conn, identities, serial))


@app.command("unassign")
def unassign(
    serial: str,
    at: Annotated[str | None, typer.Option(help="When, RFC 3339 (default now).")] = None,
) -> None:
    """End a device's current assignment."""
    echo_json(_registry(lambda conn: registry.unassign(conn, serial, aware(at))))


@app.command("deactivate")
def deactivate(serial: str) -> None:
    """Retire a device: the broker refuses it, and its messages are dead-lettered, from now on."""
    identities = _identities()
    echo_json(_registry(lambda conn: provisioning.deactivate(conn, identities, serial)))


@app.command("list")
def list_devices(
    after: Annotated[str, typer.Option(help="Start after this serial (paging).")] = "",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """Devices with their patient, last-seen time and battery, one JSON object a line."""
    for device in _registry(
        lambda conn: registry.list_devices(conn, after_serial=after, limit=limit)
    ):
        echo_json(device)


@app.command("history")
def history(serial: str) -> None:
    """Who had the device, and when."""
    for period in _registry(lambda conn: registry.history(conn, serial)):
        echo_json(period)
