"""The alert worklist over HTTP: what is waiting, most severe first, then oldest, with
filters and keyset paging; each alert with its readings and history; and the nurse's
actions (acknowledge, assign, resolve), refused with 409 and the reason when the alert's
state does not allow them."""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import BaseModel, ConfigDict, Field

from rpm.alerts import notifications
from rpm.alerts import repository as alerts
from rpm.alerts.lifecycle import Acknowledge, Actor, Assign, Command, Outcome, Resolve
from rpm.alerts.notifications import NotificationRecord
from rpm.alerts.repository import (
    AlertEventRecord,
    AlertRecord,
    TriggerReading,
    WorklistCursor,
    WorklistFilter,
)
from rpm.alerts.service import act
from rpm.api import problems
from rpm.api.deps import (
    ActsOnAlerts,
    Audit,
    AuditTrail,
    Conn,
    ReadsPatients,
    RequestBody,
    alert_in_view,
)
from rpm.auth.access import Principal
from rpm.care_teams.registry import CareTeamNotFound
from rpm.rules.plan import Severity

router = APIRouter(
    prefix="/api/v1/alerts",
    tags=["alerts"],
    responses=problems.errors(
        {
            404: "No such alert",
            409: "The alert's state does not allow this; the reason is given",
        }
    ),
)


class WorklistPage(BaseModel):
    alerts: list[AlertRecord]
    # Pass as `after` for the next page; null on the last page.
    next: str | None


@router.get(
    "",
    summary="The worklist: unresolved alerts of your care teams' patients, most severe first,"
    " then oldest",
)
async def worklist(
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    care_team_id: Annotated[int | None, Query(description="One of your care teams")] = None,
    assigned_to: Annotated[int | None, Query(description="A staff id")] = None,
    patient_id: int | None = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    status: Annotated[
        str | None, Query(pattern="^(open|acknowledged)$", description="Default: both")
    ] = None,
    after: Annotated[str | None, Query(description="The previous page's `next`")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> WorklistPage:
    where = WorklistFilter(
        care_team_ids=None if care_team_id is None else (care_team_id,),
        assigned_to=assigned_to,
        patient_id=patient_id,
        severities=tuple(s.value for s in severity or ()),
        status=status,
    )
    return await read_worklist(conn, user, record, where, after, limit)


async def read_worklist(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    where: WorklistFilter,
    after: str | None,
    limit: int,
) -> WorklistPage:
    """A page of the worklist as the user may see it (`where.care_team_ids`: one of their
    teams, or None for all of them), its read audited: for the API and the worklist page
    alike, the page's live refreshes included."""
    teams = user.visible_teams()
    if where.care_team_ids is not None:
        if not all(user.sees_team(team) for team in where.care_team_ids):
            unseen = next(t for t in where.care_team_ids if not user.sees_team(t))
            await record("denied", "care_team", unseen, status=404)
            raise CareTeamNotFound(f"care team {unseen} is not one of yours")
        teams = where.care_team_ids
    where = replace(where, care_team_ids=None if teams is None else tuple(teams))
    page = await alerts.worklist(conn, where, _decode(after) if after else None, limit + 1)
    more = len(page) > limit
    page = page[:limit]
    await record("read", "worklist", patient_ids=[a.patient_id for a in page])
    return WorklistPage(alerts=page, next=_encode(page[-1]) if more else None)


def _encode(last: AlertRecord) -> str:
    key = f"{Severity(last.severity).rank}|{last.opened_at.isoformat()}|{last.id}"
    return base64.urlsafe_b64encode(key.encode()).decode()


def _decode(token: str) -> WorklistCursor:
    try:
        rank, opened_at, alert_id = base64.urlsafe_b64decode(token).decode().split("|")
        return WorklistCursor(int(rank), datetime.fromisoformat(opened_at), int(alert_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(
            422, "`after` is not a page token from this worklist: pass the previous page's `next`"
        ) from None


class AlertDetail(BaseModel):
    alert: AlertRecord
    readings: list[TriggerReading]
    events: list[AlertEventRecord]
    # Its SMS, with Twilio's last word on each (a failed one says why).
    notifications: list[NotificationRecord]


@router.get(
    "/{alert_id}",
    summary="One alert, with the readings that fired its rule and its history",
)
async def get(conn: Conn, user: ReadsPatients, record: Audit, alert_id: int) -> AlertDetail:
    return await read_alert(conn, user, record, alert_id)


async def read_alert(
    conn: AsyncConnection[TupleRow], user: Principal, record: AuditTrail, alert_id: int
) -> AlertDetail:
    """The alert, if in the user's view, with its readings, history and SMS; the read
    audited: for the API and the alert's page alike."""
    alert = await alert_in_view(conn, user, record, alert_id)
    await record("read", "alert", alert_id, [alert.patient_id])
    return AlertDetail(
        alert=alert,
        readings=await alerts.triggers(conn, alert_id),
        events=await alerts.events(conn, alert_id),
        notifications=await notifications.for_alert(conn, alert_id),
    )


class Note(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"note": "Calling the patient now"}]})

    note: str = Field("", max_length=2000)


class AlertAssignment(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"staff_id": 1, "note": "Please call the patient back; I am in clinic until 3 pm"}
            ]
        }
    )

    staff_id: int
    note: str = Field("", max_length=2000)


class Resolution(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "outcome": "patient_contacted",
                    "note": "Re-measured after five minutes' rest: 138/86. No symptoms;"
                    " takes the medication as prescribed.",
                }
            ]
        }
    )

    outcome: Outcome
    note: str = Field(min_length=1, max_length=2000, description="What was done, for the record")


async def act_on_alert(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    alert_id: int,
    command: Command,
) -> AlertRecord:
    """A nurse's command on an alert in their view (`rpm.alerts.service.act`), audited:
    for the API and the worklist page alike."""
    await alert_in_view(conn, user, record, alert_id)
    alert = await act(conn, alert_id, command, Actor(user.username, user.staff_id))
    await record(type(command).__name__.lower(), "alert", alert_id, [alert.patient_id])
    return alert


@router.post("/{alert_id}/acknowledge", summary="Take the alert: it stops escalating")
async def acknowledge(
    conn: Conn, user: ActsOnAlerts, record: Audit, alert_id: int, body: Note
) -> AlertRecord:
    return await act_on_alert(conn, user, record, alert_id, Acknowledge(body.note))


@router.post("/{alert_id}/assign", summary="Give the alert to a member of the care team")
async def assign(
    conn: Conn, user: ActsOnAlerts, record: Audit, alert_id: int, body: AlertAssignment
) -> AlertRecord:
    return await act_on_alert(conn, user, record, alert_id, Assign(body.staff_id, body.note))


@router.post("/{alert_id}/resolve", summary="Close the alert with its outcome and a note")
async def resolve(
    conn: Conn, user: ActsOnAlerts, record: Audit, alert_id: int, body: Resolution
) -> AlertRecord:
    return await act_on_alert(conn, user, record, alert_id, Resolve(body.outcome, body.note))
