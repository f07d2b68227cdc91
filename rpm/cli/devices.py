"""`rpm devices ...`: the device registry (the same calls as /api/v1/devices)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from rpm.cli.common import aware, echo_json, with_connection
from rpm.devices import registry
from rpm.devices.model import DeviceKind

app = typer.Typer(help="The device registry.", no_args_is_help=True)

T = TypeVar("T")


def _registry(call: Callable[[registry.Connection], Awaitable[T]]) -> T:
    return with_connection(call, (registry.RegistryError,))


@app.command("register")
def register(
    serial: str,
    kind: Annotated[DeviceKind, typer.Option(help="What the device measures.")],
    model: Annotated[str, typer.Option(help="Make and model, for people.")] = "",
) -> None:
    """Register a device under its serial (its MQTT identity)."""
    echo_json(_registry(lambda conn: registry.register(conn, serial, kind, model)))


@app.command("assign")
def assign(
    serial: str,
    patient_id: int,
    at: Annotated[
        str | None, typer.Option(help="When the patient got it, RFC 3339 (default now).")
    ] = None,
) -> None:
    """Give a device to a patient, ending its current assignment."""
    echo_json(_registry(lambda conn: registry.assign(conn, serial, patient_id, aware(at))))


@app.command("unassign")
def unassign(
    serial: str,
    at: Annotated[str | None, typer.Option(help="When, RFC 3339 (default now).")] = None,
) -> None:
    """End a device's current assignment."""
    echo_json(_registry(lambda conn: registry.unassign(conn, serial, aware(at))))


@app.command("deactivate")
def deactivate(serial: str) -> None:
    """Retire a device: its messages are dead-lettered from now on."""
    echo_json(_registry(lambda conn: registry.deactivate(conn, serial)))


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
