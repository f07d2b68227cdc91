"""Bulk Data export benchmark: one `$export` of every patient, written by the exporter.

    python -m benchmarks.bulk [--patients 1000] [--days 90] [--file-resources 10000]

Seeds a throwaway database with patients each with a cuff that sent a blood pressure and
pulse twice a day (two Observations a reading), kicks off an export of every type as the
API does (`rpm.fhir.exports.create`), then times `BulkExporter.run_once`, the exporter's
own work from claim to complete, and prints resources a second, files and their size.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool

from benchmarks.ingest import add_database_options, throwaway_database
from rpm.config import BulkSettings, DatabaseSettings
from rpm.db.store import prepare_schema
from rpm.fhir import bulk, exports
from rpm.fhir.exporter import BulkExporter


def seed(url: str, patients: int, days: int) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO care_team (name) VALUES ('Bench team')")
        conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name, time_zone, enrolled_at,"
            " care_team_id) SELECT 'BENCH-P-' || g, 'Bench', 'Patient', 'America/Chicago',"
            " now() - interval '1 year', 1 FROM generate_series(1, %s) g",
            [patients],
        )
        conn.execute(
            "INSERT INTO device (serial, kind) SELECT 'BENCH-CUFF-' || id, 'blood_pressure_cuff'"
            " FROM patient"
        )
        conn.execute(
            "INSERT INTO device_assignment (device_id, patient_id, assigned_at)"
            " SELECT d.id, p.id, now() - interval '1 year'"
            " FROM patient p JOIN device d ON d.serial = 'BENCH-CUFF-' || p.id"
        )
        conn.execute(
            "INSERT INTO reading (device_id, kind, measured_at, patient_id, systolic_mmhg,"
            " diastolic_mmhg, pulse_bpm, original, source)"
            " SELECT d.id, 'blood_pressure', now() - half * interval '12 hours', p.id,"
            "        120 + half %% 20, 80, 70, '{}', 'native'"
            " FROM patient p JOIN device d ON d.serial = 'BENCH-CUFF-' || p.id"
            " CROSS JOIN generate_series(1, %s) half",
            [days * 2],
        )
        conn.execute("ANALYZE")
        (readings,) = conn.execute("SELECT count(*) FROM reading").fetchone() or (0,)
    return int(readings)


async def measure(url: str, patients: int, file_resources: int) -> None:
    async with AsyncConnectionPool(url, min_size=1, max_size=2, open=False) as pool:
        await pool.open()
        async with pool.connection() as conn:
            job = await exports.create(
                conn, "user:0", "bench", None, list(range(1, patients + 1)), bulk.TYPES, None
            )
        exporter = BulkExporter(pool, BulkSettings(file_resources=file_resources))
        started = time.perf_counter()
        assert await exporter.run_once()
        elapsed = time.perf_counter() - started
        async with pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*), sum(count), sum(octet_length(body)) FROM bulk_export_file"
                " WHERE export_id = %s",
                [job.id],
            )
            files, resources, size = await cursor.fetchone() or (0, 0, 0)
            (status,) = await (
                await conn.execute("SELECT status FROM bulk_export WHERE id = %s", [job.id])
            ).fetchone() or ("",)
    print(
        f"export {status}: {resources:,} resources in {files} files ({size / 1e6:.0f} MB)"
        f" in {elapsed:.1f} s: {resources / elapsed:,.0f} resources/s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--file-resources", type=int, default=10_000)
    add_database_options(parser)
    args = parser.parse_args(argv)
    with throwaway_database(args.database_url, args.keep_database) as url:
        asyncio.run(prepare_schema(url, DatabaseSettings()))
        readings = seed(url, args.patients, args.days)
        print(f"seeded {args.patients:,} patients, {readings:,} readings with pulses")
        asyncio.run(measure(url, args.patients, args.file_resources))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
