"""The SQL of staff time logs (table `time_log`): a stopwatch started and stopped, or
minutes entered afterwards; voided, never deleted."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

from rpm.program.billing import TimeSpent

Connection = AsyncConnection[TupleRow]


class TimeLogError(Exception):
    """A request that cannot be recorded as asked; the message says why."""


class TimeLogConflict(TimeLogError):
    """It overlaps the same person's other time, or the entry is not in a state for it."""


class TimeLogNotFound(TimeLogError):
    pass


@dataclass(frozen=True)
class TimeLogEntry:
    id: int
    patient_id: int
    staff_id: int
    staff_name: str
    staff_role: str
    started_at: datetime
    # None while the stopwatch runs.
    ended_at: datetime | None
    interactive: bool
    note: str
    created_at: datetime
    created_by: str
    voided_at: datetime | None
    voided_by: str | None
    void_reason: str | None

    @property
    def minutes(self) -> int | None:
        if self.ended_at is None:
            return None
        return int((self.ended_at - self.started_at).total_seconds()) // 60

    def spent(self) -> TimeSpent | None:
        """What counts towards the codes: stopped, not voided entries."""
        if self.ended_at is None or self.voided_at is not None:
            return None
        return TimeSpent(
            self.started_at, self.ended_at, self.interactive, self.staff_role == "physician"
        )


_SELECT = """
SELECT t.id, t.patient_id, t.staff_id, s.display_name AS staff_name, t.staff_role,
       t.started_at, t.ended_at, t.interactive, t.note, t.created_at, t.created_by,
       t.voided_at, t.voided_by, t.void_reason
FROM time_log t JOIN staff s ON s.id = t.staff_id
"""


async def get(conn: Connection, log_id: int) -> TimeLogEntry:
    async with conn.cursor(row_factory=class_row(TimeLogEntry)) as cursor:
        await cursor.execute(_SELECT + " WHERE t.id = %s", [log_id])
        entry = await cursor.fetchone()
    if entry is None:
        raise TimeLogNotFound(f"no time-log entry with id {log_id}")
    return entry


async def add(
    conn: Connection,
    patient_id: int,
    staff_id: int,
    started_at: datetime,
    ended_at: datetime | None,
    interactive: bool,
    note: str,
    created_by: str,
) -> TimeLogEntry:
    """A stopwatch started (`ended_at` None) or time already spent."""
    if ended_at is not None and ended_at <= started_at:
        raise TimeLogError("the time spent must be at least a minute")
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO time_log (patient_id, staff_id, staff_role, started_at, ended_at,"
                " interactive, note, created_by)"
                " SELECT %s, s.id, s.role, %s, %s, %s, %s, %s FROM staff s WHERE s.id = %s"
                " RETURNING id",
                [patient_id, started_at, ended_at, interactive, note, created_by, staff_id],
            )
            row = await cursor.fetchone()
    except psycopg.errors.ExclusionViolation:
        raise await _overlap(conn, staff_id, started_at, ended_at) from None
    if row is None:
        raise TimeLogError(f"no staff member with id {staff_id}")
    return await get(conn, int(row[0]))


async def stop(
    conn: Connection, log_id: int, staff_id: int, at: datetime, interactive: bool | None
) -> TimeLogEntry:
    """Stop one's own running stopwatch (and say whether the time included an
    interactive communication, if not said at the start)."""
    entry = await get(conn, log_id)
    if entry.staff_id != staff_id:
        raise TimeLogConflict("only the person who started a stopwatch can stop it")
    if entry.ended_at is not None or entry.voided_at is not None:
        raise TimeLogConflict(f"time-log entry {log_id} is not running")
    if at - entry.started_at < timedelta(minutes=1):
        raise TimeLogError("the stopwatch ran for less than a minute: void it instead")
    await conn.execute(
        "UPDATE time_log SET ended_at = %s, interactive = coalesce(%s, interactive)"
        " WHERE id = %s AND ended_at IS NULL",
        [at, interactive, log_id],
    )
    return await get(conn, log_id)


async def void(conn: Connection, log_id: int, by: str, reason: str) -> TimeLogEntry:
    cursor = await conn.execute(
        "UPDATE time_log SET voided_at = now(), voided_by = %s, void_reason = %s"
        " WHERE id = %s AND voided_at IS NULL",
        [by, reason, log_id],
    )
    if cursor.rowcount == 0:
        entry = await get(conn, log_id)  # raises if there is none
        raise TimeLogConflict(f"time-log entry {entry.id} is already void")
    return await get(conn, log_id)


async def for_patient(
    conn: Connection, patient_id: int, start: datetime, end: datetime
) -> list[TimeLogEntry]:
    """Entries overlapping [start, end), running and voided ones included, oldest first."""
    async with conn.cursor(row_factory=class_row(TimeLogEntry)) as cursor:
        await cursor.execute(
            _SELECT + " WHERE t.patient_id = %s AND t.during && tstzrange(%s, %s, '[)')"
            " ORDER BY t.started_at, t.id",
            [patient_id, start, end],
        )
        return await cursor.fetchall()


@dataclass(frozen=True)
class MonthTotals:
    """One patient's counted time in a calendar month on their own clock: the entries in
    it (wholly or in part) and the time of theirs inside the month."""

    patient_id: int
    external_ref: str
    entries: int
    spent: timedelta
    physician: timedelta
    interactive: bool


# Each entry clipped to its patient's own month (`Month.starts_at` reads a local midnight
# as AT TIME ZONE does), summed in the database: a programme's month is some 200,000
# entries, and carrying each one into Python cost seconds. The month's bounds are worked
# out once a time zone, not once an entry (400,000 conversions took most of the query).
# Patient by patient in id order, each one's entries from its own index range: a page of
# the report (`LIMIT`) reads only the entries of the patients on it.
_MONTH_TOTALS = """
WITH zone AS MATERIALIZED (
    SELECT z.name, %(first)s::timestamp AT TIME ZONE z.name AS starts_at,
           %(next)s::timestamp AT TIME ZONE z.name AS ends_at
    FROM (SELECT DISTINCT time_zone FROM patient
          WHERE %(teams)s::bigint[] IS NULL OR care_team_id = ANY(%(teams)s::bigint[])) z (name)
)
SELECT p.id, p.external_ref, t.entries, t.spent, t.physician, t.interactive
FROM patient p
JOIN zone b ON b.name = p.time_zone
CROSS JOIN LATERAL (
    SELECT count(*) AS entries,
           sum(least(l.ended_at, b.ends_at) - greatest(l.started_at, b.starts_at)) AS spent,
           coalesce(sum(least(l.ended_at, b.ends_at) - greatest(l.started_at, b.starts_at))
                    FILTER (WHERE l.staff_role = 'physician'), interval '0') AS physician,
           bool_or(l.interactive) AS interactive
    FROM time_log l
    WHERE l.patient_id = p.id AND l.started_at < b.ends_at AND l.ended_at > b.starts_at
      AND l.voided_at IS NULL
) t
WHERE p.id > %(after)s AND t.entries > 0
  AND (%(teams)s::bigint[] IS NULL OR p.care_team_id = ANY(%(teams)s::bigint[]))
  AND (%(patients)s::bigint[] IS NULL OR p.id = ANY(%(patients)s::bigint[]))
ORDER BY p.id
LIMIT %(limit)s
"""


async def month_totals(
    conn: Connection,
    first_day: date,
    next_first_day: date,
    care_team_ids: Collection[int] | None,
    after: int = 0,
    limit: int | None = None,
    patient_ids: Collection[int] | None = None,
) -> list[MonthTotals]:
    """The counted (stopped, not voided) time of every patient (of these teams; None: all;
    and of these patients, if given) with any in the month from `first_day` to before
    `next_first_day`, each on their own clock, by patient id: from the patient after
    `after`, at most `limit` (None: all)."""
    teams = None if care_team_ids is None else list(care_team_ids)
    patients = None if patient_ids is None else list(patient_ids)
    cursor = await conn.execute(
        _MONTH_TOTALS,
        {"first": first_day, "next": next_first_day, "teams": teams, "patients": patients,
         "after": after, "limit": limit},
    )  # fmt: skip
    return [MonthTotals(*row) for row in await cursor.fetchall()]


async def _overlap(
    conn: Connection, staff_id: int, started_at: datetime, ended_at: datetime | None
) -> TimeLogConflict:
    cursor = await conn.execute(
        "SELECT id, started_at, ended_at FROM time_log WHERE staff_id = %s"
        " AND voided_at IS NULL AND during && tstzrange(%s, %s, '[)') ORDER BY started_at LIMIT 1",
        [staff_id, started_at, ended_at],
    )
    row = await cursor.fetchone()
    if row is None:  # it went away meanwhile
        return TimeLogConflict("this time overlaps other time of yours; try again")
    other_id, other_start, other_end = row
    until = "still running" if other_end is None else f"to {other_end.isoformat()}"
    return TimeLogConflict(
        f"this time overlaps your time-log entry {other_id}"
        f" (from {other_start.isoformat()} {until}): the same minutes cannot count twice"
    )
