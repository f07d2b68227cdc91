"""What the `rpm` subcommands share: settings, the database, JSON-lines output."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime
from typing import TypeVar

import psycopg
import typer
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import BaseModel

from rpm.config import Settings, SettingsError, load_settings
from rpm.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from rpm.db.store import prepare_schema
from rpm.logs import configure_logging

logger = logging.getLogger("rpm")

T = TypeVar("T")


def settings_or_exit() -> Settings:
    """Settings, or exit with the message naming every bad variable."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"rpm: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.service.log_level, settings.service.log_format)
    return settings


async def embedded_database(settings: Settings, stack: AsyncExitStack) -> str:
    """The embedded PostgreSQL's URL, started here unless another rpm command runs it."""
    server = EmbeddedPostgres(settings.service.data_dir)
    try:
        url = await asyncio.to_thread(server.start)
    except EmbeddedPostgresError as exc:
        logger.error("%s", exc)
        raise SystemExit(1) from None
    stack.callback(server.stop)
    return url


def on_database(
    call: Callable[[Settings, str], Awaitable[T]], refusals: tuple[type[Exception], ...]
) -> T:
    """Run `call` against the configured (or embedded) database, migrated first.

    A refusal (an exception the core raises with a message for people) exits with 1 and
    that message, rather than a traceback.
    """
    settings = settings_or_exit()

    async def run() -> T:
        async with AsyncExitStack() as stack:
            url = settings.database.url or await embedded_database(settings, stack)
            await prepare_schema(url, settings.database)
            return await call(settings, url)

    try:
        return asyncio.run(run())
    except refusals as exc:
        typer.echo(f"rpm: {exc}", err=True)
        raise typer.Exit(1) from None


def with_connection(
    call: Callable[[AsyncConnection[TupleRow]], Awaitable[T]],
    refusals: tuple[type[Exception], ...],
) -> T:
    """Run `call` on one autocommit connection: each core call owns its transaction."""

    async def run(settings: Settings, url: str) -> T:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await call(conn)

    return on_database(run, refusals)


def echo_json(record: object) -> None:
    """One record as a JSON line (dataclasses and pydantic models alike)."""
    if isinstance(record, BaseModel):
        typer.echo(record.model_dump_json())
        return
    data = dataclasses.asdict(record) if dataclasses.is_dataclass(record) else record  # type: ignore[arg-type]
    typer.echo(json.dumps(data, default=str))


def aware(moment: str | None, option: str = "--at") -> datetime | None:
    """An RFC 3339 time; one given without an offset is in the machine's time zone."""
    if moment is None:
        return None
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        typer.echo(
            f"rpm: {option} {moment!r} is not a time such as 2026-11-24T07:30:00-05:00", err=True
        )
        raise typer.Exit(2) from None
    return parsed if parsed.tzinfo is not None else parsed.astimezone()
