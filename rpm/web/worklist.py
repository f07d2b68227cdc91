"""The worklist page: the unresolved alerts of the user's care teams, most severe first,
with filters and paging, and one-click acknowledge, assign and resolve.

Reads and actions go through the API's own `read_worklist` and `act_on_alert`, so the
page sees, refuses and audits exactly as `/api/v1/alerts` does. Filters and paging are
plain links and GET forms (the address says what is shown); the actions post with htmx
and get their row back, or the row saying why not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import psycopg
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import PoolTimeout

from rpm.alerts import repository as alerts
from rpm.alerts.changes import AlertChanges, Wake
from rpm.alerts.lifecycle import Acknowledge, Assign, Command, InvalidTransition, Outcome, Resolve
from rpm.alerts.repository import AlertRecord, WorklistFilter
from rpm.api.alerts import act_on_alert, read_worklist
from rpm.api.deps import AuditTrail, Conn, status_of
from rpm.auth.access import Permission
from rpm.care_teams import registry as care_teams
from rpm.care_teams.registry import CareTeamError, StaffRecord
from rpm.patients import registry as patients
from rpm.rules.plan import Severity
from rpm.web.deps import (
    PREFIX,
    BrowserActsOnAlerts,
    BrowserAudit,
    BrowserReadsPatients,
    BrowserUser,
    is_htmx,
    local_page,
    render,
    session_ended,
    streaming_user,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZE = 25
WORKLIST = f"{PREFIX}/worklist"
# Most severe first, as the list is.
SEVERITIES = sorted(Severity, key=lambda s: -s.rank)


@dataclass(frozen=True)
class WorklistView:
    """What the address asks to be shown: filters and the page."""

    severity: Severity | None = None
    # Assigned to the signed-in user's staff record.
    mine: bool = False
    after: str | None = None

    def url(self, path: str = "", after: str | None = None) -> str:
        """The worklist's `path` (the page, or its list alone) with these filters, at
        another page (`after`; None: the first)."""
        params = {"severity": self.severity.value if self.severity else None}
        params |= {"mine": "true" if self.mine else None, "after": after}
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return f"{WORKLIST}{path}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class WorklistRow:
    alert: AlertRecord
    patient_ref: str
    assignee: str | None
    # Whom the alert can go to: the active members of the patient's care team but its
    # assignee (none while the patient has no team: the list would be every staff member).
    assignable: list[StaffRecord]


def _view(severity: str, mine: bool, after: str | None) -> WorklistView:
    # The filter form sends severity="" for "any".
    return WorklistView(Severity(severity) if severity else None, mine, after or None)


SeverityChoice = Annotated[str, Query(pattern=f"^({'|'.join(Severity)})?$")]


@router.get("/worklist")
async def worklist_page(
    request: Request,
    conn: Conn,
    user: BrowserReadsPatients,
    record: BrowserAudit,
    severity: SeverityChoice = "",
    mine: bool = False,
    after: str | None = None,
) -> Response:
    view = _view(severity, mine, after)
    context = await _worklist(conn, user, record, view)
    return render(request, user, "worklist.html", context)


@router.get("/worklist/table")
async def worklist_table(
    request: Request,
    conn: Conn,
    user: BrowserReadsPatients,
    record: BrowserAudit,
    severity: SeverityChoice = "",
    mine: bool = False,
    after: str | None = None,
) -> Response:
    """The list alone, for the page to swap in when it changes: read and audited as the
    page is."""
    view = _view(severity, mine, after)
    context = await _worklist(conn, user, record, view)
    return render(request, user, "_worklist.html", context)


async def _worklist(
    conn: AsyncConnection[TupleRow], user: BrowserUser, record: AuditTrail, view: WorklistView
) -> dict[str, Any]:
    me = user.principal.staff_id
    where = WorklistFilter(
        assigned_to=me if view.mine and me is not None else None,
        severities=(view.severity.value,) if view.severity else (),
    )
    page = await read_worklist(conn, user.principal, record, where, view.after, PAGE_SIZE)
    return {
        "rows": await _rows(conn, page.alerts),
        "view": view,
        "next_page": page.next,
        "severities": SEVERITIES,
        **_row_context(user),
    }


def _row_context(user: BrowserUser) -> dict[str, Any]:
    return {
        "now": datetime.now(UTC),
        "outcomes": list(Outcome),
        "may_act": user.principal.may(Permission.ACT_ON_ALERTS),
    }


async def _rows(conn: AsyncConnection[TupleRow], page: Sequence[AlertRecord]) -> list[WorklistRow]:
    """What a row shows beside the alert: its patient's reference, its assignee's name and
    whom it could go to. Three queries for the whole page."""
    by_id = await patients.by_ids(conn, {a.patient_id for a in page})
    team_ids = {p.care_team_id for p in by_id.values() if p.care_team_id is not None}
    members = {t.id: t.members for t in await care_teams.teams(conn, team_ids)}
    assignees = await care_teams.staff_by_ids(
        conn, {a.assigned_to for a in page if a.assigned_to is not None}
    )
    rows = []
    for alert in page:
        patient = by_id[alert.patient_id]
        team = members.get(patient.care_team_id, []) if patient.care_team_id else []
        assignee = assignees.get(alert.assigned_to) if alert.assigned_to else None
        rows.append(
            WorklistRow(
                alert,
                patient.external_ref,
                assignee.display_name if assignee else None,
                [m for m in team if m.active and m.id != alert.assigned_to],
            )
        )
    return rows


# A comment line this often on a quiet stream, so that a proxy keeps the connection; and
# the session is looked at again at least this often, quiet or busy, so that a page left
# open is told when the idle timeout has signed it out (and leaves the patient data it
# shows).
HEARTBEAT_S = 20.0
# After telling a page to look again, wait this long before telling it again: a burst of
# changes (a device uploading its backlog) is one re-read of the worklist, not one each.
COALESCE_S = 1.0
# How soon the browser reconnects after a stream ends (the server restarting, say).
RECONNECT_MS = 5000


@router.get("/worklist/events")
async def worklist_events(request: Request) -> Response:
    """Server-sent events: `worklist-changed` when alerts of the user's teams change (the
    page then reads the list again, audited as any read), `signed-out` with the reason
    when the session ends. Holds no database connection while it waits; ends when the
    page goes or the server stops."""
    user = await streaming_user(request, Permission.READ_PATIENT_DATA)
    changes: AlertChanges = request.app.state.alert_changes
    return StreamingResponse(
        _events(request, changes, user.principal.visible_teams()),
        media_type="text/event-stream",
        # X-Accel-Buffering: a proxy such as nginx passes each event on at once.
        headers={"X-Accel-Buffering": "no"},
    )


async def _events(
    request: Request, changes: AlertChanges, teams: Collection[int] | None
) -> AsyncIterator[str]:
    yield f"retry: {RECONNECT_MS}\n\n"
    # When the session was last looked at. On a busy stream (an admin's wakes on any
    # team's change) the heartbeat's wait never runs out, and a page holding off its
    # refresh (a form open) reads nothing that would see the session end: look anyway.
    checked = time.monotonic()
    with changes.subscribe(teams) as subscription:
        while True:
            wake = await subscription.next(HEARTBEAT_S)
            if wake is Wake.CLOSED:
                return
            if wake is Wake.CHANGED:
                # An event with no data is never dispatched: say something.
                yield "event: worklist-changed\ndata: changed\n\n"
                await asyncio.sleep(COALESCE_S)
            if wake is Wake.QUIET or time.monotonic() - checked >= HEARTBEAT_S:
                checked = time.monotonic()
                try:
                    ended = await session_ended(request)
                except (psycopg.Error, PoolTimeout):
                    # The database is away: end quietly, the browser comes back.
                    return
                if ended is not None:
                    yield f"event: signed-out\ndata: {ended}\n\n"
                    return
            if wake is Wake.QUIET:
                yield ": still here\n\n"


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge(
    request: Request,
    conn: Conn,
    user: BrowserActsOnAlerts,
    record: BrowserAudit,
    alert_id: int,
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """From the worklist's row (htmx) or the alert's page (a plain post, `back` to it)."""
    return await _act(request, conn, user, record, alert_id, Acknowledge(), local_page(back))


@router.post("/alerts/{alert_id}/assign")
async def assign(
    request: Request,
    conn: Conn,
    user: BrowserActsOnAlerts,
    record: BrowserAudit,
    alert_id: int,
    staff_id: Annotated[int, Form()],
) -> Response:
    return await _act(request, conn, user, record, alert_id, Assign(staff_id))


@router.post("/alerts/{alert_id}/resolve")
async def resolve(
    request: Request,
    conn: Conn,
    user: BrowserActsOnAlerts,
    record: BrowserAudit,
    alert_id: int,
    outcome: Annotated[Outcome, Form()],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    return await _act(request, conn, user, record, alert_id, Resolve(outcome, note))


async def _act(
    request: Request,
    conn: AsyncConnection[TupleRow],
    user: BrowserUser,
    record: AuditTrail,
    alert_id: int,
    command: Command,
    back: str | None = None,
) -> Response:
    """The alert's row after the command; a refusal (already resolved, not in the team)
    in the row, in words. Without htmx (a plain form post): `back` (the worklist if
    None), or a page saying why not."""
    try:
        alert = await act_on_alert(conn, user.principal, record, alert_id, command)
        refusal, status = None, 200
    except (InvalidTransition, CareTeamError) as exc:
        if not is_htmx(request):
            raise
        refusal, status = str(exc), status_of(exc)
        # The row as it now stands (another nurse got there first, say): a read.
        alert = await alerts.get(conn, alert_id)
        await record("read", "alert", alert_id, [alert.patient_id])
    if not is_htmx(request):
        return RedirectResponse(back or WORKLIST, 303)
    (row,) = await _rows(conn, [alert])
    context = {"row": row, "refusal": refusal, **_row_context(user)}
    return render(request, user, "_alert_row.html", context, status)
