"""The TimescaleDB branch of the store: the only SQL here that plain PostgreSQL lacks.

Run after the migrations, under the same advisory lock, on every start: it is idempotent
and reconciles the policies with the settings. Written to TimescaleDB's current
documentation (2.18+: `by_range`, the hypercore/columnstore API, retention policies).
On plain PostgreSQL (`RPM_DATABASE_TIMESCALE=auto` and no extension) it does nothing and
`reading` stays an ordinary table with the same columns and indexes.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg.rows import TupleRow

from rpm.config import DatabaseSettings

logger = logging.getLogger(__name__)

# create_hypertable(..., by_range(...)) appeared in 2.13; the columnstore API in 2.18.
MINIMUM_VERSION = (2, 18)


class TimescaleUnavailable(Exception):
    """`RPM_DATABASE_TIMESCALE=on` but the database cannot use TimescaleDB."""


async def configure_timescale(
    conn: psycopg.AsyncConnection[TupleRow], settings: DatabaseSettings
) -> bool:
    """Make `reading` a hypertable with its policies; return whether TimescaleDB is in use."""
    if settings.timescale == "off":
        return False
    problem = await _why_unusable(conn)
    if problem is not None:
        if settings.timescale == "on":
            raise TimescaleUnavailable(f"RPM_DATABASE_TIMESCALE=on but {problem}")
        logger.info("TimescaleDB not used: %s; reading is a plain table", problem)
        return False

    await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    chunk = f"{settings.chunk_interval_days} days"
    if not await _is_hypertable(conn):
        await conn.execute(
            "SELECT create_hypertable('reading', by_range('measured_at', %s::interval),"
            " migrate_data => true)",
            [chunk],
        )
    else:
        await conn.execute("SELECT set_chunk_time_interval('reading', %s::interval)", [chunk])

    # Segmenting by patient keeps one patient's history together in compressed chunks,
    # which is how rules and charts read it.
    if not await _columnstore_enabled(conn):
        await conn.execute(
            "ALTER TABLE reading SET (timescaledb.enable_columnstore,"
            " timescaledb.segmentby = 'patient_id', timescaledb.orderby = 'measured_at DESC')"
        )
    # Policies are re-created so that a changed setting takes effect on the next start.
    await conn.execute("CALL remove_columnstore_policy('reading', if_exists => true)")
    await conn.execute(
        "CALL add_columnstore_policy('reading', after => %s::interval)",
        [f"{settings.compress_after_days} days"],
    )
    await conn.execute("SELECT remove_retention_policy('reading', if_exists => true)")
    if settings.retention_days is not None:
        await conn.execute(
            "SELECT add_retention_policy('reading', drop_after => %s::interval)",
            [f"{settings.retention_days} days"],
        )
    await _drop_reading_counts(conn)
    logger.info(
        "reading is a TimescaleDB hypertable (chunks %s, columnstore after %s days, %s)",
        chunk,
        settings.compress_after_days,
        f"retention {settings.retention_days} days" if settings.retention_days else "kept forever",
    )
    return True


async def _drop_reading_counts(conn: psycopg.AsyncConnection[TupleRow]) -> None:
    """Releases before migration 0017 kept a continuous aggregate of quarter-hour reading
    counts for adherence and billing; `reading_day` has replaced it. Here rather than in
    the migration, so that the migrations stay plain PostgreSQL."""
    await conn.execute("DROP MATERIALIZED VIEW IF EXISTS reading_quarter_hours")


async def _why_unusable(conn: psycopg.AsyncConnection[TupleRow]) -> str | None:
    cursor = await conn.execute(
        "SELECT coalesce(installed_version, default_version),"
        " current_setting('shared_preload_libraries') ~ 'timescaledb'"
        " FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    row = await cursor.fetchone()
    if row is None:
        return "the timescaledb extension is not installed on the server"
    version, preloaded = row
    if not preloaded:
        # CREATE EXTENSION without the preload is a FATAL error that drops the connection.
        return "timescaledb is not in shared_preload_libraries"
    if _version_tuple(str(version)) < MINIMUM_VERSION:
        return f"timescaledb {version} is older than {'.'.join(map(str, MINIMUM_VERSION))}"
    return None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("-")[0].split(".")[:2])


async def _is_hypertable(conn: psycopg.AsyncConnection[TupleRow]) -> bool:
    cursor = await conn.execute(
        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'reading'"
        " AND hypertable_schema = current_schema()"
    )
    return await cursor.fetchone() is not None


async def _columnstore_enabled(conn: psycopg.AsyncConnection[TupleRow]) -> bool:
    cursor = await conn.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_name = 'reading' AND hypertable_schema = current_schema()"
    )
    row = await cursor.fetchone()
    return bool(row and row[0])
