"""The `rpm` command."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime
from types import FrameType
from typing import Annotated

import psycopg
import typer
import uvicorn

from rpm.app import Wiring, create_app
from rpm.config import BrokerAddress, Settings, SettingsError, load_settings
from rpm.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from rpm.db.migrate import MigrationError
from rpm.db.store import prepare_schema
from rpm.db.timescale import TimescaleUnavailable
from rpm.devices import registry
from rpm.devices.model import DeviceKind
from rpm.ingest.embedded_broker import embedded_broker
from rpm.logs import configure_logging

logger = logging.getLogger("rpm")

cli = typer.Typer(
    help="rpm: remote patient monitoring ingest and alerting.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings() -> Settings:
    """Settings, or exit with the message naming every bad variable."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"rpm: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.service.log_level, settings.service.log_format)
    return settings


@cli.command()
def up() -> None:
    """Run the whole service: HTTP API, MQTT consumer and scheduler.

    With no RPM_DATABASE_URL an embedded PostgreSQL is started (data kept in
    RPM_DATA_DIR); with no RPM_MQTT_URL an embedded MQTT broker.
    """
    settings = _settings()
    raise typer.Exit(asyncio.run(_serve(settings)))


@cli.command()
def migrate() -> None:
    """Apply pending database migrations (the service also does this at start-up)."""
    settings = _settings()
    raise typer.Exit(asyncio.run(_migrate(settings)))


async def _migrate(settings: Settings) -> int:
    async with AsyncExitStack() as stack:
        url = settings.database.url or await _embedded_database(settings, stack)
        try:
            report = await prepare_schema(url, settings.database)
        except (MigrationError, TimescaleUnavailable) as exc:
            logger.error("%s", exc)
            return 1
    applied = ", ".join(report.applied) or "nothing to apply"
    typer.echo(f"migrations: {applied}; {'TimescaleDB' if report.timescale else 'PostgreSQL'}")
    return 0


devices_cli = typer.Typer(help="The device registry.", no_args_is_help=True)
cli.add_typer(devices_cli, name="devices")


def _registry_call(
    change: Callable[[registry.Connection], Awaitable[object]],
) -> object:
    """Run one registry call against the configured (or embedded) database."""
    settings = _settings()

    async def run() -> object:
        async with AsyncExitStack() as stack:
            url = settings.database.url or await _embedded_database(settings, stack)
            await prepare_schema(url, settings.database)
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                return await change(conn)

    try:
        return asyncio.run(run())
    except registry.RegistryError as exc:
        typer.echo(f"rpm: {exc}", err=True)
        raise typer.Exit(1) from None


def _show(device: object) -> None:
    if isinstance(device, registry.DeviceRecord):
        typer.echo(json.dumps(dataclasses.asdict(device), default=str))


@devices_cli.command("register")
def devices_register(
    serial: str,
    kind: Annotated[DeviceKind, typer.Option(help="What the device measures.")],
    model: Annotated[str, typer.Option(help="Make and model, for people.")] = "",
) -> None:
    """Register a device under its serial (its MQTT identity)."""
    _show(_registry_call(lambda conn: registry.register(conn, serial, kind, model)))


@devices_cli.command("assign")
def devices_assign(
    serial: str,
    patient_id: int,
    at: Annotated[
        str | None, typer.Option(help="When the patient got it, RFC 3339 (default now).")
    ] = None,
) -> None:
    """Give a device to a patient, ending its current assignment."""
    _show(_registry_call(lambda conn: registry.assign(conn, serial, patient_id, _aware(at))))


@devices_cli.command("unassign")
def devices_unassign(
    serial: str,
    at: Annotated[str | None, typer.Option(help="When, RFC 3339 (default now).")] = None,
) -> None:
    """End a device's current assignment."""
    _show(_registry_call(lambda conn: registry.unassign(conn, serial, _aware(at))))


@devices_cli.command("deactivate")
def devices_deactivate(serial: str) -> None:
    """Retire a device: its messages are dead-lettered from now on."""
    _show(_registry_call(lambda conn: registry.deactivate(conn, serial)))


@devices_cli.command("list")
def devices_list(
    after: Annotated[str, typer.Option(help="Start after this serial (paging).")] = "",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """Devices with their patient, last-seen time and battery, one JSON object a line."""
    found = _registry_call(
        lambda conn: registry.list_devices(conn, after_serial=after, limit=limit)
    )
    for device in found if isinstance(found, list) else []:
        _show(device)


@devices_cli.command("history")
def devices_history(serial: str) -> None:
    """Who had the device, and when."""
    periods = _registry_call(lambda conn: registry.history(conn, serial))
    for period in periods if isinstance(periods, list) else []:
        typer.echo(json.dumps(dataclasses.asdict(period), default=str))


def _aware(moment: str | None) -> datetime | None:
    """An RFC 3339 time; one given without an offset is in the machine's time zone."""
    if moment is None:
        return None
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        typer.echo(
            f"rpm: --at {moment!r} is not a time such as 2026-11-24T07:30:00-05:00", err=True
        )
        raise typer.Exit(2) from None
    return parsed if parsed.tzinfo is not None else parsed.astimezone()


class _Shutdown:
    """SIGINT/SIGTERM handling shared by the embedded start-up and uvicorn.

    uvicorn re-raises the signal it caught once it has stopped; with this handler in
    place that re-raise is harmless, so the embedded database and broker are still
    stopped cleanly afterwards.
    """

    def __init__(self) -> None:
        self.requested = False
        self.exit_code = 0
        self.server: uvicorn.Server | None = None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request()

    def request(self) -> None:
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True

    def fatal(self, reason: str) -> None:
        logger.critical("stopping: %s", reason)
        self.exit_code = 1
        self.request()


async def _serve(settings: Settings) -> int:
    shutdown = _Shutdown()
    shutdown.install()
    async with AsyncExitStack() as stack:
        database_url = settings.database.url or await _embedded_database(settings, stack)
        if settings.mqtt.url:
            broker = BrokerAddress.from_url(settings.mqtt.url)
        else:
            broker = await _embedded_broker(settings, stack)
        if shutdown.requested:
            return shutdown.exit_code
        wiring = Wiring(
            settings=settings,
            database_url=database_url,
            broker=broker,
            broker_is_embedded=not settings.mqtt.url,
            on_fatal=shutdown.fatal,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(wiring),
                host=settings.http.host,
                port=settings.http.port,
                log_config=None,
                access_log=False,
            )
        )
        shutdown.server = server
        _tune_garbage_collector()
        base = f"http://{settings.http.host}:{settings.http.port}"
        logger.info(
            "rpm is starting: API %s/docs, health %s/healthz, readiness %s/readyz, MQTT %s",
            base,
            base,
            base,
            broker,
        )
        await server.serve()
        if not server.started:
            logger.error("the HTTP server did not start (is port %s free?)", settings.http.port)
            return 1
    return shutdown.exit_code


def _tune_garbage_collector() -> None:
    """Make the cyclic garbage collector cheap under ingest load (docs/benchmarks.md).

    Everything made so far (modules, the app) lives as long as the process: frozen, it is
    not scanned again by every full collection. An ingest batch makes about ten objects a
    reading, which die together when it is committed; at the default threshold (700) the
    collector ran some 70 times a batch and moved the batch's objects into the older
    generations, whose collections then scanned them again: a quarter of the CPU at 25,000
    readings/s. At 50,000 it runs about once a batch.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


async def _embedded_database(settings: Settings, stack: AsyncExitStack) -> str:
    server = EmbeddedPostgres(settings.service.data_dir)
    try:
        url = await asyncio.to_thread(server.start)
    except EmbeddedPostgresError as exc:
        logger.error("%s", exc)
        raise SystemExit(1) from None
    stack.callback(server.stop)
    return url


async def _embedded_broker(settings: Settings, stack: AsyncExitStack) -> BrokerAddress:
    return await stack.enter_async_context(embedded_broker(settings.mqtt.embedded_port))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
