"""Program operations' SQL on a real PostgreSQL: episodes follow the patient's status, days
with readings on the patient's clock (from `reading_day`, whole days and partial ones alike),
and time logs that cannot overlap."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.rows import TupleRow

from rpm.program import repository, time_logs
from rpm.program.billing import TimeSpent, month_time, month_time_of
from rpm.program.periods import Month
from rpm.program.time_logs import TimeLogConflict, TimeLogError

Conn = psycopg.AsyncConnection[TupleRow]
ZONES = ["America/Chicago", "America/Santiago", "Asia/Kathmandu", "Pacific/Chatham", "UTC"]


async def _patient(conn: Conn, ref: str, zone: str, enrolled_at: datetime) -> int:
    cursor = await conn.execute(
        "INSERT INTO patient (external_ref, given_name, family_name, time_zone, enrolled_at)"
        " VALUES (%s, 'Test', 'Patient', %s, %s) RETURNING id",
        [ref, zone, enrolled_at],
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _device(conn: Conn, serial: str, kind: str) -> int:
    cursor = await conn.execute(
        "INSERT INTO device (serial, kind) VALUES (%s, %s) RETURNING id", [serial, kind]
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _weights(
    conn: Conn, device_id: int, patient_id: int, times: list[datetime], statistic: str | None = None
) -> None:
    async with conn.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO reading (device_id, kind, measured_at, patient_id, weight_kg, statistic,"
            " original, source) VALUES (%s, 'body_weight', %s, %s, 80, %s, '{}', 'native')",
            [(device_id, at, patient_id, statistic) for at in times],
        )
    # Written by hand, not by ingest: their days are counted as ingest would.
    await conn.execute("SELECT reading_day_rebuild(%s)", [patient_id])


async def test_episodes_follow_the_patient_status(conn: Conn) -> None:
    enrolled = datetime(2026, 1, 5, 15, tzinfo=UTC)
    patient = await _patient(conn, "P-EP", "America/Chicago", enrolled)
    [first] = await repository.episodes(conn, patient)
    assert (first.started_at, first.ended_at) == (enrolled, None)
    await conn.execute("UPDATE patient SET status = 'paused' WHERE id = %s", [patient])
    assert len(await repository.episodes(conn, patient)) == 1
    await conn.execute("UPDATE patient SET status = 'discharged' WHERE id = %s", [patient])
    [ended] = await repository.episodes(conn, patient)
    assert ended.ended_at is not None
    await conn.execute("UPDATE patient SET status = 'active' WHERE id = %s", [patient])
    episodes = await repository.episodes(conn, patient)
    assert [e.ended_at is None for e in episodes] == [False, True]


@pytest.mark.parametrize("zone_name", ZONES)
async def test_days_with_readings_on_the_patient_clock(conn: Conn, zone_name: str) -> None:
    """Readings around every local midnight of two months (a daylight-saving change
    included), a summary that does not count, and the same days from both sources."""
    zone = ZoneInfo(zone_name)
    enrolled = datetime(2026, 8, 20, tzinfo=UTC)
    patient = await _patient(conn, f"P-{zone_name}", zone_name, enrolled)
    scale = await _device(conn, f"SCALE-{zone_name.replace('/', '-')}", "weight_scale")
    rng = random.Random(zone_name)
    times = []
    day = date(2026, 8, 25)
    while day < date(2026, 10, 20):
        if rng.random() < 0.6:
            midnight = datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)
            # Just before or just after a local midnight, or anywhere in the day.
            times.append(
                midnight
                + rng.choice(
                    [
                        timedelta(seconds=-1),
                        timedelta(0),
                        timedelta(minutes=14, seconds=59),
                        timedelta(hours=rng.uniform(0, 23)),
                    ]
                )
            )
        day += timedelta(days=1)
    await _weights(conn, scale, patient, times)
    await _weights(
        conn,
        scale,
        patient,
        [datetime(2026, 9, 30, 12, tzinfo=UTC) + timedelta(minutes=7)],
        statistic="average",
    )
    start = datetime(2026, 9, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(2026, 10, 1, tzinfo=zone).astimezone(UTC)
    expected = {at.astimezone(zone).date() for at in times if start <= at < end}

    assert await repository.reading_days(conn, patient, zone_name, start, end) == {
        "weight_scale": expected
    }
    # A range that starts and ends inside a day: those two days from the readings themselves.
    inside_start, inside_end = start + timedelta(hours=13), end - timedelta(hours=5)
    partly = {at.astimezone(zone).date() for at in times if inside_start <= at < inside_end}
    assert await repository.reading_days(conn, patient, zone_name, inside_start, inside_end) == {
        "weight_scale": partly
    }


async def test_current_periods_and_last_readings(conn: Conn) -> None:
    enrolled = datetime(2026, 10, 1, 12, tzinfo=UTC)
    chicago = await _patient(conn, "P-CUR", "America/Chicago", enrolled)
    scale = await _device(conn, "SCALE-CUR", "weight_scale")
    times = [datetime(2026, 10, 31, 12, tzinfo=UTC) + timedelta(days=n) for n in range(5)]
    await _weights(conn, scale, chicago, times)
    discharged = await _patient(conn, "P-GONE", "UTC", enrolled)
    await conn.execute("UPDATE patient SET status = 'discharged' WHERE id = %s", [discharged])

    now = datetime(2026, 11, 10, 12, tzinfo=UTC)
    [current] = await repository.current_periods(conn, now, None)
    assert current.patient_id == chicago
    # The second period began on 31 October (Chicago); its days so far:
    assert current.reading_days == [date(2026, 10, 31) + timedelta(days=n) for n in range(5)]
    assert current.last_reading_at == times[-1]
    assert await repository.current_periods(conn, now, [12345]) == []
    assert await repository.last_readings(conn, chicago) == {"weight_scale": times[-1]}


async def _staff(conn: Conn, username: str, role: str) -> int:
    cursor = await conn.execute(
        "INSERT INTO staff (username, display_name, role) VALUES (%s, %s, %s) RETURNING id",
        [username, username.title(), role],
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_time_logs_cannot_overlap_and_are_voided_not_deleted(conn: Conn) -> None:
    patient = await _patient(conn, "P-TIME", "UTC", datetime(2026, 11, 1, tzinfo=UTC))
    nurse = await _staff(conn, "nurse-t", "nurse")
    doctor = await _staff(conn, "doctor-t", "physician")
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    call = await time_logs.add(
        conn, patient, nurse, at, at + timedelta(minutes=15), True, "call", "nurse-t"
    )
    assert (call.minutes, call.staff_role, call.spent() is not None) == (15, "nurse", True)
    with pytest.raises(TimeLogConflict, match=f"overlaps your time-log entry {call.id}"):
        await time_logs.add(
            conn,
            patient,
            nurse,
            at + timedelta(minutes=10),
            at + timedelta(minutes=20),
            False,
            "",
            "nurse-t",
        )
    # Another person's time may overlap.
    review = await time_logs.add(
        conn, patient, doctor, at, at + timedelta(minutes=30), False, "review", "doctor-t"
    )
    spent = review.spent()
    assert spent is not None
    assert spent.by_physician

    running = await time_logs.add(
        conn, patient, nurse, at + timedelta(hours=1), None, False, "", "nurse-t"
    )
    assert running.minutes is None
    assert running.spent() is None
    with pytest.raises(TimeLogConflict, match="still running"):
        await time_logs.add(
            conn,
            patient,
            nurse,
            at + timedelta(hours=2),
            at + timedelta(hours=3),
            False,
            "",
            "nurse-t",
        )
    with pytest.raises(TimeLogConflict, match="only the person who started"):
        await time_logs.stop(conn, running.id, doctor, at + timedelta(hours=2), None)
    with pytest.raises(TimeLogError, match="less than a minute"):
        await time_logs.stop(conn, running.id, nurse, at + timedelta(hours=1, seconds=30), None)
    stopped = await time_logs.stop(
        conn, running.id, nurse, at + timedelta(hours=1, minutes=12), True
    )
    assert (stopped.minutes, stopped.interactive) == (12, True)
    with pytest.raises(TimeLogConflict, match="is not running"):
        await time_logs.stop(conn, running.id, nurse, at + timedelta(hours=2), None)

    voided = await time_logs.void(conn, call.id, "nurse-t", "entered twice")
    assert voided.voided_by == "nurse-t"
    assert voided.spent() is None
    with pytest.raises(TimeLogConflict, match="already void"):
        await time_logs.void(conn, call.id, "nurse-t", "again")
    # Its minutes are free again.
    await time_logs.add(
        conn, patient, nurse, at, at + timedelta(minutes=15), True, "call", "nurse-t"
    )
    listed = await time_logs.for_patient(
        conn, patient, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert len(listed) == 4  # the voided one too
    [program] = await time_logs.month_totals(conn, date(2026, 11, 1), date(2026, 12, 1), None)
    assert program.entries == 3  # not the voided one, nor a running one


async def test_month_totals_are_each_patients_own_month_as_month_time_counts_it(
    conn: Conn,
) -> None:
    """The database's sums give what `billing.month_time` gives from the entries: each
    entry clipped to the patient's own calendar month, on their clock (one across
    midnight at a month's end counts in part), a physician's part apart."""
    nurse = await _staff(conn, "nurse-m", "nurse")
    doctor = await _staff(conn, "doctor-m", "physician")
    rng = random.Random(7)
    month, following = Month(2026, 11), Month(2026, 12)
    entries: dict[int, list[TimeSpent]] = {}
    for zone in ZONES:
        patient = await _patient(conn, f"P-M-{zone}", zone, datetime(2026, 9, 1, tzinfo=UTC))
        entries[patient] = []
        # Around both ends of the month on the patient's clock, and inside it.
        edges = [month.starts_at(ZoneInfo(zone)), following.starts_at(ZoneInfo(zone))]
        for i, edge in enumerate([*edges, edges[0] + timedelta(days=9)]):
            for staff, role in ((nurse, "nurse"), (doctor, "physician")):
                start = edge - timedelta(minutes=rng.randrange(5, 40) + 60 * i)
                end = start + timedelta(minutes=rng.randrange(20, 90), seconds=rng.randrange(60))
                interactive = rng.random() < 0.3
                await time_logs.add(conn, patient, staff, start, end, interactive, "", role)
                entries[patient].append(TimeSpent(start, end, interactive, role == "physician"))
    found = {
        t.patient_id: month_time_of(month, t.entries, t.spent, t.physician, t.interactive)
        for t in await time_logs.month_totals(conn, month.first_day, following.first_day, None)
    }
    zones = dict(await (await conn.execute("SELECT id, time_zone FROM patient")).fetchall())
    expected = {
        patient: month_time(
            month, spent, month.starts_at(ZoneInfo(zones[patient])),
            month.ends_at(ZoneInfo(zones[patient])),
        )
        for patient, spent in entries.items()
    }  # fmt: skip
    assert found == expected
    assert await time_logs.month_totals(conn, month.first_day, following.first_day, [999]) == []
