"""Migrations against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import TupleRow

from rpm.config import DatabaseSettings
from rpm.db.migrate import Migration, MigrationError, apply_migrations, discover
from rpm.db.store import prepare_schema

FOUNDATION_TABLES = {
    "patient",
    "device",
    "device_assignment",
    "reading",
    "rejected_message",
    "schema_migration",
}


async def _tables(url: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        return {row[0] for row in await cursor.fetchall()}


async def _ledger(url: str) -> list[tuple[int, str]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute("SELECT version, name FROM schema_migration ORDER BY version")
        return [(v, n) for v, n in await cursor.fetchall()]


async def test_migrations_apply_to_an_empty_database(empty_db_url: str) -> None:
    report = await prepare_schema(empty_db_url, DatabaseSettings())
    assert report.applied == [f"{m.version:04d}_{m.name}" for m in discover()]
    assert await _tables(empty_db_url) >= FOUNDATION_TABLES
    assert await _ledger(empty_db_url) == [(m.version, m.name) for m in discover()]


async def test_applying_again_is_a_no_op(empty_db_url: str) -> None:
    await prepare_schema(empty_db_url, DatabaseSettings())
    again = await prepare_schema(empty_db_url, DatabaseSettings())
    assert again.applied == []
    assert len(await _ledger(empty_db_url)) == len(discover())


async def test_concurrent_runs_in_one_process_apply_each_migration_once(
    empty_db_url: str,
) -> None:
    reports = await asyncio.gather(
        *(prepare_schema(empty_db_url, DatabaseSettings()) for _ in range(4))
    )
    applied = [name for report in reports for name in report.applied]
    assert sorted(applied) == sorted(f"{m.version:04d}_{m.name}" for m in discover())


def test_two_concurrent_rpm_migrate_commands_are_safe(empty_db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPM_")}
    env["RPM_DATABASE_URL"] = empty_db_url
    rpm = Path(sys.executable).with_name("rpm")
    runs = [
        subprocess.Popen(
            [str(rpm), "migrate"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    stdout = [out for out, _ in outputs]
    assert sum("0001_foundation" in out for out in stdout) == 1, stdout
    assert sum("nothing to apply" in out for out in stdout) == 1, stdout
    assert asyncio.run(_ledger(empty_db_url)) == [(m.version, m.name) for m in discover()]


async def test_a_failing_migration_leaves_nothing_behind(empty_db_url: str) -> None:
    broken = [
        *discover(),
        Migration(len(discover()) + 1, "broken", "CREATE TABLE half_done (id int); SELECT 1/0;"),
    ]
    async with await psycopg.AsyncConnection.connect(empty_db_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            await apply_migrations(conn, broken)
    assert "half_done" not in await _tables(empty_db_url)
    assert len(await _ledger(empty_db_url)) == len(discover())


async def test_an_edited_migration_is_refused(db_url: str) -> None:
    edited = [Migration(m.version, m.name, m.sql + "\n-- edited") for m in discover()]
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        with pytest.raises(MigrationError, match="was changed after it was applied"):
            await apply_migrations(conn, edited)


async def test_a_database_ahead_of_the_code_is_refused(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO schema_migration (version, name, checksum) VALUES (999, 'future', '')"
        )
        with pytest.raises(MigrationError, match="has migration 0999"):
            await apply_migrations(conn)


async def test_a_device_cannot_be_with_two_patients_at_once(
    conn: psycopg.AsyncConnection[TupleRow],
) -> None:
    patients = await conn.execute(
        "INSERT INTO patient (external_ref, given_name, family_name)"
        " VALUES ('P-1', 'Test', 'One'), ('P-2', 'Test', 'Two') RETURNING id"
    )
    first, second = [row[0] for row in await patients.fetchall()]
    device = await conn.execute(
        "INSERT INTO device (serial, kind) VALUES ('BP-0001', 'blood_pressure_cuff') RETURNING id"
    )
    (device_id,) = await device.fetchone() or ()
    await conn.execute(
        "INSERT INTO device_assignment (device_id, patient_id, assigned_at, unassigned_at)"
        " VALUES (%s, %s, '2026-11-01T00:00Z', '2026-11-10T00:00Z')",
        [device_id, first],
    )
    with pytest.raises(psycopg.errors.ExclusionViolation):
        await conn.execute(
            "INSERT INTO device_assignment (device_id, patient_id, assigned_at)"
            " VALUES (%s, %s, '2026-11-09T00:00Z')",
            [device_id, second],
        )
    # Handing over exactly when the first period ends is fine.
    await conn.execute(
        "INSERT INTO device_assignment (device_id, patient_id, assigned_at)"
        " VALUES (%s, %s, '2026-11-10T00:00Z')",
        [device_id, second],
    )


async def test_a_reading_is_stored_once_per_natural_key(
    conn: psycopg.AsyncConnection[TupleRow],
) -> None:
    await conn.execute(
        "INSERT INTO patient (external_ref, given_name, family_name) VALUES ('P-1', 'T', 'O')"
    )
    await conn.execute("INSERT INTO device (serial, kind) VALUES ('SC-1', 'weight_scale')")
    insert = (
        "INSERT INTO reading (device_id, kind, measured_at, patient_id, weight_kg, original,"
        " source) SELECT d.id, 'body_weight', '2026-11-24T07:30-05:00', p.id, 82.3,"
        ' \'{"weight": 181.4, "unit": "lb"}\', \'native\' FROM device d, patient p'
        " ON CONFLICT DO NOTHING"
    )
    first = await conn.execute(insert)
    again = await conn.execute(insert)
    assert (first.rowcount, again.rowcount) == (1, 0)
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute(
            "INSERT INTO reading (device_id, kind, measured_at, patient_id, original, source)"
            " SELECT d.id, 'body_weight', now(), p.id, '{}', 'native' FROM device d, patient p"
        )
