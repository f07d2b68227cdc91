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
from rpm.program.adherence import Standing, assess
from rpm.program.billing import TimeSpent, month_time, month_time_of
from rpm.program.periods import Month, period_on
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
    assert set(current.reading_days) == {date(2026, 10, 31) + timedelta(days=n) for n in range(5)}
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


async def _calendar_mismatches(conn: Conn) -> list[int]:
    cursor = await conn.execute(
        "SELECT p.id FROM patient p LEFT JOIN reading_calendar c ON c.patient_id = p.id"
        " WHERE coalesce(ARRAY(SELECT c.first_day + n - 1"
        "  FROM generate_series(1, length(c.days)) n WHERE substring(c.days FROM n FOR 1) = B'1'"
        "  ORDER BY 1), '{}')"
        " <> ARRAY(SELECT DISTINCT local_day FROM reading_day d WHERE d.patient_id = p.id"
        "  ORDER BY 1)"
    )
    return [row[0] for row in await cursor.fetchall()]


async def test_the_calendar_gains_each_new_day_before_after_and_between_its_own(
    conn: Conn,
) -> None:
    patient = await _patient(conn, "P-CAL", "UTC", datetime(2026, 9, 1, tzinfo=UTC))
    scale, cuff = (
        await _device(conn, "SCALE-CAL", "weight_scale"),
        await _device(conn, "CUFF-CAL", "blood_pressure_cuff"),
    )
    # As ingest's upsert writes them: one statement a batch, several devices and days.
    for batch in (
        [(scale, date(2026, 9, 10)), (cuff, date(2026, 9, 10))],
        [(scale, date(2026, 9, 14)), (scale, date(2026, 9, 10))],
        [(cuff, date(2026, 9, 3)), (cuff, date(2026, 9, 12))],  # before the first, between
        [(scale, date(2026, 9, 20))],
    ):
        await conn.execute(
            "INSERT INTO reading_day AS day (patient_id, local_day, device_id, readings,"
            " last_measured_at) SELECT %s, d, dev, 1, now()"
            " FROM unnest(%s::date[], %s::bigint[]) AS b (d, dev)"
            " ON CONFLICT (patient_id, local_day, device_id)"
            " DO UPDATE SET readings = day.readings + 1",
            [patient, [d for _, d in batch], [dev for dev, _ in batch]],
        )
    cursor = await conn.execute(
        "SELECT first_day, days::text FROM reading_calendar WHERE patient_id = %s", [patient]
    )
    assert await cursor.fetchone() == (date(2026, 9, 3), "100000010101000001")
    assert await _calendar_mismatches(conn) == []
    await conn.execute("SELECT reading_day_rebuild(%s)", [patient])  # no readings: no days
    assert await _calendar_mismatches(conn) == []


async def test_the_at_risk_ranking_in_sql_is_the_adherence_assessment_of_every_patient(
    conn: Conn,
) -> None:
    """Patients in every zone at every point of their period, reading on some days, today
    or not, one device or two, some readings before the episode began on its first day
    and some from a device clock ahead: the database's ranking is exactly the patients
    `assess` finds at risk or out of reach, in the list's order."""
    now = datetime(2026, 11, 10, 15, 30, tzinfo=UTC)
    rng = random.Random(21)
    for n in range(120):
        zone_name = rng.choice(ZONES)
        zone = ZoneInfo(zone_name)
        enrolled = now - timedelta(days=rng.randint(0, 75), hours=rng.uniform(0, 23))
        patient = await _patient(conn, f"P-RISK-{n}", zone_name, enrolled)
        devices = [await _device(conn, f"SCALE-RISK-{n}", "weight_scale")]
        if n % 4 == 0:
            devices.append(await _device(conn, f"CUFF-RISK-{n}", "blood_pressure_cuff"))
        pace = rng.choice([0.0, 0.2, 0.45, 0.55, 0.7, 0.9, 1.0])
        times = []
        day = enrolled.astimezone(zone).date() - timedelta(days=1)
        while day <= now.astimezone(zone).date() + timedelta(days=1):
            if rng.random() < pace:
                midnight = datetime.combine(day, datetime.min.time(), zone)
                times.append((midnight + timedelta(hours=rng.uniform(0, 23.9))).astimezone(UTC))
            day += timedelta(days=1)
        for device in devices:
            await _weights(conn, device, patient, [t for t in times if rng.random() < 0.8])
        if n % 7 == 0:
            await conn.execute("UPDATE patient SET status = 'paused' WHERE id = %s", [patient])

    assessed = []
    for current in await repository.current_periods(conn, now, None):
        zone = ZoneInfo(current.time_zone)
        today = now.astimezone(zone).date()
        adherence = assess(
            period_on(current.episode_started_at, today, zone),
            set(current.reading_days),
            current.last_reading_at,
            today,
        )
        if adherence.standing in (Standing.AT_RISK, Standing.OUT_OF_REACH):
            assessed.append((adherence.slack, adherence.days_with_readings, current.patient_id))
    expected = [patient for *_, patient in sorted(assessed)]
    assert 10 < len(expected) < 100  # some of each
    assert await _calendar_mismatches(conn) == []

    assert await repository.at_risk(conn, now, None, 0, None) == (expected, len(expected))
    assert await repository.at_risk(conn, now, None, 5, 10) == (expected[5:15], len(expected))
    assert await repository.at_risk(conn, now, None, len(expected), 10) == ([], 0)
    assert await repository.at_risk(conn, now, [12345], 0, 10) == ([], 0)
