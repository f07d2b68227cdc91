"""Care teams in the browser: the teams, a team's page with its members and its on-call
rota as a week (gaps in cover shown), and the staff page where admins give staff their
sign-in.

Every change goes through the API's own audited functions (`rpm.api.care_teams`:
`create_care_team`, `add_staff_member`, `add_team_member`, `put_on_call`,
`take_off_call`; `rpm.api.users.create_login`), so a page refuses exactly what the API
refuses: a care manager runs their own teams only. The forms post normally and come back
to the page saying what was done; a refusal comes back in the form, with what was entered.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from rpm.api.care_teams import (
    add_staff_member,
    add_team_member,
    create_care_team,
    put_on_call,
    take_off_call,
    team_in_view,
)
from rpm.api.deps import AuditTrail, Conn, status_of
from rpm.api.users import create_login
from rpm.auth import repository as users
from rpm.auth.access import Permission, Role
from rpm.auth.passwords import WeakPassword
from rpm.care_teams import registry, rota
from rpm.care_teams.registry import (
    TIERS,
    CareTeamError,
    CareTeamNotFound,
    NewStaff,
    StaffRecord,
)
from rpm.web import format as web_format
from rpm.web.deps import (
    PREFIX,
    AtField,
    BrowserAudit,
    BrowserCreatesCareTeams,
    BrowserManagesRota,
    BrowserManagesUsers,
    BrowserReadsCareTeams,
    BrowserUser,
    clock_of,
    form_instant,
    render,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

TEAMS = f"{PREFIX}/teams"
STAFF = f"{PREFIX}/staff"
STAFF_PAGE_SIZE = 100
# Everyone a team could have; a clinic's teams are tens of people.
MEMBER_CHOICES = 1000

# What a form post did, said on the page it comes back to (codes, not words, in the URL:
# a link cannot make the page say something it did not do).
DONE = {
    "team": "Care team created: add its members, then put them on call.",
    "member": "Added to the team: their sign-in sees the team's patients from now on.",
    "staff": "Staff member added to the team.",
    "shift": "Shift added to the rota.",
    "shift-deleted": "Shift deleted from the rota.",
    "shift-ended": "Shift ended now.",
    "login": "Sign-in given: tell them their username and password, and to change it.",
    "staff-added": "Staff member added: give them a sign-in, then a team.",
}

# The sign-in a staff member's role gets; physicians are reached by SMS and have none yet.
LOGIN_ROLES = {"nurse": Role.NURSE, "care_manager": Role.CARE_MANAGER, "admin": Role.ADMIN}


def team_path(team_id: int, **query: str) -> str:
    return f"{TEAMS}/{team_id}" + (f"?{urlencode(query)}" if query else "")


@router.get("/teams")
async def teams_page(
    request: Request, conn: Conn, user: BrowserReadsCareTeams, done: str = ""
) -> Response:
    """The user's teams (every team for admins), who is on call in each now, and for
    admins the form to create one."""
    return await _teams_page(request, conn, user, done)


async def _teams_page(
    request: Request,
    conn: Conn,
    user: BrowserUser,
    done: str = "",
    refusal: str | None = None,
    entered: str = "",
    status: int = 200,
) -> Response:
    now = datetime.now(UTC)
    teams = await registry.list_teams(conn, 0, MEMBER_CHOICES, user.principal.visible_teams())
    on_call = {team.id: await registry.on_call(conn, team.id, now) for team in teams}
    context = {
        "teams": teams,
        "on_call": on_call,
        "tiers": TIERS,
        "team_path": team_path,
        "done": DONE.get(done),
        "refusal": refusal,
        "entered": entered,
        "may_create": user.principal.may(Permission.CREATE_CARE_TEAMS),
    }
    return render(request, user, "teams.html", context, status)


@router.post("/teams")
async def create_team(
    request: Request,
    conn: Conn,
    user: BrowserCreatesCareTeams,
    record: BrowserAudit,
    name: Annotated[str, Form(max_length=200)],
) -> Response:
    name = name.strip()
    if not name:
        return await _teams_page(request, conn, user, refusal="a team needs a name", status=422)
    try:
        team = await create_care_team(conn, record, name)
    except CareTeamError as exc:
        return await _teams_page(
            request, conn, user, refusal=str(exc), entered=name, status=status_of(exc)
        )
    return RedirectResponse(team_path(team.id, done="team"), 303)


@router.get("/teams/{team_id}")
async def team_page(
    request: Request,
    conn: Conn,
    user: BrowserReadsCareTeams,
    record: BrowserAudit,
    team_id: int,
    week: str = "",
    done: str = "",
) -> Response:
    """The team's members and its rota for the week holding `week` (a date; default
    today), on the reader's clock."""
    return await _team_page(request, conn, user, record, team_id, week=week, done=done)


async def _team_page(
    request: Request,
    conn: Conn,
    user: BrowserUser,
    record: AuditTrail,
    team_id: int,
    *,
    week: str = "",
    done: str = "",
    refusal: tuple[str, str] | None = None,
    entered: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """`refusal`: (the form it concerns, why), shown in that form with what was entered."""
    team = await team_in_view(conn, user.principal, record, team_id)
    clock = clock_of(request, user)
    now = datetime.now(UTC)
    first_day = rota.week_start(_week_of(week, clock.local(now).date()))
    since = rota.local_midnight(first_day, clock.zone)
    until = rota.local_midnight(first_day + timedelta(days=rota.DAYS_IN_WEEK), clock.zone)
    shifts = await registry.shifts(conn, team_id, since, until)
    member_ids = {m.id for m in team.members}
    names = {m.id: m.display_name for m in team.members}
    manages = user.principal.may(Permission.MANAGE_ROTA)
    candidates: list[StaffRecord] = []
    if manages:
        everyone = await registry.list_staff(
            conn, 0, MEMBER_CHOICES, user.principal.visible_teams()
        )
        candidates = [s for s in everyone if s.id not in member_ids and s.active]
    logins = {}
    if user.principal.may(Permission.MANAGE_USERS):
        logins = await users.logins_of_staff(conn, member_ids)
    days = rota.week(shifts, list(TIERS), first_day, clock.zone)
    today = clock.local(now).date()
    start_day = max(first_day, today + timedelta(days=1))
    context = {
        "team": team,
        "on_call": await registry.on_call(conn, team_id, now),
        "tiers": TIERS,
        "days": days,
        "gaps": sum(day.gaps for day in days),
        "shifts": shifts,
        "names": names,
        "first_day": first_day,
        "last_day": first_day + timedelta(days=rota.DAYS_IN_WEEK - 1),
        "previous_week": team_path(team_id, week=str(first_day - timedelta(days=7))),
        "next_week": team_path(team_id, week=str(first_day + timedelta(days=7))),
        "this_week": team_path(team_id),
        "is_this_week": since <= now < until,
        "now": now,
        "manages": manages,
        "candidates": candidates,
        "logins": logins,
        "sees_logins": user.principal.may(Permission.MANAGE_USERS),
        "roles": registry.ROLES,
        "done": DONE.get(done),
        "refusal": refusal,
        "entered": entered or {},
        # A day shift on the first day of the week not yet begun (tomorrow's, this week).
        "default_start": clock.field(datetime.combine(start_day, time(8), clock.zone)),
        "default_end": clock.field(datetime.combine(start_day, time(20), clock.zone)),
        "week_value": str(first_day),
        "zones": web_format.ZONES,
    }
    return render(request, user, "team.html", context, status)


def _week_of(value: str, today: date) -> date:
    if not value.strip():
        return today
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise HTTPException(422, f"week {value!r} is not a date (YYYY-MM-DD)") from None


@router.post("/teams/{team_id}/members")
async def add_member(
    request: Request,
    conn: Conn,
    user: BrowserManagesRota,
    record: BrowserAudit,
    team_id: int,
    staff_id: Annotated[int, Form(ge=1)],
) -> Response:
    try:
        await add_team_member(conn, user.principal, record, team_id, staff_id)
    except CareTeamError as exc:
        return await _refused(request, conn, user, record, team_id, "member", exc, {})
    return RedirectResponse(team_path(team_id, done="member"), 303)


Text = Annotated[str, Form(max_length=200)]


@router.post("/teams/{team_id}/staff")
async def add_staff(
    request: Request,
    conn: Conn,
    user: BrowserManagesRota,
    record: BrowserAudit,
    team_id: int,
    username: Text,
    display_name: Text,
    role: Text,
    phone: Text = "",
    time_zone: Text = "",
) -> Response:
    """A new staff member, straight into this team (one transaction: a care manager could
    not find a member of no team again)."""
    entered = {
        "username": username.strip(),
        "display_name": display_name.strip(),
        "role": role,
        "phone": phone.strip(),
        "time_zone": time_zone.strip(),
    }
    new = NewStaff(
        entered["username"],
        entered["display_name"],
        role,
        entered["phone"] or None,
        entered["time_zone"] or clock_of(request, user).name,
    )
    try:
        async with conn.transaction():
            added = await add_staff_member(conn, record, new)
            await add_team_member(conn, user.principal, record, team_id, added.id)
    except CareTeamError as exc:
        return await _refused(request, conn, user, record, team_id, "staff", exc, entered)
    return RedirectResponse(team_path(team_id, done="staff"), 303)


@router.post("/teams/{team_id}/shifts")
async def add_shift(
    request: Request,
    conn: Conn,
    user: BrowserManagesRota,
    record: BrowserAudit,
    team_id: int,
    staff_id: Annotated[int, Form(ge=1)],
    tier: Annotated[int, Form(ge=1, le=3)],
    starts_at: AtField,
    ends_at: AtField,
) -> Response:
    """A shift, its times on the reader's clock; back to the week it starts in."""
    entered = {"staff_id": str(staff_id), "tier": str(tier), "starts_at": starts_at}
    entered["ends_at"] = ends_at
    clock = clock_of(request, user)
    starts = form_instant(starts_at, "the start", clock)
    ends = form_instant(ends_at, "the end", clock)
    if starts is None or ends is None:
        refusal = CareTeamError("a shift needs a start and an end")
        return await _refused(request, conn, user, record, team_id, "shift", refusal, entered)
    try:
        await put_on_call(conn, user.principal, record, team_id, staff_id, tier, starts, ends)
    except CareTeamError as exc:
        return await _refused(request, conn, user, record, team_id, "shift", exc, entered)
    week = str(clock.local(starts).date())
    return RedirectResponse(team_path(team_id, week=week, done="shift"), 303)


@router.post("/teams/{team_id}/shifts/{shift_id}/remove")
async def remove_shift(
    request: Request,
    conn: Conn,
    user: BrowserManagesRota,
    record: BrowserAudit,
    team_id: int,
    shift_id: int,
    week: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        ended = await take_off_call(conn, user.principal, record, team_id, shift_id)
    except CareTeamError as exc:
        return await _refused(request, conn, user, record, team_id, "rota", exc, {}, week)
    done = "shift-deleted" if ended is None else "shift-ended"
    return RedirectResponse(team_path(team_id, week=week, done=done), 303)


async def _refused(
    request: Request,
    conn: Conn,
    user: BrowserUser,
    record: AuditTrail,
    team_id: int,
    form: str,
    exc: CareTeamError,
    entered: dict[str, str],
    week: str = "",
) -> Response:
    """The team's page, with the refusal in the form it concerns; no such team (or
    another's, for a care manager) is the 404 page, as for a page of it."""
    if isinstance(exc, CareTeamNotFound):
        raise exc
    if "starts_at" in entered and not week:
        week = entered["starts_at"][:10]
    return await _team_page(
        request,
        conn,
        user,
        record,
        team_id,
        week=week,
        refusal=(form, str(exc)),
        entered=entered,
        status=status_of(exc),
    )


@router.get("/staff")
async def staff_page(
    request: Request, conn: Conn, user: BrowserManagesUsers, after: int = 0, done: str = ""
) -> Response:
    """Every staff member, by id, with their sign-in or a form to give one."""
    return await _staff_page(request, conn, user, after, done)


async def _staff_page(
    request: Request,
    conn: Conn,
    user: BrowserUser,
    after: int = 0,
    done: str = "",
    refusal: tuple[str, str] | None = None,
    entered: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    page = await registry.list_staff(conn, after, STAFF_PAGE_SIZE + 1)
    more = len(page) > STAFF_PAGE_SIZE
    page = page[:STAFF_PAGE_SIZE]
    context: dict[str, Any] = {
        "staff": page,
        "logins": await users.logins_of_staff(conn, [s.id for s in page]),
        "login_roles": LOGIN_ROLES,
        "roles": registry.ROLES,
        "after": after,
        "next_page": f"{STAFF}?after={page[-1].id}" if more else None,
        "first_page": STAFF,
        "done": DONE.get(done),
        "refusal": refusal,
        "entered": entered or {},
        "zones": web_format.ZONES,
    }
    return render(request, user, "staff.html", context, status)


@router.post("/staff")
async def add_staff_only(
    request: Request,
    conn: Conn,
    user: BrowserManagesUsers,
    record: BrowserAudit,
    username: Text,
    display_name: Text,
    role: Text,
    phone: Text = "",
    time_zone: Text = "",
) -> Response:
    """A staff member in no team yet (an admin gives them a sign-in, then a team)."""
    entered = {
        "username": username.strip(),
        "display_name": display_name.strip(),
        "role": role,
        "phone": phone.strip(),
        "time_zone": time_zone.strip(),
    }
    new = NewStaff(
        entered["username"],
        entered["display_name"],
        role,
        entered["phone"] or None,
        entered["time_zone"] or clock_of(request, user).name,
    )
    try:
        await add_staff_member(conn, record, new)
    except CareTeamError as exc:
        return await _staff_page(
            request, conn, user, refusal=("staff", str(exc)), entered=entered,
            status=status_of(exc),
        )  # fmt: skip
    return RedirectResponse(f"{STAFF}?done=staff-added", 303)


@router.post("/staff/{staff_id}/login")
async def give_login(
    request: Request,
    conn: Conn,
    user: BrowserManagesUsers,
    record: BrowserAudit,
    staff_id: int,
    password: Annotated[str, Form(max_length=1024)],
    after: Annotated[int, Form(ge=0)] = 0,
) -> Response:
    """A sign-in for the staff member: their username, the role their staff record says."""
    member = await registry.staff_member(conn, staff_id)
    role = LOGIN_ROLES.get(member.role)
    if role is None:
        raise HTTPException(422, f"a {member.role} has no sign-in: they are reached by SMS")
    try:
        new = users.NewUser(member.username, role, member.id)
        await create_login(conn, user.principal, record, new, password)
    except (users.UserError, users.UserConflict, WeakPassword) as exc:
        return await _staff_page(
            request, conn, user, after, refusal=(f"login-{staff_id}", str(exc)),
            status=status_of(exc),
        )  # fmt: skip
    return RedirectResponse(f"{STAFF}?after={after}&done=login", 303)
