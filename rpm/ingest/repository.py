"""The ingest SQL: device look-up for a batch, and writing what the batch became
(the dead letters' own SQL is in `dead_letters`).

Readings go in by binary COPY straight into `reading`, under a savepoint. When that hits
the natural key (a redelivered or re-sent reading, or a key twice in one batch), the
savepoint is rolled back and the batch goes the careful way: binary COPY into a
per-session staging table, then one `INSERT ... SELECT ... ON CONFLICT DO NOTHING`. Either
way a repeated reading is dropped by the database, not by luck. The direct COPY is the
common case, and takes about a quarter less time a row (docs/benchmarks.md).

Either path then adds the readings it inserted to `reading_day`, the per-patient local-day
counts that program operations read (migration 0017), in the same transaction: one
statement a batch, so a duplicate is never counted and a rolled-back batch never was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pydantic_core
from psycopg import AsyncConnection, errors
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from rpm.devices.model import DeviceKind
from rpm.ingest import dead_letters
from rpm.ingest.pipeline import Assignment, BatchPlan, KnownDevice, ReadingRow

_READING_COLUMNS = (
    "device_id", "kind", "measured_at", "patient_id", "received_at", "measured_utc_offset_min",
    "systolic_mmhg", "diastolic_mmhg", "pulse_bpm", "weight_kg", "glucose_mg_dl",
    "meal_context", "statistic", "original", "source", "device_reading_id",
)  # fmt: skip
_READING_TYPES = (
    "int8", "text", "timestamptz", "int8", "timestamptz", "int2",
    "float4", "float4", "float4", "float8", "float4",
    "text", "text", "jsonb", "text", "text",
)  # fmt: skip
_COLUMNS = ", ".join(_READING_COLUMNS)

# ON COMMIT DELETE ROWS: the staging table is empty at the start of every batch.
_CREATE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS reading_staging"
    " (LIKE reading INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_COPY_DIRECT = f"COPY reading ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_STAGING = f"COPY reading_staging ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
# Built from the column constants above, nothing else.
_INSERT = (
    f"INSERT INTO reading ({_COLUMNS}) SELECT {_COLUMNS} FROM reading_staging"  # noqa: S608
    " ON CONFLICT DO NOTHING RETURNING device_id, kind, measured_at"
)

# The batch's single readings as arrays, counted per patient, local day on the patient's
# clock and device. FOR SHARE on the patients: a change of time zone (whose trigger
# rebuilds the patient's days from `reading`) waits for this batch to commit, or this
# batch for it and then counts on the new zone. Rows go in key order so that two batches
# that share days lock them in the same order. Binary parameters (%b): as text, the
# arrays of timestamps cost more than the rest of the statement (docs/benchmarks.md).
_COUNT_DAYS = """
WITH zone AS (
    SELECT id, time_zone FROM patient WHERE id = ANY(%(patients)b::bigint[]) FOR SHARE
)
INSERT INTO reading_day AS day (patient_id, local_day, device_id, readings, last_measured_at)
SELECT b.patient_id, (b.at AT TIME ZONE zone.time_zone)::date, b.device_id, count(*), max(b.at)
FROM unnest(%(patients)b::bigint[], %(devices)b::bigint[], %(times)b::timestamptz[])
     AS b (patient_id, device_id, at)
JOIN zone ON zone.id = b.patient_id
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
ON CONFLICT (patient_id, local_day, device_id) DO UPDATE
SET readings = day.readings + excluded.readings,
    last_measured_at = greatest(day.last_measured_at, excluded.last_measured_at)
"""

_DEVICES = """
SELECT d.id, d.serial, d.kind, d.status = 'active',
       coalesce(array_agg(a.patient_id ORDER BY a.assigned_at)
                FILTER (WHERE a.id IS NOT NULL), '{}'),
       coalesce(array_agg(a.assigned_at ORDER BY a.assigned_at)
                FILTER (WHERE a.id IS NOT NULL), '{}'),
       coalesce(array_agg(a.unassigned_at ORDER BY a.assigned_at)
                FILTER (WHERE a.id IS NOT NULL), '{}')
FROM device d
LEFT JOIN device_assignment a ON a.device_id = d.id
WHERE d.serial = ANY(%s)
GROUP BY d.id
"""

_STATUS = """
UPDATE device SET battery_percent = coalesce(%s, battery_percent),
                  signal_dbm = coalesce(%s, signal_dbm),
                  firmware = coalesce(%s, firmware),
                  status_reported_at = %s
WHERE id = %s AND (status_reported_at IS NULL OR status_reported_at <= %s)
"""

_LAST_SEEN = """
UPDATE device SET last_seen_at = greatest(device.last_seen_at, seen.at)
FROM unnest(%s::bigint[], %s::timestamptz[]) AS seen(id, at)
WHERE device.id = seen.id
"""

Connection = AsyncConnection[TupleRow]


@dataclass(frozen=True)
class StoredBatch:
    inserted: list[ReadingRow]
    duplicates: int
    dead_letters: int


async def load_devices(conn: Connection, serials: Iterable[str]) -> dict[str, KnownDevice]:
    cursor = await conn.execute(_DEVICES, [list(serials)])
    devices = {}
    for device_id, serial, kind, active, patients, starts, ends in await cursor.fetchall():
        periods = tuple(Assignment(*period) for period in zip(patients, starts, ends, strict=True))
        devices[serial] = KnownDevice(device_id, serial, DeviceKind(kind), active, periods)
    return devices


async def store(conn: Connection, plan: BatchPlan) -> StoredBatch:
    """Write the batch; the caller owns the transaction and commits it."""
    inserted = await _insert_readings(conn, plan.rows)
    if plan.dead_letters:
        await dead_letters.insert(conn, plan.dead_letters)
    if plan.statuses:
        async with conn.cursor() as cursor:
            await cursor.executemany(
                _STATUS,
                [
                    (
                        s.status.battery_percent,
                        s.status.signal_dbm,
                        s.status.firmware,
                        reported := s.status.reported_at or s.received_at,
                        s.device_id,
                        reported,
                    )
                    for s in plan.statuses
                ],
            )
    if plan.last_seen:
        await conn.execute(_LAST_SEEN, [list(plan.last_seen), list(plan.last_seen.values())])
    return StoredBatch(inserted, len(plan.rows) - len(inserted), len(plan.dead_letters))


async def _insert_readings(conn: Connection, rows: Sequence[ReadingRow]) -> list[ReadingRow]:
    if not rows:
        return []
    try:
        async with conn.transaction():  # a savepoint: the caller owns the transaction
            await copy_readings(conn, rows)
    except errors.UniqueViolation:
        return await upsert_readings(conn, rows)
    return list(rows)


async def copy_readings(conn: Connection, rows: Sequence[ReadingRow]) -> None:
    """Binary COPY straight into `reading`, and their days counted; a key already there
    raises UniqueViolation."""
    await _copy(conn, _COPY_DIRECT, rows)
    await _count_days(conn, rows)


async def upsert_readings(conn: Connection, rows: Sequence[ReadingRow]) -> list[ReadingRow]:
    """Staging COPY, then INSERT ... ON CONFLICT DO NOTHING; return the rows inserted."""
    await conn.execute(_CREATE_STAGING)
    await _copy(conn, _COPY_STAGING, rows)
    cursor = await conn.execute(_INSERT)
    keys = {(device, kind, at) for device, kind, at in await cursor.fetchall()}
    # A key repeated within the batch was inserted once: report its first row.
    inserted = []
    for row in rows:
        key = (row.device_id, row.reading.kind.value, row.reading.measured_at)
        if key in keys:
            keys.discard(key)
            inserted.append(row)
    await _count_days(conn, inserted)
    return inserted


async def _count_days(conn: Connection, inserted: Sequence[ReadingRow]) -> None:
    """Add readings just inserted to their days; their local days are PostgreSQL's, as
    `reading_day_rebuild` computes them, so the two cannot disagree on a zone's rules."""
    singles = [row for row in inserted if row.reading.statistic is None]
    if not singles:
        return
    await conn.execute(
        _COUNT_DAYS,
        {
            "patients": [row.patient_id for row in singles],
            "devices": [row.device_id for row in singles],
            "times": [row.reading.measured_at for row in singles],
        },
    )


async def _copy(conn: Connection, statement: str, rows: Sequence[ReadingRow]) -> None:
    async with conn.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(list(_READING_TYPES))
        for row in rows:
            r = row.reading
            await copy.write_row(
                (
                    row.device_id,
                    r.kind.value,
                    r.measured_at,
                    row.patient_id,
                    row.received_at,
                    r.utc_offset_min,
                    r.systolic_mmhg,
                    r.diastolic_mmhg,
                    r.pulse_bpm,
                    r.weight_kg,
                    r.glucose_mg_dl,
                    r.meal_context.value if r.meal_context else None,
                    r.statistic,
                    # pydantic-core's serializer: 0.5 µs a reading against json.dumps' 2.7 µs.
                    Jsonb(r.original, dumps=pydantic_core.to_json),
                    r.source.value,
                    r.device_reading_id,
                )
            )
