"""Reading a patient's stored readings back: one page at a time, and as a downsampled
series for charts (what ingest writes is in `rpm.ingest.repository`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow

Connection = AsyncConnection[TupleRow]


@dataclass(frozen=True)
class StoredReading:
    """A reading in canonical units (mmHg, bpm, kg, mg/dL), with where it came from."""

    device_id: int
    device_serial: str
    kind: str
    # In UTC; `measured_at_local` is the same instant on the device's own clock, as it
    # sent it ("07:30 at home" stays 07:30-06:00), None when it sent no offset.
    measured_at: datetime
    measured_at_local: datetime | None
    received_at: datetime
    systolic_mmhg: float | None
    diastolic_mmhg: float | None
    pulse_bpm: float | None
    weight_kg: float | None
    glucose_mg_dl: float | None
    meal_context: str | None
    statistic: str | None
    source: str


@dataclass(frozen=True)
class ReadingCursor:
    """Where a page ended: (measured_at, device_id, kind) of its last reading."""

    measured_at: datetime
    device_id: int
    kind: str


async def for_patient(
    conn: Connection,
    patient_id: int,
    kinds: list[str] | None,
    since: datetime | None,
    until: datetime | None,
    after: ReadingCursor | None,
    limit: int,
) -> list[StoredReading]:
    """Newest first, by key: a page after `after` costs what the first does."""
    async with conn.cursor() as cursor:
        await cursor.execute(
            "SELECT r.device_id, d.serial AS device_serial, r.kind, r.measured_at,"
            # The device's offset, in minutes: a timestamptz keeps none (`_on_its_clock`).
            " r.measured_utc_offset_min,"
            " r.received_at, r.systolic_mmhg, r.diastolic_mmhg, r.pulse_bpm, r.weight_kg,"
            " r.glucose_mg_dl, r.meal_context, r.statistic, r.source"
            " FROM reading r JOIN device d ON d.id = r.device_id"
            " WHERE r.patient_id = %(patient)s"
            " AND (%(kinds)s::text[] IS NULL OR r.kind = ANY(%(kinds)s))"
            " AND (%(since)s::timestamptz IS NULL OR r.measured_at >= %(since)s)"
            " AND (%(until)s::timestamptz IS NULL OR r.measured_at < %(until)s)"
            " AND (%(at)s::timestamptz IS NULL"
            "      OR (r.measured_at, r.device_id, r.kind) < (%(at)s, %(device)s, %(kind)s))"
            " ORDER BY r.measured_at DESC, r.device_id DESC, r.kind DESC LIMIT %(limit)s",
            {
                "patient": patient_id,
                "kinds": kinds,
                "since": since,
                "until": until,
                "at": after.measured_at if after else None,
                "device": after.device_id if after else None,
                "kind": after.kind if after else None,
                "limit": limit,
            },
        )
        return [
            StoredReading(device, serial, kind, at, _on_its_clock(at, offset), *rest)
            for device, serial, kind, at, offset, *rest in await cursor.fetchall()
        ]


# What an RFC 3339 offset (and Python's timezone) can carry.
_MAX_OFFSET = timedelta(hours=23, minutes=59)


def _on_its_clock(at: datetime, offset_min: int | None) -> datetime | None:
    if offset_min is None or abs(timedelta(minutes=offset_min)) > _MAX_OFFSET:
        return None
    return at.astimezone(timezone(timedelta(minutes=offset_min)))


async def kinds_of(conn: Connection, patient_id: int, kinds: Sequence[str]) -> list[str]:
    """Which of these kinds the patient has any single reading of (a summary aside), in
    the order given: one probe of the (patient, kind, time) index each."""
    cursor = await conn.execute(
        "SELECT w.kind FROM unnest(%s::text[]) WITH ORDINALITY AS w(kind, n)"
        " WHERE EXISTS (SELECT 1 FROM reading r WHERE r.patient_id = %s AND r.kind = w.kind"
        " AND r.statistic IS NULL) ORDER BY w.n",
        [list(kinds), patient_id],
    )
    return [kind for (kind,) in await cursor.fetchall()]


@dataclass(frozen=True)
class Bucket:
    """One bucket of a series: how many single readings, and their mean, min and max."""

    start: datetime
    count: int
    systolic_mmhg: tuple[float, float, float] | None
    diastolic_mmhg: tuple[float, float, float] | None
    pulse_bpm: tuple[float, float, float] | None
    weight_kg: tuple[float, float, float] | None
    glucose_mg_dl: tuple[float, float, float] | None


_METRICS = ("systolic_mmhg", "diastolic_mmhg", "pulse_bpm", "weight_kg", "glucose_mg_dl")

# The same buckets both ways: TimescaleDB's time_bucket where the extension is installed
# (it is planned to use the hypertable's chunks), PostgreSQL's date_bin elsewhere.
_TIME_BUCKET = sql.SQL(
    "time_bucket(%(width)s::interval, measured_at, origin => %(origin)s::timestamptz)"
)
_DATE_BIN = sql.SQL("date_bin(%(width)s::interval, measured_at, %(origin)s::timestamptz)")
_SERIES = sql.SQL(
    "SELECT {bucket} AS start, count(*),"
    " avg(systolic_mmhg), min(systolic_mmhg), max(systolic_mmhg),"
    " avg(diastolic_mmhg), min(diastolic_mmhg), max(diastolic_mmhg),"
    " avg(pulse_bpm), min(pulse_bpm), max(pulse_bpm),"
    " avg(weight_kg), min(weight_kg), max(weight_kg),"
    " avg(glucose_mg_dl), min(glucose_mg_dl), max(glucose_mg_dl)"
    " FROM reading WHERE patient_id = %(patient)s AND kind = %(kind)s AND statistic IS NULL"
    " AND measured_at >= %(since)s AND measured_at < %(until)s"
    " GROUP BY 1 ORDER BY 1"
)


async def series(
    conn: Connection,
    patient_id: int,
    kind: str,
    since: datetime,
    until: datetime,
    width: timedelta,
) -> list[Bucket]:
    """Buckets of `width` from `since` (the first starts there), empty ones left out.
    Summaries (an Open mHealth average of a week, say) are left out, as rules leave them."""
    cursor = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    )
    row = await cursor.fetchone()
    statement = _SERIES.format(bucket=_TIME_BUCKET if row and row[0] else _DATE_BIN)
    cursor = await conn.execute(
        statement,
        {
            "width": width,
            "origin": since,
            "patient": patient_id,
            "kind": kind,
            "since": since,
            "until": until,
        },
    )
    return [
        Bucket(start, count, *(_stats(values, i) for i in range(len(_METRICS))))
        for start, count, *values in await cursor.fetchall()
    ]


def _stats(values: list[float | None], metric: int) -> tuple[float, float, float] | None:
    mean, low, high = values[3 * metric : 3 * metric + 3]
    if mean is None or low is None or high is None:
        return None
    return float(mean), float(low), float(high)
