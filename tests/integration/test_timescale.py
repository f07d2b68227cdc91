"""The TimescaleDB branch: used when the server has the extension, skipped cleanly when not.

Both outcomes are checked, so this passes unchanged on plain PostgreSQL (here) and on a
TimescaleDB server named by RPM_TEST_DATABASE_URL (before a release).
"""

from __future__ import annotations

import psycopg
import pytest

from rpm.config import DatabaseSettings
from rpm.db.store import prepare_schema
from rpm.db.timescale import TimescaleUnavailable


def _timescale_usable(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT current_setting('shared_preload_libraries') ~ 'timescaledb'"
            " FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
    return bool(row and row[0])


def _policies(url: str) -> dict[str, dict[str, object]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT proc_name, config FROM timescaledb_information.jobs"
            " WHERE hypertable_name = 'reading'"
        ).fetchall()
    return dict(rows)


async def test_timescale_mode_follows_the_server(empty_db_url: str) -> None:
    if not _timescale_usable(empty_db_url):
        report = await prepare_schema(empty_db_url, DatabaseSettings(timescale="auto"))
        assert report.timescale is False
        with pytest.raises(TimescaleUnavailable, match="RPM_DATABASE_TIMESCALE=on but"):
            await prepare_schema(empty_db_url, DatabaseSettings(timescale="on"))
        return

    report = await prepare_schema(
        empty_db_url, DatabaseSettings(timescale="on", retention_days=400)
    )
    assert report.timescale is True
    with psycopg.connect(empty_db_url) as conn:
        row = conn.execute(
            "SELECT compression_enabled FROM timescaledb_information.hypertables"
            " WHERE hypertable_name = 'reading'"
        ).fetchone()
    assert row == (True,)
    policies = _policies(empty_db_url)
    assert "policy_compression" in policies
    assert "policy_retention" in policies
    # Adherence and billing's day counts are kept in reading_day (0017), not an aggregate.
    with psycopg.connect(empty_db_url) as conn:
        aggregates = conn.execute(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        ).fetchall()
    assert aggregates == []

    # Retention is off unless configured: the next start without it removes the policy.
    await prepare_schema(empty_db_url, DatabaseSettings(timescale="on"))
    assert "policy_retention" not in _policies(empty_db_url)


async def test_timescale_off_keeps_a_plain_table(empty_db_url: str) -> None:
    report = await prepare_schema(empty_db_url, DatabaseSettings(timescale="off"))
    assert report.timescale is False
