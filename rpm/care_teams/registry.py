"""Care teams' SQL: staff, teams and their members, on-call shifts, and who is on call.

Phone numbers are staff data: stored and returned to the API, never logged (logs carry
staff ids only).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg import AsyncConnection, errors
from psycopg.rows import TupleRow, class_row

from rpm.alerts.routing import Recipient

Connection = AsyncConnection[TupleRow]

ROLES = ("nurse", "care_manager", "physician", "admin")
TIERS = {1: "on-call nurse", 2: "backup nurse", 3: "physician"}


class CareTeamError(Exception):
    """A change that cannot be made, with a message saying why."""


class CareTeamNotFound(CareTeamError):
    pass


class CareTeamConflict(CareTeamError):
    pass


@dataclass(frozen=True)
class NewStaff:
    username: str
    display_name: str
    role: str
    phone: str | None = None
    time_zone: str = "UTC"
    quiet_hours_start: time | None = None
    quiet_hours_end: time | None = None


@dataclass(frozen=True)
class StaffRecord:
    id: int
    username: str
    display_name: str
    role: str
    phone: str | None
    time_zone: str
    quiet_hours_start: time | None
    quiet_hours_end: time | None
    active: bool


@dataclass(frozen=True)
class CareTeamRecord:
    id: int
    name: str
    members: list[StaffRecord]


@dataclass(frozen=True)
class ShiftRecord:
    id: int
    care_team_id: int
    staff_id: int
    tier: int
    starts_at: datetime
    ends_at: datetime


_STAFF = (
    "SELECT s.id, s.username, s.display_name, s.role, s.phone, s.time_zone,"
    " s.quiet_hours_start, s.quiet_hours_end, s.active FROM staff s"
)


async def add_staff(conn: Connection, staff: NewStaff) -> StaffRecord:
    try:
        ZoneInfo(staff.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CareTeamError(
            f"time zone {staff.time_zone!r} is not an IANA time zone name (e.g. America/Chicago)"
        ) from None
    if (staff.quiet_hours_start is None) != (staff.quiet_hours_end is None):
        raise CareTeamError("quiet hours need both a start and an end")
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO staff (username, display_name, role, phone, time_zone,"
                " quiet_hours_start, quiet_hours_end) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " RETURNING id",
                [
                    staff.username,
                    staff.display_name,
                    staff.role,
                    staff.phone,
                    staff.time_zone,
                    staff.quiet_hours_start,
                    staff.quiet_hours_end,
                ],
            )
            row = await cursor.fetchone()
    except errors.UniqueViolation as exc:
        what = "phone number" if "phone" in str(exc) else "username"
        raise CareTeamConflict(f"another staff member already has that {what}") from None
    except errors.CheckViolation as exc:
        raise CareTeamError(_check_message(exc)) from None
    assert row is not None
    return await staff_member(conn, int(row[0]))


def _check_message(exc: psycopg.Error) -> str:
    constraint = exc.diag.constraint_name or ""
    if "phone" in constraint:
        return "the phone number must be in E.164 form, e.g. +15555550123"
    if "username" in constraint:
        return "a username is 1 to 64 lower-case letters, digits, '.', '_' or '-'"
    if "role" in constraint:
        return f"the role must be one of: {', '.join(ROLES)}"
    return f"the staff member is not valid ({constraint})"


async def staff_member(conn: Connection, staff_id: int) -> StaffRecord:
    async with conn.cursor(row_factory=class_row(StaffRecord)) as cursor:
        await cursor.execute(_STAFF + " WHERE s.id = %s", [staff_id])
        record = await cursor.fetchone()
    if record is None:
        raise CareTeamNotFound(f"no staff member with id {staff_id}")
    return record


async def staff_by_username(conn: Connection, username: str) -> StaffRecord | None:
    async with conn.cursor(row_factory=class_row(StaffRecord)) as cursor:
        await cursor.execute(_STAFF + " WHERE s.username = %s", [username])
        return await cursor.fetchone()


async def staff_by_phone(conn: Connection, phone: str) -> StaffRecord | None:
    """The active member with this number, if any (the only senders an SMS reply is taken
    from)."""
    async with conn.cursor(row_factory=class_row(StaffRecord)) as cursor:
        await cursor.execute(_STAFF + " WHERE s.phone = %s AND s.active", [phone])
        return await cursor.fetchone()


async def list_staff(
    conn: Connection,
    after_id: int = 0,
    limit: int = 100,
    team_ids: Collection[int] | None = None,
) -> list[StaffRecord]:
    """A page of staff by id: the members of these teams (None: everyone)."""
    teams = None if team_ids is None else list(team_ids)
    async with conn.cursor(row_factory=class_row(StaffRecord)) as cursor:
        await cursor.execute(
            _STAFF  # noqa: S608 (constants and placeholders only)
            + " WHERE s.id > %s AND (%s::bigint[] IS NULL OR s.id IN"
            " (SELECT m.staff_id FROM care_team_member m WHERE m.care_team_id = ANY(%s)))"
            " ORDER BY s.id LIMIT %s",
            [after_id, teams, teams, limit],
        )
        return await cursor.fetchall()


async def create_team(conn: Connection, name: str) -> CareTeamRecord:
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO care_team (name) VALUES (%s) RETURNING id", [name]
            )
            row = await cursor.fetchone()
    except errors.UniqueViolation:
        raise CareTeamConflict(f"a care team named {name!r} exists already") from None
    assert row is not None
    return await team(conn, int(row[0]))


async def team(conn: Connection, team_id: int) -> CareTeamRecord:
    teams = await _teams(conn, [team_id], 0, None)
    if not teams:
        raise CareTeamNotFound(f"no care team with id {team_id}")
    return teams[0]


async def list_teams(
    conn: Connection,
    after_id: int = 0,
    limit: int = 100,
    team_ids: Collection[int] | None = None,
) -> list[CareTeamRecord]:
    """A page of teams by id, of these (None: all), with their members."""
    return await _teams(conn, team_ids, after_id, limit)


async def teams(conn: Connection, team_ids: Collection[int]) -> list[CareTeamRecord]:
    """These teams, with their members (ids of none are left out)."""
    return await _teams(conn, team_ids, 0, None)


async def team_by_name(conn: Connection, name: str) -> CareTeamRecord | None:
    cursor = await conn.execute("SELECT id FROM care_team WHERE name = %s", [name])
    row = await cursor.fetchone()
    return None if row is None else await team(conn, row[0])


async def _teams(
    conn: Connection, team_ids: Collection[int] | None, after_id: int, limit: int | None
) -> list[CareTeamRecord]:
    """Teams by id (of these; None: all), with their members: two queries, whatever the
    count."""
    ids = None if team_ids is None else list(team_ids)
    cursor = await conn.execute(
        "SELECT id, name FROM care_team WHERE (%s::bigint[] IS NULL OR id = ANY(%s))"
        " AND id > %s ORDER BY id LIMIT %s",
        [ids, ids, after_id, limit],
    )
    teams = await cursor.fetchall()
    members: dict[int, list[StaffRecord]] = {team_id: [] for team_id, _ in teams}
    cursor = await conn.execute(
        "SELECT m.care_team_id, s.id FROM care_team_member m JOIN staff s ON s.id = m.staff_id"
        " WHERE m.care_team_id = ANY(%s) ORDER BY s.id",
        [list(members)],
    )
    rows = await cursor.fetchall()
    staff = await staff_by_ids(conn, {staff_id for _, staff_id in rows})
    for team_id, staff_id in rows:
        members[team_id].append(staff[staff_id])
    return [CareTeamRecord(team_id, name, members[team_id]) for team_id, name in teams]


async def staff_by_ids(conn: Connection, staff_ids: Collection[int]) -> dict[int, StaffRecord]:
    """These staff members, by id (ids of none are left out)."""
    async with conn.cursor(row_factory=class_row(StaffRecord)) as cursor:
        await cursor.execute(_STAFF + " WHERE s.id = ANY(%s)", [list(staff_ids)])
        return {record.id: record for record in await cursor.fetchall()}


async def add_member(conn: Connection, team_id: int, staff_id: int) -> CareTeamRecord:
    await team(conn, team_id)
    await staff_member(conn, staff_id)
    await conn.execute(
        "INSERT INTO care_team_member (care_team_id, staff_id) VALUES (%s, %s)"
        " ON CONFLICT DO NOTHING",
        [team_id, staff_id],
    )
    return await team(conn, team_id)


async def is_member(conn: Connection, team_id: int, staff_id: int) -> bool:
    cursor = await conn.execute(
        "SELECT 1 FROM care_team_member WHERE care_team_id = %s AND staff_id = %s",
        [team_id, staff_id],
    )
    return await cursor.fetchone() is not None


async def add_shift(
    conn: Connection, team_id: int, staff_id: int, tier: int, starts_at: datetime, ends_at: datetime
) -> ShiftRecord:
    if tier not in TIERS:
        raise CareTeamError(f"the tier must be one of {', '.join(map(str, TIERS))}")
    if ends_at <= starts_at:
        raise CareTeamError("a shift must end after it starts")
    if not await is_member(conn, team_id, staff_id):
        raise CareTeamError(f"staff member {staff_id} is not a member of care team {team_id}")
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO on_call_shift (care_team_id, staff_id, tier, starts_at, ends_at)"
                " VALUES (%s, %s, %s, %s, %s)"
                " RETURNING id, care_team_id, staff_id, tier, starts_at, ends_at",
                [team_id, staff_id, tier, starts_at, ends_at],
            )
            row = await cursor.fetchone()
    except errors.ExclusionViolation:
        raise CareTeamConflict(
            f"the shift overlaps another {TIERS[tier]} shift of care team {team_id}"
        ) from None
    assert row is not None
    return ShiftRecord(*row)


async def shift(conn: Connection, team_id: int, shift_id: int) -> ShiftRecord:
    async with conn.cursor(row_factory=class_row(ShiftRecord)) as cursor:
        await cursor.execute(
            "SELECT id, care_team_id, staff_id, tier, starts_at, ends_at FROM on_call_shift"
            " WHERE care_team_id = %s AND id = %s",
            [team_id, shift_id],
        )
        found = await cursor.fetchone()
    if found is None:
        raise CareTeamNotFound(f"care team {team_id} has no shift {shift_id}")
    return found


async def take_off_rota(
    conn: Connection, team_id: int, shift_id: int, now: datetime
) -> ShiftRecord | None:
    """Take a shift off the rota: one yet to start is deleted (None back); one under way
    ends now (the shortened shift back). One that is over stays: it is the record of who
    was on call when an alert went out."""
    taken = await shift(conn, team_id, shift_id)
    if taken.ends_at <= now:
        raise CareTeamConflict(
            f"shift {shift_id} is over: it stays as the record of who was on call then"
        )
    if taken.starts_at >= now:
        await conn.execute("DELETE FROM on_call_shift WHERE id = %s", [shift_id])
        return None
    async with conn.cursor(row_factory=class_row(ShiftRecord)) as cursor:
        await cursor.execute(
            "UPDATE on_call_shift SET ends_at = %s WHERE id = %s"
            " RETURNING id, care_team_id, staff_id, tier, starts_at, ends_at",
            [now, shift_id],
        )
        ended = await cursor.fetchone()
    assert ended is not None
    return ended


async def shifts(
    conn: Connection, team_id: int, since: datetime, until: datetime
) -> list[ShiftRecord]:
    async with conn.cursor(row_factory=class_row(ShiftRecord)) as cursor:
        await cursor.execute(
            "SELECT id, care_team_id, staff_id, tier, starts_at, ends_at FROM on_call_shift"
            " WHERE care_team_id = %s AND during && tstzrange(%s, %s)"
            " ORDER BY starts_at, tier",
            [team_id, since, until],
        )
        return await cursor.fetchall()


async def on_call(conn: Connection, team_id: int, at: datetime) -> dict[int, StaffRecord]:
    """Who is on call at that moment, by tier (tiers without a shift are absent)."""
    cursor = await conn.execute(
        "SELECT o.tier, o.staff_id FROM on_call_shift o JOIN staff s ON s.id = o.staff_id"
        " WHERE o.care_team_id = %s AND o.during @> %s::timestamptz AND s.active",
        [team_id, at],
    )
    shifts = await cursor.fetchall()
    staff = await staff_by_ids(conn, {staff_id for _, staff_id in shifts})
    return {tier: staff[staff_id] for tier, staff_id in shifts}


async def on_call_for_patients(
    conn: Connection, patient_ids: Iterable[int], at: datetime
) -> dict[int, dict[int, Recipient]]:
    """Per patient, who of the patient's care team is on call then, by tier; only members
    with a phone. Patients without a team or anyone on call are absent."""
    cursor = await conn.execute(
        "SELECT p.id, o.tier, s.id, s.phone, s.time_zone, s.quiet_hours_start,"
        " s.quiet_hours_end"
        " FROM patient p JOIN on_call_shift o ON o.care_team_id = p.care_team_id"
        " JOIN staff s ON s.id = o.staff_id"
        " WHERE p.id = ANY(%s) AND o.during @> %s::timestamptz AND s.active"
        " AND s.phone IS NOT NULL",
        [list(patient_ids), at],
    )
    on_call: dict[int, dict[int, Recipient]] = {}
    for patient_id, tier, *recipient in await cursor.fetchall():
        on_call.setdefault(patient_id, {})[tier] = Recipient(*recipient)
    return on_call
