"""The SQL of program operations' reads: episodes of care, and the local days on which a
patient's devices sent readings.

Days come from `reading_day` (migration 0017), which ingest keeps per patient, local day
and device as it stores readings: a read looks days up instead of counting readings. A
day only partly inside the range asked for (the episode began at noon, the range ends now)
is checked against `reading` itself, for that day alone, so the answer is what counting
the readings in the range would give.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow, class_row

Connection = AsyncConnection[TupleRow]


@dataclass(frozen=True)
class Episode:
    id: int
    patient_id: int
    started_at: datetime
    ended_at: datetime | None


async def episodes(conn: Connection, patient_id: int) -> list[Episode]:
    """The patient's episodes of care, oldest first."""
    async with conn.cursor(row_factory=class_row(Episode)) as cursor:
        await cursor.execute(
            "SELECT id, patient_id, started_at, ended_at FROM care_episode"
            " WHERE patient_id = %s ORDER BY started_at, id",
            [patient_id],
        )
        return await cursor.fetchall()


# The single readings of patient `{patient}` in [{lo}, {hi}) (their `{columns}`): a range of
# the patient's entries in the patient-kind-time index, at most a day here.
_SINGLES_WITHIN = """
(SELECT {columns} FROM reading WHERE patient_id = {patient} AND statistic IS NULL
 AND measured_at >= {lo} AND measured_at < {hi}) r
"""
_DEVICE_AND_TIME = "device_id, measured_at"
# Whether an open episode `c`'s first local day had a reading after the episode began (a day
# can hold readings from before it, which do not count).
_FIRST_DAY_READ = _SINGLES_WITHIN.format(
    patient="c.patient_id",
    columns="1",
    lo="c.started_at",
    hi="((c.first_day + 1)::timestamp AT TIME ZONE c.time_zone)",
)

# Days wholly inside [start, end) from `reading_day`; the day holding `start` and the one
# holding `end` (where the range begins or ends inside them) from the readings in the range.
_READING_DAYS = sql.SQL(
    "WITH b AS (SELECT %(start)s::timestamptz AS start_at, %(end)s::timestamptz AS end_at,"
    " (%(start)s::timestamptz AT TIME ZONE %(tz)s)::date AS first_day,"
    " (%(end)s::timestamptz AT TIME ZONE %(tz)s)::date AS last_day)"
    " SELECT d.kind, day.local_day FROM b, reading_day day JOIN device d ON d.id = day.device_id"
    " WHERE day.patient_id = %(patient)s"
    " AND day.local_day BETWEEN b.first_day AND b.last_day"
    " AND (day.local_day::timestamp AT TIME ZONE %(tz)s) >= b.start_at"
    " AND ((day.local_day + 1)::timestamp AT TIME ZONE %(tz)s) <= b.end_at"
    " UNION"
    " SELECT d.kind, (r.measured_at AT TIME ZONE %(tz)s)::date"
    " FROM b CROSS JOIN LATERAL (VALUES"
    "  (b.start_at, least(b.end_at, (b.first_day + 1)::timestamp AT TIME ZONE %(tz)s)),"
    "  (greatest(b.start_at, b.last_day::timestamp AT TIME ZONE %(tz)s), b.end_at)"
    " ) AS span (lo, hi) CROSS JOIN LATERAL {singles} JOIN device d ON d.id = r.device_id"
).format(
    singles=sql.SQL(
        _SINGLES_WITHIN.format(
            patient="%(patient)s", columns=_DEVICE_AND_TIME, lo="span.lo", hi="span.hi"
        )
    )
)


async def reading_days(
    conn: Connection, patient_id: int, time_zone: str, start: datetime, end: datetime
) -> dict[str, set[date]]:
    """Per device kind, the patient's local days in [start, end) with a reading."""
    if end <= start:
        return {}
    cursor = await conn.execute(
        _READING_DAYS, {"tz": time_zone, "patient": patient_id, "start": start, "end": end}
    )
    days: dict[str, set[date]] = defaultdict(set)
    for kind, day in await cursor.fetchall():
        days[kind].add(day)
    return dict(days)


async def episode_reading_days(
    conn: Connection,
    patient_id: int,
    time_zone: str,
    episode: Episode,
    start: datetime,
    end: datetime,
) -> dict[str, set[date]]:
    """Per device kind, the local days with a reading in [start, end) within the episode:
    the one query adherence and billing both count by, so the patient page cannot show
    two numbers for one fact. A reading before the episode began (earlier on its first
    day, or in the previous episode) is not the episode's."""
    start = max(start, episode.started_at)
    if episode.ended_at is not None:
        end = min(end, episode.ended_at)
    return await reading_days(conn, patient_id, time_zone, start, end)


# The last single reading of each reading kind of patient `{patient}` (its `{columns}`).
_LAST_OF_EACH_KIND = """
unnest(ARRAY['blood_pressure', 'body_weight', 'blood_glucose', 'heart_rate']) AS k (kind)
CROSS JOIN LATERAL (
    SELECT {columns} FROM reading
    WHERE patient_id = {patient} AND kind = k.kind AND statistic IS NULL
    ORDER BY measured_at DESC LIMIT 1
) last
"""
# When patient `{patient}`'s last single reading was measured: on their latest day with
# readings (a local day is later exactly when its readings are), the latest of its devices'.
# One backward step through the patient's days in the key's index.
_LAST_READING_AT = """
(SELECT last_measured_at FROM reading_day WHERE patient_id = {patient}
 ORDER BY local_day DESC, last_measured_at DESC LIMIT 1)
"""


async def last_readings(conn: Connection, patient_id: int) -> dict[str, datetime]:
    """Per device kind, when the patient's last reading was measured."""
    cursor = await conn.execute(
        "SELECT d.kind, max(day.last_measured_at) FROM reading_day day"
        " JOIN device d ON d.id = day.device_id WHERE day.patient_id = %s GROUP BY d.kind",
        [patient_id],
    )
    return dict(await cursor.fetchall())


@dataclass(frozen=True)
class CurrentPeriod:
    """An active patient's current 30-day period, with its days with readings (any
    device) so far: a day once for each device that read on it, in no set order."""

    patient_id: int
    external_ref: str
    care_team_id: int | None
    time_zone: str
    episode_started_at: datetime
    reading_days: list[date]
    last_reading_at: datetime | None
    care_plan_version: int | None  # the plan in force (None: none yet)


async def current_periods(
    conn: Connection,
    now: datetime,
    care_team_ids: Collection[int] | None,
    patient_ids: Collection[int] | None = None,
) -> list[CurrentPeriod]:
    """Every active patient in an open episode (of these teams; None: all; and of these
    patients, if given), with the local days of their current period that have readings."""
    teams = None if care_team_ids is None else list(care_team_ids)
    patients = None if patient_ids is None else list(patient_ids)
    # From the episode's start, as `episode_reading_days` counts for the patient page: the
    # episode's first day from the readings after it began, the days after from reading_day.
    query = sql.SQL(
        # The open episode (one a patient at most) by the patient's key: as a join, a
        # team's 500 patients were hashed against a scan of every episode (10 ms);
        # MATERIALIZED, so that it is looked up once a patient, not once a use.
        "WITH patient_episode AS MATERIALIZED ("
        " SELECT p.id AS patient_id, p.external_ref, p.care_team_id, p.time_zone,"
        "        (SELECT e.started_at FROM care_episode e"
        "         WHERE e.patient_id = p.id AND e.ended_at IS NULL) AS started_at"
        " FROM patient p WHERE p.status = 'active'"
        " AND (%(teams)s::bigint[] IS NULL OR p.care_team_id = ANY(%(teams)s::bigint[]))"
        " AND (%(patients)s::bigint[] IS NULL OR p.id = ANY(%(patients)s::bigint[]))"
        "), open_episode AS ("
        " SELECT *, (started_at AT TIME ZONE time_zone)::date AS first_day,"
        "        (%(now)s::timestamptz AT TIME ZONE time_zone)::date AS today"
        " FROM patient_episode WHERE started_at IS NOT NULL"
        "), c AS ("
        " SELECT *, first_day + 30 * ((today - first_day) / 30) AS period_first"
        " FROM open_episode WHERE today >= first_day"
        ")"
        " SELECT c.patient_id, c.external_ref, c.care_team_id, c.time_zone, c.started_at,"
        # A day once a device, in no set order; the caller makes the days a set (no sort
        # and no Unique here, which were half the query's time).
        " ARRAY(SELECT day.local_day FROM reading_day day WHERE day.patient_id = c.patient_id"
        "       AND day.local_day > c.first_day AND day.local_day >= c.period_first"
        "       AND day.local_day < c.period_first + 30"
        # CASE, not AND: PostgreSQL would look the readings up for every patient first.
        "       UNION ALL SELECT c.first_day WHERE CASE WHEN c.period_first = c.first_day"
        "       THEN EXISTS (SELECT FROM {first_day_read}) END),"
        " {last},"
        " (SELECT version FROM care_plan WHERE patient_id = c.patient_id)"
        " FROM c ORDER BY c.patient_id"
    ).format(
        first_day_read=sql.SQL(_FIRST_DAY_READ),
        last=sql.SQL(_LAST_READING_AT.format(patient="c.patient_id")),
    )
    cursor = await conn.execute(query, {"now": now, "teams": teams, "patients": patients})
    return [CurrentPeriod(*row) for row in await cursor.fetchall()]


# The active patients whose current period is at risk or out of reach, ranked as
# `rpm.program.service.patients_at_risk` lists them, with how many there are: from each
# patient's `reading_calendar` row (migration 0018), one bit count a patient instead of
# their days' index range, so that ranking a programme of 100,000 reads 100,000 short rows.
# Days and the standing are `rpm.program.adherence.assess`'s arithmetic, term for term
# (round() of a float8 rounds half to even, as Python's does); a test holds the two
# together. MATERIALIZED: each step's columns are worked out once a patient, not once
# for every expression that names them.
_AT_RISK = """
WITH zone AS MATERIALIZED (
    SELECT z.name, (%(now)s::timestamptz AT TIME ZONE z.name)::date AS today
    FROM (SELECT DISTINCT time_zone FROM patient
          WHERE %(teams)s::bigint[] IS NULL OR care_team_id = ANY(%(teams)s::bigint[])) z (name)
), c AS MATERIALIZED (
    SELECT p.id AS patient_id, p.time_zone, e.started_at, f.first_day, z.today,
           f.first_day + 30 * ((z.today - f.first_day) / 30) AS period_first,
           cal.first_day AS calendar_first, cal.days AS calendar
    FROM patient p
    JOIN zone z ON z.name = p.time_zone
    JOIN care_episode e ON e.patient_id = p.id AND e.ended_at IS NULL
    CROSS JOIN LATERAL (SELECT (e.started_at AT TIME ZONE p.time_zone)::date AS first_day) f
    LEFT JOIN reading_calendar cal ON cal.patient_id = p.id
    WHERE p.status = 'active' AND z.today >= f.first_day
      AND (%(teams)s::bigint[] IS NULL OR p.care_team_id = ANY(%(teams)s::bigint[]))
), counted AS MATERIALIZED (
    -- The period's days after the episode's first, from the calendar; its first day only
    -- when a reading came after the episode began (as `current_periods` counts it).
    SELECT c.patient_id, c.today, c.period_first,
           coalesce(bit_count(substring(c.calendar
               FROM greatest(c.first_day + 1, c.period_first) - c.calendar_first + 1
               FOR c.today - greatest(c.first_day + 1, c.period_first) + 1)), 0)::int
           + CASE WHEN c.period_first = c.first_day
                  AND substring(c.calendar FROM c.first_day - c.calendar_first + 1 FOR 1) = B'1'
                  AND EXISTS (SELECT FROM {first_day_read})
             THEN 1 ELSE 0 END AS days,
           CASE WHEN c.today = c.first_day THEN NULL
                ELSE coalesce(substring(c.calendar FROM c.today - c.calendar_first + 1 FOR 1)
                              = B'1', false) END AS read_today_after_first
    FROM c
), standing AS (
    SELECT patient_id, days,
           (period_first + 29 - today) + CASE WHEN read_today THEN 0 ELSE 1 END AS days_left,
           (today - period_first) + CASE WHEN read_today THEN 1 ELSE 0 END AS elapsed
    FROM (SELECT *, coalesce(read_today_after_first, days > 0) AS read_today FROM counted) t
)
SELECT patient_id, count(*) OVER () FROM standing
WHERE days < 16
  AND (days + days_left <= 16
       OR CASE WHEN elapsed >= 3 THEN days + round((days_left * days)::float8 / elapsed)
               ELSE days + days_left END < 16)
ORDER BY days_left - greatest(16 - days, 0), days, patient_id
OFFSET %(offset)s LIMIT %(limit)s
"""


async def at_risk(
    conn: Connection,
    now: datetime,
    care_team_ids: Collection[int] | None,
    offset: int,
    limit: int | None,
) -> tuple[list[int], int]:
    """The ids of a page of the patients at risk (of these teams; None: all), fewest days
    to spare first, and how many are at risk in all (0 when the page is past the end)."""
    teams = None if care_team_ids is None else list(care_team_ids)
    query = sql.SQL(_AT_RISK).format(first_day_read=sql.SQL(_FIRST_DAY_READ))
    cursor = await conn.execute(
        query, {"now": now, "teams": teams, "offset": offset, "limit": limit}
    )
    rows = await cursor.fetchall()
    return [patient_id for patient_id, _ in rows], (rows[0][1] if rows else 0)


@dataclass(frozen=True)
class ReminderCandidate:
    """An active patient in an open episode who has opted in to SMS reminders."""

    patient_id: int
    time_zone: str
    phone: str
    after_days: int | None
    quiet_hours_start: time | None
    quiet_hours_end: time | None
    episode_started_at: datetime
    last_reading_at: datetime | None
    # The last reminder written (sent or not: a number that fails is not retried sooner).
    last_reminder_at: datetime | None


async def reminder_candidates(conn: Connection) -> list[ReminderCandidate]:
    query = sql.SQL(
        "SELECT p.id, p.time_zone, p.reminder_phone, p.reminder_after_days,"
        " p.quiet_hours_start, p.quiet_hours_end, e.started_at,"
        " {last},"
        # When the job (on its own clock) wanted it sent, not the row's created_at: the
        # database's clock is not the job's.
        " (SELECT max(coalesce(n.not_before, n.created_at)) FROM notification n"
        "  WHERE n.patient_id = p.id"
        "  AND n.purpose = 'adherence_reminder' AND n.status <> 'cancelled')"
        " FROM patient p JOIN care_episode e ON e.patient_id = p.id AND e.ended_at IS NULL"
        " WHERE p.status = 'active' AND p.reminders_opted_in_at IS NOT NULL"
        " ORDER BY p.id"
    ).format(last=sql.SQL(_LAST_READING_AT.format(patient="p.id")))
    cursor = await conn.execute(query)
    return [ReminderCandidate(*row) for row in await cursor.fetchall()]


@dataclass(frozen=True)
class LastValue:
    """One measure of one patient for the huddle board: the last single reading's value
    (canonical unit)."""

    patient_id: int
    measure: str
    value: float
    measured_at: datetime


# Each measure's column, and the reading kinds that carry it (a pulse comes with a blood
# pressure, or on its own): as `rpm.rules.plan.READING_KINDS`, which the board maps back.
_MEASURE_COLUMNS = {
    "systolic": "systolic_mmhg",
    "diastolic": "diastolic_mmhg",
    "pulse": "pulse_bpm",
    "weight": "weight_kg",
    "glucose": "glucose_mg_dl",
}

_LAST_VALUES = sql.SQL(
    "SELECT p.id, last.measured_at, {columns}"
    " FROM unnest(%(patients)s::bigint[]) AS p (id) CROSS JOIN {last}"
).format(
    columns=sql.SQL(", ").join(
        sql.SQL("last.") + sql.Identifier(c) for c in _MEASURE_COLUMNS.values()
    ),
    last=sql.SQL(
        _LAST_OF_EACH_KIND.format(
            patient="p.id", columns="measured_at, " + ", ".join(_MEASURE_COLUMNS.values())
        )
    ),
)

_FORTNIGHT_MEANS = sql.SQL(
    "SELECT patient_id, {means} FROM reading"
    " WHERE patient_id = ANY(%(patients)s::bigint[]) AND statistic IS NULL"
    " AND measured_at >= %(fortnight)s AND measured_at < %(now)s GROUP BY patient_id"
).format(
    means=sql.SQL(", ").join(
        sql.SQL("avg({c}) FILTER (WHERE measured_at >= %(week)s),"
                " avg({c}) FILTER (WHERE measured_at < %(week)s)").format(c=sql.Identifier(c))
        for c in _MEASURE_COLUMNS.values()
    )
)  # fmt: skip


async def last_values(conn: Connection, patient_ids: Collection[int]) -> dict[int, list[LastValue]]:
    """Per patient, each measure it has a single reading of: the last value, by measure."""
    last: dict[tuple[int, str], tuple[datetime, float]] = {}
    cursor = await conn.execute(_LAST_VALUES, {"patients": list(patient_ids)})
    for patient_id, measured_at, *values in await cursor.fetchall():
        for measure, value in zip(_MEASURE_COLUMNS, values, strict=True):
            seen = last.get((patient_id, measure))
            if value is not None and (seen is None or measured_at > seen[0]):
                last[(patient_id, measure)] = (measured_at, float(value))
    found: dict[int, list[LastValue]] = defaultdict(list)
    for (patient_id, measure), (measured_at, value) in sorted(last.items()):
        found[patient_id].append(LastValue(patient_id, measure, value, measured_at))
    return dict(found)


async def fortnight_means(
    conn: Connection, patient_ids: Collection[int], now: datetime
) -> dict[tuple[int, str], tuple[float | None, float | None]]:
    """Per (patient, measure) with single readings in the 14 days before `now`: the mean
    of the last 7 days and of the 7 days before them (None: none in that week)."""
    week = now - timedelta(days=7)
    cursor = await conn.execute(
        _FORTNIGHT_MEANS,
        {
            "patients": list(patient_ids),
            "now": now,
            "week": week,
            "fortnight": week - timedelta(days=7),
        },
    )
    means: dict[tuple[int, str], tuple[float | None, float | None]] = {}
    for patient_id, *pairs in await cursor.fetchall():
        for i, measure in enumerate(_MEASURE_COLUMNS):
            recent, previous = pairs[2 * i], pairs[2 * i + 1]
            means[(patient_id, measure)] = (
                None if recent is None else float(recent),
                None if previous is None else float(previous),
            )
    return means
