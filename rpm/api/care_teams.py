"""Care teams over HTTP: staff, teams and their members, and the on-call schedule by
escalation tier (1: on-call nurse, 2: backup nurse, 3: physician).

Admins create teams; care managers and admins add staff and run a team's members and
rota, a care manager only their own teams' (another team is 404, as if there were none).
The changes are functions the web UI's team pages call too (`rpm.web.teams`), so both
refuse and audit alike.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from rpm.api import problems
from rpm.api.deps import (
    Audit,
    AuditTrail,
    Conn,
    CreatesCareTeams,
    ManagesRota,
    PageLimit,
    ReadsCareTeams,
    RequestBody,
)
from rpm.api.values import Instant, LocalTime
from rpm.auth.access import Principal
from rpm.care_teams import registry
from rpm.care_teams.registry import CareTeamRecord, Connection, NewStaff, ShiftRecord, StaffRecord

router = APIRouter(
    prefix="/api/v1",
    tags=["care teams"],
    responses=problems.errors(
        {
            404: "No such care team or staff member",
            409: "A conflict: a taken name or number, an overlapping shift",
        }
    ),
)


class StaffIn(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "username": "nurse-1",
                    "display_name": "Nurse One",
                    "role": "nurse",
                    "phone": "+15555550101",
                    "time_zone": "America/Chicago",
                    "quiet_hours_start": "22:00:00",
                    "quiet_hours_end": "07:00:00",
                }
            ]
        }
    )

    username: str = Field(examples=["nurse-1"])
    display_name: str = Field(min_length=1, max_length=200, examples=["Nurse One"])
    role: Literal["nurse", "care_manager", "physician", "admin"]
    phone: str | None = Field(None, description="E.164", examples=["+15555550101"])
    time_zone: str = Field("UTC", description="IANA name: the member's clock, for quiet hours")
    quiet_hours_start: LocalTime | None = Field(None, description="Local; no SMS but critical")
    quiet_hours_end: LocalTime | None = None


@router.post("/staff", status_code=status.HTTP_201_CREATED, summary="Add a staff member")
async def add_staff(conn: Conn, user: ManagesRota, record: Audit, staff: StaffIn) -> StaffRecord:
    return await add_staff_member(conn, record, NewStaff(**staff.model_dump()))


async def add_staff_member(conn: Connection, record: AuditTrail, staff: NewStaff) -> StaffRecord:
    added = await registry.add_staff(conn, staff)
    await record("add", "staff", added.id)
    return added


@router.get("/staff", summary="Staff, by id: the members of your care teams, or all for admins")
async def list_staff(
    conn: Conn,
    user: ReadsCareTeams,
    after: Annotated[int, Query(ge=0, description="The last id of the previous page")] = 0,
    limit: PageLimit = 100,
) -> list[StaffRecord]:
    return await registry.list_staff(conn, after, limit, user.visible_teams())


class TeamIn(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Cardiology RPM"}]})

    name: str = Field(min_length=1, max_length=200, examples=["Cardiology RPM"])


@router.post(
    "/care-teams",
    status_code=status.HTTP_201_CREATED,
    summary="Create a care team",
)
async def create_team(
    conn: Conn, admin: CreatesCareTeams, record: Audit, team: TeamIn
) -> CareTeamRecord:
    return await create_care_team(conn, record, team.name)


async def create_care_team(conn: Connection, record: AuditTrail, name: str) -> CareTeamRecord:
    created = await registry.create_team(conn, name)
    await record("create", "care_team", created.id)
    return created


@router.get("/care-teams", summary="Care teams with their members, by id: yours, or all for admins")
async def list_teams(
    conn: Conn,
    user: ReadsCareTeams,
    after: Annotated[int, Query(ge=0, description="The last id of the previous page")] = 0,
    limit: PageLimit = 100,
) -> list[CareTeamRecord]:
    return await registry.list_teams(conn, after, limit, user.visible_teams())


async def team_in_view(
    conn: Connection, user: Principal, record: AuditTrail, team_id: int
) -> CareTeamRecord:
    """The team, if the user is in it (or sees every team); else 404 as for none, the
    attempt audited."""
    if not user.sees_team(team_id):
        await record("denied", "care_team", team_id, status=404)
        raise registry.CareTeamNotFound(f"care team {team_id} is not one of yours")
    return await registry.team(conn, team_id)


class TeamDetail(BaseModel):
    team: CareTeamRecord
    # Tier -> the member on call now.
    on_call: dict[int, StaffRecord]


@router.get("/care-teams/{team_id}", summary="A care team, and who is on call now")
async def get_team(conn: Conn, user: ReadsCareTeams, record: Audit, team_id: int) -> TeamDetail:
    team = await team_in_view(conn, user, record, team_id)
    return TeamDetail(team=team, on_call=await registry.on_call(conn, team_id, datetime.now(UTC)))


@router.put(
    "/care-teams/{team_id}/members/{staff_id}",
    summary="Add a staff member to the team",
)
async def add_member(
    conn: Conn, user: ManagesRota, record: Audit, team_id: int, staff_id: int
) -> CareTeamRecord:
    return await add_team_member(conn, user, record, team_id, staff_id)


async def add_team_member(
    conn: Connection, user: Principal, record: AuditTrail, team_id: int, staff_id: int
) -> CareTeamRecord:
    # Membership is access: the member's login sees the team's patients from now on.
    await team_in_view(conn, user, record, team_id)
    async with conn.transaction():
        team = await registry.add_member(conn, team_id, staff_id)
    await record("add_member", "care_team", team_id, details={"staff_id": staff_id})
    return team


class ShiftIn(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "staff_id": 1,
                    "tier": 1,
                    "starts_at": "2025-03-03T08:00:00-06:00",
                    "ends_at": "2025-03-03T20:00:00-06:00",
                }
            ]
        }
    )

    staff_id: int
    tier: int = Field(ge=1, le=3, description="1: on-call nurse, 2: backup nurse, 3: physician")
    starts_at: Instant
    ends_at: Instant


@router.post(
    "/care-teams/{team_id}/shifts",
    status_code=status.HTTP_201_CREATED,
    summary="Put a member on call for a period, at a tier",
)
async def add_shift(
    conn: Conn, user: ManagesRota, record: Audit, team_id: int, shift: ShiftIn
) -> ShiftRecord:
    return await put_on_call(
        conn, user, record, team_id, shift.staff_id, shift.tier, shift.starts_at, shift.ends_at
    )


async def put_on_call(
    conn: Connection,
    user: Principal,
    record: AuditTrail,
    team_id: int,
    staff_id: int,
    tier: int,
    starts_at: datetime,
    ends_at: datetime,
) -> ShiftRecord:
    await team_in_view(conn, user, record, team_id)
    added = await registry.add_shift(conn, team_id, staff_id, tier, starts_at, ends_at)
    await record("add_shift", "care_team", team_id, details={"shift_id": added.id})
    return added


class ShiftTakenOff(BaseModel):
    deleted: bool = Field(description="true: the shift had not started, and is gone")
    shift: ShiftRecord | None = Field(description="The shift under way, now ending now")


@router.delete(
    "/care-teams/{team_id}/shifts/{shift_id}",
    summary="Take a shift off the rota: deleted if yet to start, ended now if under way",
    description="A shift that is over stays (409): it is the record of who was on call.",
)
async def remove_shift(
    conn: Conn, user: ManagesRota, record: Audit, team_id: int, shift_id: int
) -> ShiftTakenOff:
    ended = await take_off_call(conn, user, record, team_id, shift_id)
    return ShiftTakenOff(deleted=ended is None, shift=ended)


async def take_off_call(
    conn: Connection, user: Principal, record: AuditTrail, team_id: int, shift_id: int
) -> ShiftRecord | None:
    """The shift off the rota (`registry.take_off_rota`), audited; the shortened shift, or
    None when it was deleted."""
    await team_in_view(conn, user, record, team_id)
    ended = await registry.take_off_rota(conn, team_id, shift_id, datetime.now(UTC))
    details = {"shift_id": shift_id, "deleted": ended is None}
    await record("remove_shift", "care_team", team_id, details=details)
    return ended


@router.get("/care-teams/{team_id}/shifts", summary="The team's shifts in a period")
async def list_shifts(
    conn: Conn,
    user: ReadsCareTeams,
    record: Audit,
    team_id: int,
    since: Instant | None = None,
    until: Instant | None = None,
) -> list[ShiftRecord]:
    await team_in_view(conn, user, record, team_id)
    since = since or datetime.now(UTC)
    until = until or since + min(timedelta(days=7), datetime.max.replace(tzinfo=UTC) - since)
    if until < since:
        raise HTTPException(422, "`until` must not be before `since` (default: now)")
    return await registry.shifts(conn, team_id, since, until)
