"""Program-operations benchmark: the adherence worklist and a patient's billing periods.

    python -m benchmarks.program [--patients 5000] [--runs 20]      (or: make bench-program)

Seeds a throwaway database with active patients in five time zones, each with a scale that
sent a reading on about two days in three over the last year (a year of history is what a
billing page reads), then prints the p50/p99/max time of:

- the at-risk list's first 100 (`rpm.program.service.patients_at_risk`: every active
  patient's current period ranked by its days with readings, the first 100 assessed), for
  all patients and for one care team's;
- one patient's billing periods and months (`service.patient_billing`: a year of periods);
- the reminder job's scan (`repository.reminder_candidates`, every patient opted in).

Days come from `reading_day`, the per-patient local-day counts ingest keeps (migration
0017). The seed writes `reading` in SQL, so it counts the days with `reading_day_rebuild()`
as a migration's backfill would, and prints how long that took. docs/benchmarks.md has the
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import psycopg
from psycopg_pool import AsyncConnectionPool

from benchmarks.ingest import add_database_options, throwaway_database
from rpm.config import DatabaseSettings
from rpm.db.store import prepare_schema
from rpm.patients import registry
from rpm.program import repository, service

ZONES = ("America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London",
         "Asia/Kathmandu")  # fmt: skip
TEAMS = 10


def seed(url: str, patients: int) -> None:
    """Patients enrolled a year ago (in ten care teams), opted in to reminders, each with a
    scale; a reading on about two days in three."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO care_team (name) SELECT 'Team ' || g FROM generate_series(1, %s) g",
            [TEAMS],
        )
        conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name, time_zone, enrolled_at,"
            " care_team_id, reminder_phone, reminders_opted_in_at)"
            " SELECT 'BENCH-P-' || g, 'Bench', 'Patient', (%s::text[])[1 + g %% 5],"
            " now() - interval '365 days' - g * interval '1 minute', 1 + g %% %s,"
            " '+1555555' || lpad((g %% 10000)::text, 4, '0'), now()"
            " FROM generate_series(1, %s) g",
            [list(ZONES), TEAMS, patients],
        )
        conn.execute(
            "INSERT INTO device (serial, kind) SELECT 'BENCH-SCALE-' || id, 'weight_scale'"
            " FROM patient"
        )
        conn.execute(
            "INSERT INTO reading (device_id, kind, measured_at, patient_id, weight_kg,"
            " original, source)"
            " SELECT d.id, 'body_weight', now() - day * interval '1 day'"
            "        - (p.id % 24) * interval '1 hour', p.id, 80, '{}', 'native'"
            " FROM patient p JOIN device d ON d.serial = 'BENCH-SCALE-' || p.id"
            " CROSS JOIN generate_series(0, 364) day"
            " WHERE hashint4(p.id::int * 1000 + day) % 3 <> 0"
        )
        started = time.perf_counter()
        conn.execute("SELECT reading_day_rebuild()")
        rebuilt = time.perf_counter() - started
        # As autovacuum leaves a running system: statistics, and the visibility map that lets
        # the day look-ups answer from the index alone.
        conn.execute("VACUUM ANALYZE")
        (readings,) = conn.execute("SELECT count(*) FROM reading").fetchone() or (0,)
        (days,) = conn.execute("SELECT count(*) FROM reading_day").fetchone() or (0,)
    print(f"seeded {patients:,} patients, {readings:,} readings over a year")
    print(f"reading_day_rebuild(): {days:,} days in {rebuilt:.1f} s")


async def _timed(
    pool: AsyncConnectionPool,
    runs: int,
    call: Callable[[psycopg.AsyncConnection], Awaitable[object]],
) -> list[float]:
    times = []
    async with pool.connection() as conn:
        await call(conn)  # warm
        for _ in range(runs):
            start = time.perf_counter()
            await call(conn)
            times.append((time.perf_counter() - start) * 1000)
    return times


def _line(name: str, times: Sequence[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"{name:<44} p50 {statistics.median(ordered):8.1f} ms  p99 {p99:8.1f} ms"
        f"  max {ordered[-1]:8.1f} ms"
    )


async def measure(url: str, runs: int) -> None:
    now = datetime.now(UTC)
    async with AsyncConnectionPool(url, min_size=1, max_size=2, open=False) as pool:
        await pool.open()
        async with pool.connection() as conn:
            _, at_risk = await service.patients_at_risk(conn, now, None, 0, 1)
            patient = await registry.get(conn, 1)
            billing = await service.patient_billing(conn, patient, now)
        print(f"at risk: {at_risk:,} patients; billing: {len(billing.periods)} periods")
        print(_line("at-risk list, all patients", await _timed(
            pool, runs, lambda c: service.patients_at_risk(c, now, None, 0, 100))))  # fmt: skip
        print(_line("at-risk list, one care team", await _timed(
            pool, runs, lambda c: service.patients_at_risk(c, now, [1], 0, 100))))  # fmt: skip
        print(_line("a patient's billing (a year of periods)", await _timed(
            pool, runs, lambda c: service.patient_billing(c, patient, now))))  # fmt: skip
        print(_line("reminder scan, all opted in", await _timed(
            pool, runs, repository.reminder_candidates)))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=20)
    add_database_options(parser)
    args = parser.parse_args(argv)
    with throwaway_database(args.database_url, args.keep_database) as url:
        asyncio.run(prepare_schema(url, DatabaseSettings()))
        started = time.perf_counter()
        seed(url, args.patients)
        print(f"seeding took {time.perf_counter() - started:.0f} s")
        asyncio.run(measure(url, args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
