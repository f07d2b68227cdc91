"""The SQL of hand-offs between shifts and disciplines: notes on a patient (table
`patient_note`, append-only) and the care-team member who owns the patient's follow-up
(`patient.follow_up_staff_id`).

A note's text is patient data: it is stored and shown to the care team, never logged and
never put in an SMS.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

from rpm.patients.registry import PatientError, PatientNotFound

Connection = AsyncConnection[TupleRow]

MAX_NOTE_LENGTH = 4000


@dataclass(frozen=True)
class PatientNote:
    id: int
    patient_id: int
    staff_id: int
    staff_name: str
    staff_role: str
    body: str
    written_at: datetime
    written_by: str


_NOTE = """
SELECT n.id, n.patient_id, n.staff_id, s.display_name AS staff_name, n.staff_role, n.body,
       n.written_at, n.written_by
FROM patient_note n JOIN staff s ON s.id = n.staff_id
"""


async def add_note(
    conn: Connection, patient_id: int, staff_id: int, body: str, written_by: str
) -> PatientNote:
    """The note, as the author's staff record and role say now."""
    text = body.strip()
    if not text:
        raise PatientError("a note needs some text")
    if len(text) > MAX_NOTE_LENGTH:
        raise PatientError(
            f"a note is at most {MAX_NOTE_LENGTH:,} characters ({len(text):,} given)"
        )
    try:
        cursor = await conn.execute(
            "INSERT INTO patient_note (patient_id, staff_id, staff_role, body, written_by)"
            " SELECT %s, s.id, s.role, %s, %s FROM staff s WHERE s.id = %s RETURNING id",
            [patient_id, text, written_by, staff_id],
        )
    except psycopg.errors.ForeignKeyViolation:
        raise PatientNotFound(f"no patient with id {patient_id}") from None
    row = await cursor.fetchone()
    if row is None:
        raise PatientError(f"no staff member with id {staff_id}")
    return (await notes(conn, patient_id, note_id=int(row[0])))[0]


async def notes(
    conn: Connection,
    patient_id: int,
    before_id: int | None = None,
    limit: int = 50,
    note_id: int | None = None,
) -> list[PatientNote]:
    """The patient's notes, newest first; `before_id` pages on (the last id shown)."""
    async with conn.cursor(row_factory=class_row(PatientNote)) as cursor:
        await cursor.execute(
            _NOTE + " WHERE n.patient_id = %(patient)s"
            " AND (%(before)s::bigint IS NULL OR n.id < %(before)s)"
            " AND (%(note)s::bigint IS NULL OR n.id = %(note)s)"
            " ORDER BY n.written_at DESC, n.id DESC LIMIT %(limit)s",
            {"patient": patient_id, "before": before_id, "note": note_id, "limit": limit},
        )
        return await cursor.fetchall()


@dataclass(frozen=True)
class FollowUp:
    """Who owns the patient's follow-up (None: nobody yet)."""

    patient_id: int
    staff_id: int | None
    staff_name: str | None


async def follow_up(conn: Connection, patient_id: int) -> FollowUp:
    cursor = await conn.execute(
        "SELECT p.id, s.id, s.display_name FROM patient p"
        " LEFT JOIN staff s ON s.id = p.follow_up_staff_id WHERE p.id = %s",
        [patient_id],
    )
    row = await cursor.fetchone()
    if row is None:
        raise PatientNotFound(f"no patient with id {patient_id}")
    return FollowUp(*row)


async def set_follow_up(conn: Connection, patient_id: int, staff_id: int | None) -> FollowUp:
    """Give the follow-up to a member of the patient's care team (None: to nobody)."""
    if staff_id is not None:
        cursor = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM patient p JOIN care_team_member m"
            " ON m.care_team_id = p.care_team_id JOIN staff s ON s.id = m.staff_id"
            " WHERE p.id = %s AND s.id = %s AND s.active)",
            [patient_id, staff_id],
        )
        row = await cursor.fetchone()
        if not (row and row[0]):
            raise PatientError(
                f"staff member {staff_id} is not an active member of patient {patient_id}'s"
                " care team: only the team follows its patients up"
            )
    cursor = await conn.execute(
        "UPDATE patient SET follow_up_staff_id = %s WHERE id = %s RETURNING id",
        [staff_id, patient_id],
    )
    if await cursor.fetchone() is None:
        raise PatientNotFound(f"no patient with id {patient_id}")
    return await follow_up(conn, patient_id)


async def follow_ups(conn: Connection, patient_ids: Collection[int]) -> dict[int, str]:
    """Who follows each of these patients up (the display name), for those with someone."""
    cursor = await conn.execute(
        "SELECT p.id, s.display_name FROM patient p JOIN staff s ON s.id = p.follow_up_staff_id"
        " WHERE p.id = ANY(%s)",
        [list(patient_ids)],
    )
    return dict(await cursor.fetchall())
