"""`rpm up` and `rpm migrate`: the service, and its database schema."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from contextlib import AsyncExitStack
from types import FrameType
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from rpm.app import Wiring, create_app, end_live_streams
from rpm.cli.common import embedded_database, settings_or_exit
from rpm.cli.demo import play_demo
from rpm.config import BrokerAddress, Settings
from rpm.db.migrate import MigrationError
from rpm.db.store import prepare_schema
from rpm.db.timescale import TimescaleUnavailable
from rpm.ingest.embedded_broker import embedded_broker

logger = logging.getLogger("rpm")


def up(
    demo: Annotated[
        bool,
        typer.Option(
            help="On the embedded database: a demo care team, its logins (passwords in"
            " RPM_DATA_DIR/demo-logins.txt), the demo patients and two weeks of their"
            " readings, once."
        ),
    ] = False,
    demo_seconds: Annotated[
        float, typer.Option(min=1, help="How long the demo's two weeks take to play.")
    ] = 40,
) -> None:
    """Run the whole service: HTTP API, MQTT consumer and scheduler.

    With no RPM_DATABASE_URL an embedded PostgreSQL is started (data kept in
    RPM_DATA_DIR); with no RPM_MQTT_URL an embedded MQTT broker.
    """
    settings = settings_or_exit()
    raise typer.Exit(asyncio.run(_serve(settings, demo_seconds if demo else None)))


def migrate() -> None:
    """Apply pending database migrations (the service also does this at start-up)."""
    settings = settings_or_exit()
    raise typer.Exit(asyncio.run(_migrate(settings)))


async def _migrate(settings: Settings) -> int:
    async with AsyncExitStack() as stack:
        url = settings.database.url or await embedded_database(settings, stack)
        try:
            report = await prepare_schema(url, settings.database)
        except (MigrationError, TimescaleUnavailable) as exc:
            logger.error("%s", exc)
            return 1
    applied = ", ".join(report.applied) or "nothing to apply"
    typer.echo(f"migrations: {applied}; {'TimescaleDB' if report.timescale else 'PostgreSQL'}")
    return 0


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


class _Server(uvicorn.Server):
    """uvicorn, ending the app's event streams as it starts to stop: it waits for every
    open response before it stops the app, and an open worklist page's stream would hold
    the stop up until the page closed."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        assert isinstance(app, FastAPI)
        end_live_streams(app)
        await super().shutdown(sockets)


async def _serve(settings: Settings, demo_seconds: float | None) -> int:
    shutdown = _Shutdown()
    shutdown.install()
    async with AsyncExitStack() as stack:
        database_url = settings.database.url or await embedded_database(settings, stack)
        if settings.mqtt.url:
            broker = settings.mqtt.broker()
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
            on_warm=tune_garbage_collector,
        )
        server = _Server(
            uvicorn.Config(
                create_app(wiring),
                host=settings.http.host,
                port=settings.http.port,
                forwarded_allow_ips=settings.http.trusted_proxies,
                log_config=None,
                access_log=False,
            )
        )
        shutdown.server = server
        base = f"http://{settings.http.host}:{settings.http.port}"
        logger.info(
            "rpm is starting: web UI %s/ui/, API %s/docs, health %s/healthz, readiness"
            " %s/readyz, MQTT %s",
            base,
            base,
            base,
            base,
            broker,
        )
        demo = None
        if demo_seconds is not None:
            if settings.database.url:
                logger.warning("demo mode plays only into the embedded database: not played")
            else:
                api = f"http://127.0.0.1:{settings.http.port}"
                demo = asyncio.create_task(
                    play_demo(
                        wiring.health,
                        database_url,
                        api,
                        broker,
                        demo_seconds,
                        settings.service.data_dir,
                    )
                )
        try:
            await server.serve()
        finally:
            if demo is not None:
                demo.cancel()
                await asyncio.gather(demo, return_exceptions=True)
        if not server.started:
            logger.error("the HTTP server did not start (is port %s free?)", settings.http.port)
            return 1
    return shutdown.exit_code


def tune_garbage_collector() -> None:
    """Make the cyclic garbage collector cheap under ingest load (docs/benchmarks.md).

    Called once start-up is done. Everything made so far (modules, the app, the rule
    engine's warmed plans) lives as long as the process: frozen, it is not scanned again by
    every collection (the garbage is collected first, so none is frozen). An ingest batch
    makes about ten objects a reading, which die together when it is committed; at the
    default threshold (700) the collector ran some 70 times a batch and moved the batch's
    objects into the older generations, whose collections then scanned them again: a
    quarter of the CPU at 25,000 readings/s. Each collection stops everything for a time
    that grows with the threshold, though: at 50,000 up to 80 ms, which set the rule
    engine's p99 alert latency; at 20,000 it is under 20 ms (docs/benchmarks.md, "Rules").
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 10)


async def _embedded_broker(settings: Settings, stack: AsyncExitStack) -> BrokerAddress:
    return await stack.enter_async_context(embedded_broker(settings.mqtt.embedded_port))
