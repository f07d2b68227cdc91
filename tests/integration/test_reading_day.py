"""`reading_day`, the per-patient local-day counts that ingest keeps as it stores readings
(migration 0017), on a real PostgreSQL: through ingest's own write path, duplicates
counted once, a late-evening reading on the patient's day, a time-zone change rebuilding
the days, and the incremental counts equal to a rebuild after any ingests."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import TupleRow

from rpm.devices.model import Reading, ReadingKind, Source
from rpm.ingest import repository as ingest_repository
from rpm.ingest.pipeline import BatchPlan, ReadingRow
from rpm.program import repository

Conn = psycopg.AsyncConnection[TupleRow]
CHICAGO = ZoneInfo("America/Chicago")
RECEIVED = datetime(2026, 11, 20, 12, tzinfo=UTC)


async def _patient(conn: Conn, ref: str, zone: str) -> int:
    cursor = await conn.execute(
        "INSERT INTO patient (external_ref, given_name, family_name, time_zone, enrolled_at)"
        " VALUES (%s, 'Test', 'Patient', %s, '2026-10-01T00:00Z') RETURNING id",
        [ref, zone],
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _scale(conn: Conn, serial: str) -> int:
    cursor = await conn.execute(
        "INSERT INTO device (serial, kind) VALUES (%s, 'weight_scale') RETURNING id", [serial]
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


def _weighing(device: int, patient: int, at: datetime, statistic: str | None = None) -> ReadingRow:
    reading = Reading(
        ReadingKind.BODY_WEIGHT, at, Source.NATIVE, {}, weight_kg=80.0, statistic=statistic
    )
    return ReadingRow(reading, device, patient, RECEIVED)


async def _store(conn: Conn, rows: list[ReadingRow]) -> int:
    """One batch as the ingest service writes it, in a transaction of its own."""
    async with conn.transaction():
        stored = await ingest_repository.store(conn, BatchPlan(len(rows), rows))
    return len(stored.inserted)


async def _days(conn: Conn) -> list[tuple[int, date, int, int, datetime]]:
    cursor = await conn.execute(
        "SELECT patient_id, local_day, device_id, readings, last_measured_at FROM reading_day"
        " ORDER BY patient_id, local_day, device_id"
    )
    return await cursor.fetchall()


async def _rebuilt(conn: Conn) -> list[tuple[int, date, int, int, datetime]]:
    await conn.execute("SELECT reading_day_rebuild()")
    return await _days(conn)


def _chicago(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), CHICAGO).astimezone(UTC)


async def test_a_duplicate_is_counted_once_whichever_path_stores_it(conn: Conn) -> None:
    patient = await _patient(conn, "P-DUP", "America/Chicago")
    scale = await _scale(conn, "SCALE-DUP")
    monday, tuesday = date(2026, 11, 16), date(2026, 11, 17)
    first = [
        _weighing(scale, patient, _chicago(monday, 7)),
        _weighing(scale, patient, _chicago(monday, 19)),
        _weighing(scale, patient, _chicago(tuesday, 7)),
        # A summary is not a reading of its day.
        _weighing(scale, patient, _chicago(tuesday, 12), statistic="average"),
    ]
    assert await _store(conn, first) == 4  # the direct COPY
    counts = [(day, readings) for _, day, _, readings, _ in await _days(conn)]
    assert counts == [(monday, 2), (tuesday, 1)]

    # Redelivered whole: the fallback stores nothing and counts nothing.
    assert await _store(conn, first) == 0
    # One new reading, one already stored, and a key twice in the batch: one more.
    again = [
        _weighing(scale, patient, _chicago(tuesday, 7)),
        _weighing(scale, patient, _chicago(tuesday, 20)),
        _weighing(scale, patient, _chicago(tuesday, 20)),
    ]
    assert await _store(conn, again) == 1
    days = await _days(conn)
    assert [(day, readings) for _, day, _, readings, _ in days] == [(monday, 2), (tuesday, 2)]
    assert days[-1][4] == _chicago(tuesday, 20)
    assert days == await _rebuilt(conn)


async def test_a_rolled_back_batch_leaves_no_count(conn: Conn) -> None:
    patient = await _patient(conn, "P-ROLLBACK", "UTC")
    scale = await _scale(conn, "SCALE-ROLLBACK")

    at = datetime(2026, 11, 16, 8, tzinfo=UTC)

    async def counted_then_failed() -> None:
        async with conn.transaction():
            await ingest_repository.copy_readings(conn, [_weighing(scale, patient, at)])
            assert len(await _days(conn)) == 1
            # A device that is not registered: the transaction fails, counts and all.
            await ingest_repository.copy_readings(conn, [_weighing(scale + 99, patient, at)])

    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await counted_then_failed()
    assert await _days(conn) == []


async def test_a_reading_at_half_past_eleven_at_night_is_on_the_patient_s_day(
    conn: Conn,
) -> None:
    """23:30 in Chicago is 05:30 the next day in UTC; 23:30 in Kathmandu (UTC+05:45) is
    17:45 the same day in UTC, and 00:10 there is still the day before in UTC."""
    chicago = await _patient(conn, "P-LATE-CHI", "America/Chicago")
    kathmandu = await _patient(conn, "P-LATE-KTM", "Asia/Kathmandu")
    chicago_scale = await _scale(conn, "SCALE-LATE-CHI")
    kathmandu_scale = await _scale(conn, "SCALE-LATE-KTM")
    day = date(2026, 11, 18)
    nepal = ZoneInfo("Asia/Kathmandu")
    late_in_chicago = _chicago(day, 23, 30)
    late_in_nepal = datetime.combine(day, time(23, 30), nepal).astimezone(UTC)
    early_in_nepal = datetime.combine(day, time(0, 10), nepal).astimezone(UTC)
    assert late_in_chicago.date() == day + timedelta(days=1)
    assert early_in_nepal.date() == day - timedelta(days=1)
    await _store(
        conn,
        [
            _weighing(chicago_scale, chicago, late_in_chicago),
            _weighing(kathmandu_scale, kathmandu, late_in_nepal),
            _weighing(kathmandu_scale, kathmandu, early_in_nepal),
        ],
    )
    assert [(p, d, n) for p, d, _, n, _ in await _days(conn)] == [
        (chicago, day, 1),
        (kathmandu, day, 2),
    ]

    # And so for the program's reads, over the whole week and over the one day.
    week = (_chicago(day - timedelta(days=3), 0), _chicago(day + timedelta(days=3), 0))
    assert await repository.reading_days(conn, chicago, "America/Chicago", *week) == {
        "weight_scale": {day}
    }
    one_day = (_chicago(day, 0), _chicago(day + timedelta(days=1), 0))
    assert await repository.reading_days(conn, chicago, "America/Chicago", *one_day) == {
        "weight_scale": {day}
    }
    # The range ends at 23:00 local: the day is only partly inside, and its reading is not.
    before_it = (_chicago(day, 0), _chicago(day, 23))
    assert await repository.reading_days(conn, chicago, "America/Chicago", *before_it) == {}


async def test_a_time_zone_change_rebuilds_the_patient_s_days(conn: Conn) -> None:
    moved = await _patient(conn, "P-MOVED", "UTC")
    stayed = await _patient(conn, "P-STAYED", "UTC")
    moved_scale = await _scale(conn, "SCALE-MOVED")
    stayed_scale = await _scale(conn, "SCALE-STAYED")
    # 03:00 UTC on the 18th: the 18th in UTC, the 17th in Chicago.
    at = datetime(2026, 11, 18, 3, tzinfo=UTC)
    await _store(conn, [_weighing(moved_scale, moved, at), _weighing(stayed_scale, stayed, at)])
    assert [(p, d) for p, d, *_ in await _days(conn)] == [
        (moved, date(2026, 11, 18)),
        (stayed, date(2026, 11, 18)),
    ]

    await conn.execute("UPDATE patient SET time_zone = 'America/Chicago' WHERE id = %s", [moved])
    assert [(p, d) for p, d, *_ in await _days(conn)] == [
        (moved, date(2026, 11, 17)),
        (stayed, date(2026, 11, 18)),
    ]
    # Later readings count on the new clock, beside the rebuilt ones.
    await _store(conn, [_weighing(moved_scale, moved, at + timedelta(hours=1))])
    days = await _days(conn)
    assert days[0][1:4] == (date(2026, 11, 17), moved_scale, 2)
    assert days == await _rebuilt(conn)
    # An update that leaves the zone as it was does not rebuild (nor need to).
    await conn.execute("UPDATE patient SET time_zone = time_zone, given_name = 'Other'")
    assert await _days(conn) == days


ZONES = ["America/Chicago", "Asia/Kathmandu", "Pacific/Chatham", "America/Santiago", "UTC"]
# Around the 2026 daylight-saving changes of Chicago (1 November) and Santiago (5 April,
# 6 September), so that days of 23 and 25 hours come up.
STARTS = [datetime(2026, 10, 31, tzinfo=UTC), datetime(2026, 9, 5, tzinfo=UTC)]
_readings = st.lists(
    st.tuples(
        st.integers(0, len(ZONES) - 1),  # whose
        st.integers(0, 3 * 24 * 4),  # quarter hours from the start
        st.sampled_from([0, 1, 59, 14 * 60 + 59]),  # seconds into it
        st.booleans(),  # a summary
    ),
    max_size=40,
)


@settings(
    max_examples=25,
    deadline=None,
    # One database for every example: the property holds whatever was stored before.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=st.lists(_readings, min_size=1, max_size=4), start=st.sampled_from(STARTS))
async def test_the_incremental_counts_equal_a_rebuild(
    conn: Conn, batches: list[list[tuple[int, int, int, bool]]], start: datetime
) -> None:
    """Random batches, repeats and duplicates within a batch included, in five zones."""
    owners = []
    for n, zone in enumerate(ZONES):
        cursor = await conn.execute(
            "SELECT p.id, d.id FROM patient p, device d"
            " WHERE p.external_ref = %s AND d.serial = %s",
            [f"P-PROP-{n}", f"SCALE-PROP-{n}"],
        )
        found = await cursor.fetchone()
        if found is None:  # the first example
            found = (
                await _patient(conn, f"P-PROP-{n}", zone),
                await _scale(conn, f"SCALE-PROP-{n}"),
            )
        owners.append(found)
    for batch in batches:
        rows = [
            _weighing(
                owners[who][1],
                owners[who][0],
                start + timedelta(minutes=15 * quarter, seconds=seconds),
                statistic="average" if summary else None,
            )
            for who, quarter, seconds, summary in batch
        ]
        await _store(conn, rows)
    incremental = await _days(conn)
    assert incremental == await _rebuilt(conn)
