"""Opening the store: schema preparation and the async connection pool."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from rpm.config import DatabaseSettings
from rpm.db.migrate import apply_migrations
from rpm.db.timescale import configure_timescale

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchemaReport:
    applied: list[str]
    timescale: bool


async def dedicated_connection(url: str, settings: DatabaseSettings) -> AsyncConnection[TupleRow]:
    """A connection of its own, outside the pool, in autocommit: for migrations, and for
    LISTEN, which holds its connection for as long as it listens."""
    return await psycopg.AsyncConnection.connect(
        url, autocommit=True, connect_timeout=max(1, round(settings.connect_timeout_s))
    )


async def prepare_schema(url: str, settings: DatabaseSettings) -> SchemaReport:
    """Apply pending migrations, then the TimescaleDB branch, on a dedicated connection."""
    async with await dedicated_connection(url, settings) as conn:
        applied = await apply_migrations(conn)
        timescale = await configure_timescale(conn, settings)
    return SchemaReport([f"{m.version:04d}_{m.name}" for m in applied], timescale)


def make_pool(url: str, settings: DatabaseSettings) -> AsyncConnectionPool:
    """A closed pool; `await pool.open()` once the database answers.

    Connections are checked on checkout, so a pool that outlived a database restart
    hands out fresh connections instead of dead ones.
    """
    return AsyncConnectionPool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        open=False,
        name="rpm",
        timeout=settings.connect_timeout_s,
        check=AsyncConnectionPool.check_connection,
        kwargs={"connect_timeout": max(1, round(settings.connect_timeout_s))},
    )
