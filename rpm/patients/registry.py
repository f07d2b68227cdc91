"""The patient registry's SQL: enrol, look up, list.

Names and birth dates are patient data: they are stored and returned to the API, never
logged (logs carry ids only).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

Connection = AsyncConnection[TupleRow]


class PatientError(Exception):
    """A patient change that cannot be made, with a message saying why."""


class PatientNotFound(PatientError):
    pass


class PatientConflict(PatientError):
    pass


@dataclass(frozen=True)
class NewPatient:
    external_ref: str
    given_name: str
    family_name: str
    time_zone: str
    birth_date: date | None = None
    # None: now.
    enrolled_at: datetime | None = None


@dataclass(frozen=True)
class PatientRecord:
    id: int
    external_ref: str
    given_name: str
    family_name: str
    birth_date: date | None
    time_zone: str
    status: str
    enrolled_at: datetime
    care_plan_version: int | None
    care_team_id: int | None


# The plan's version by the patient's own key: as a join, a few hundred ids from ANY()
# were hashed against a scan of every patient's care_plan row (7 ms for a team of 500).
_SELECT = """
SELECT p.id, p.external_ref, p.given_name, p.family_name, p.birth_date, p.time_zone,
       p.status, p.enrolled_at,
       (SELECT c.version FROM care_plan c WHERE c.patient_id = p.id) AS care_plan_version,
       p.care_team_id
FROM patient p
"""


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone, or PatientError naming the bad value."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PatientError(
            f"time zone {name!r} is not an IANA time zone name (e.g. Europe/Berlin)"
        ) from None


async def enrol(conn: Connection, patient: NewPatient) -> int:
    """Insert the patient; the caller owns the transaction (enrolment writes the plan too)."""
    time_zone(patient.time_zone)
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO patient (external_ref, given_name, family_name, birth_date,"
                " time_zone, enrolled_at) VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()))"
                " RETURNING id",
                [
                    patient.external_ref,
                    patient.given_name,
                    patient.family_name,
                    patient.birth_date,
                    patient.time_zone,
                    patient.enrolled_at,
                ],
            )
            row = await cursor.fetchone()
    except psycopg.errors.UniqueViolation:
        raise PatientConflict(
            f"a patient with external reference {patient.external_ref!r} is already enrolled"
        ) from None
    except psycopg.errors.CheckViolation:
        raise PatientError("the external reference must not be empty") from None
    assert row is not None
    return int(row[0])


async def get(conn: Connection, patient_id: int) -> PatientRecord:
    async with conn.cursor(row_factory=class_row(PatientRecord)) as cursor:
        await cursor.execute(_SELECT + " WHERE p.id = %s", [patient_id])
        record = await cursor.fetchone()
    if record is None:
        raise PatientNotFound(f"no patient with id {patient_id}")
    return record


async def by_ids(conn: Connection, patient_ids: Collection[int]) -> dict[int, PatientRecord]:
    """These patients, by id (ids of none are left out)."""
    async with conn.cursor(row_factory=class_row(PatientRecord)) as cursor:
        await cursor.execute(_SELECT + " WHERE p.id = ANY(%s)", [list(patient_ids)])
        return {record.id: record for record in await cursor.fetchall()}


async def list_patients(
    conn: Connection,
    after_id: int = 0,
    limit: int = 100,
    external_ref: str | None = None,
    care_team_ids: Collection[int] | None = None,
) -> list[PatientRecord]:
    """By id; `care_team_ids` limits the list to those teams' patients (None: all)."""
    teams = None if care_team_ids is None else list(care_team_ids)
    async with conn.cursor(row_factory=class_row(PatientRecord)) as cursor:
        await cursor.execute(
            _SELECT + " WHERE p.id > %s AND (%s::text IS NULL OR p.external_ref = %s)"
            " AND (%s::bigint[] IS NULL OR p.care_team_id = ANY(%s::bigint[]))"
            " ORDER BY p.id LIMIT %s",
            [after_id, external_ref, external_ref, teams, teams, limit],
        )
        return await cursor.fetchall()


async def set_care_team(
    conn: Connection, patient_id: int, care_team_id: int | None
) -> PatientRecord:
    """Put the patient in a care team's care (None: no team); the team must exist."""
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                "UPDATE patient SET care_team_id = %s WHERE id = %s", [care_team_id, patient_id]
            )
    except psycopg.errors.ForeignKeyViolation:
        raise PatientError(f"no care team with id {care_team_id}") from None
    if cursor.rowcount == 0:
        raise PatientNotFound(f"no patient with id {patient_id}")
    return await get(conn, patient_id)


PATIENT_STATUSES = ("active", "paused", "discharged")


async def set_status(conn: Connection, patient_id: int, status: str) -> PatientRecord:
    """Active patients' readings are checked against their plan; paused (in hospital,
    travelling) and discharged ones' are stored, and raise no alerts."""
    if status not in PATIENT_STATUSES:
        raise PatientError(f"status must be one of {', '.join(PATIENT_STATUSES)}, not {status!r}")
    async with conn.transaction():
        cursor = await conn.execute(
            "UPDATE patient SET status = %s WHERE id = %s", [status, patient_id]
        )
    if cursor.rowcount == 0:
        raise PatientNotFound(f"no patient with id {patient_id}")
    return await get(conn, patient_id)


@dataclass(frozen=True)
class ReminderSettings:
    """The patient's consent to adherence reminders by SMS, and where and when to send
    them (`after_days` None: the service's default)."""

    phone: str | None
    opted_in_at: datetime | None
    after_days: int | None
    quiet_hours_start: time | None
    quiet_hours_end: time | None


async def reminder_settings(conn: Connection, patient_id: int) -> ReminderSettings:
    async with conn.cursor(row_factory=class_row(ReminderSettings)) as cursor:
        await cursor.execute(
            "SELECT reminder_phone AS phone, reminders_opted_in_at AS opted_in_at,"
            " reminder_after_days AS after_days, quiet_hours_start, quiet_hours_end"
            " FROM patient WHERE id = %s",
            [patient_id],
        )
        settings = await cursor.fetchone()
    if settings is None:
        raise PatientNotFound(f"no patient with id {patient_id}")
    return settings


async def set_reminders(
    conn: Connection,
    patient_id: int,
    phone: str | None,
    opted_in: bool,
    after_days: int | None,
    quiet_hours: tuple[time, time] | None,
) -> ReminderSettings:
    """Opting in needs a number; the time of consent is kept while it lasts for that
    number (opting in again keeps the first time; a new number starts it anew)."""
    if opted_in and phone is None:
        raise PatientError("a patient opts in to SMS reminders with a phone number to send them to")
    start, end = quiet_hours or (None, None)
    async with conn.transaction():
        cursor = await conn.execute(
            "UPDATE patient SET reminder_phone = %s,"
            # A new number needs consent anew: its time is the time of this change.
            " reminders_opted_in_at = CASE WHEN %s THEN CASE WHEN reminder_phone = %s"
            " THEN coalesce(reminders_opted_in_at, now()) ELSE now() END END,"
            " reminder_after_days = %s, quiet_hours_start = %s, quiet_hours_end = %s"
            " WHERE id = %s",
            [phone, opted_in, phone, after_days, start, end, patient_id],
        )
    if cursor.rowcount == 0:
        raise PatientNotFound(f"no patient with id {patient_id}")
    return await reminder_settings(conn, patient_id)


async def opt_out_by_phone(conn: Connection, phone: str) -> list[int]:
    """A STOP replied from a reminder number ends the consent of every patient who gave
    it (a shared family phone, say); returns their ids."""
    cursor = await conn.execute(
        "UPDATE patient SET reminders_opted_in_at = NULL"
        " WHERE reminder_phone = %s AND reminders_opted_in_at IS NOT NULL RETURNING id",
        [phone],
    )
    return [patient_id for (patient_id,) in await cursor.fetchall()]
