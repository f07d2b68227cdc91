"""Patients: the list of the user's teams' patients, a patient's page (charts of their
readings with the care plan's limits drawn on them, their alert history, adherence, time
logged this month and billing periods), and an alert's page.

Every read goes through the API's own functions (`read_patients`, `read_patient`,
`read_current_plan`, `read_series`, `read_patient_alerts`, `read_alert`, and
`rpm.api.program`'s `read_patient_*`), so a page sees,
refuses (another team's patient is 404) and audits exactly as `/api/v1` does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from rpm.api.alerts import read_alert
from rpm.api.care_plans import read_current_plan
from rpm.api.deps import Conn
from rpm.api.handoff import read_notes
from rpm.api.patients import read_patient, read_patient_alerts, read_patients
from rpm.api.program import read_patient_adherence, read_patient_billing, read_patient_time
from rpm.api.readings import BUCKET_WIDTHS, Kind, Series, read_series
from rpm.auth.access import Permission
from rpm.care_teams import registry as care_teams
from rpm.devices.model import ReadingKind
from rpm.ingest import readings
from rpm.patients import registry as patients
from rpm.rules import engine as rules_engine
from rpm.rules.plan import CarePlan
from rpm.web import charts, enrolment
from rpm.web.deps import PREFIX, BrowserAudit, BrowserReadsPatients, clock_of, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZE = 50
# The patient page's alert history: this many, newest first.
HISTORY_SIZE = 50


class Period(IntEnum):
    """Days of readings the charts show."""

    WEEK = 7
    # What a care manager reviews, and the dry run's period: the default.
    MONTH = rules_engine.DRY_RUN_DAYS
    QUARTER = 90


@router.get("/patients")
async def patients_page(
    request: Request,
    conn: Conn,
    user: BrowserReadsPatients,
    record: BrowserAudit,
    after: Annotated[int, Query(ge=0)] = 0,
    ref: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    """The patients of the user's care teams, by id, a page at a time; or the one with
    this reference."""
    found = await read_patients(conn, user.principal, record, after, PAGE_SIZE, ref or None)
    team_ids = {p.care_team_id for p in found if p.care_team_id is not None}
    teams = {t.id: t.name for t in await care_teams.teams(conn, team_ids)}
    context = {
        "patients": found,
        "teams": teams,
        "ref": ref,
        "after": after,
        "may_enrol": user.principal.may(Permission.ENROL_PATIENTS),
        # A full page may have more after it (the last page can be found empty).
        "next_after": found[-1].id if len(found) == PAGE_SIZE and not ref else None,
    }
    return render(request, user, "patients.html", context)


@router.get("/patients/{patient_id}")
async def patient_page(
    request: Request,
    conn: Conn,
    user: BrowserReadsPatients,
    record: BrowserAudit,
    patient_id: int,
    days: Period = Period.MONTH,
    done: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """The patient, charts of each kind of reading they have over the last `days`, and
    their alerts, newest first. `done`: what was just done (enrolled, paused, ...)."""
    principal = user.principal
    patient = await read_patient(conn, principal, record, patient_id)
    team = await care_teams.team(conn, patient.care_team_id) if patient.care_team_id else None
    plan: CarePlan | None = None
    if patient.care_plan_version is not None:
        plan = (await read_current_plan(conn, principal, record, patient_id)).plan
    until = datetime.now(UTC).replace(second=0, microsecond=0)
    since = until - timedelta(days=days)
    drawn = []
    zone = clock_of(request, user).zone
    for kind in await readings.kinds_of(conn, patient_id, list(charts.CHART_KINDS)):
        series = await read_series(conn, principal, record, patient_id, Kind(kind), since, until)
        drawn.append(_chart(series, plan, zone))
    history = await read_patient_alerts(conn, principal, record, patient_id, True, HISTORY_SIZE)
    now = datetime.now(UTC)
    context = {
        "adherence": await read_patient_adherence(conn, principal, record, patient_id, now),
        "time": await read_patient_time(conn, principal, record, patient_id, None, now),
        "billing": await read_patient_billing(conn, principal, record, patient_id, now),
        "logs_time": principal.may(Permission.LOG_TIME),
        "notes": await read_notes(conn, principal, record, patient_id),
        "writes_notes": principal.may(Permission.HAND_OFF),
        "staff_id": principal.staff_id,
        "patient": patient,
        "team": team,
        "days": days,
        "periods": list(Period),
        "charts": drawn,
        "alerts": history,
        "history_size": HISTORY_SIZE,
        "done": done,
    }
    context |= await enrolment.manage_context(conn, principal, record, patient)
    return render(request, user, "patient.html", context)


def _chart(series: Series, plan: CarePlan | None, zone: ZoneInfo) -> charts.Chart:
    kind = ReadingKind(series.kind.value)
    buckets = {
        metric.field: [
            charts.Bucket(b.start, b.count, stats.mean, stats.min, stats.max)
            for b in series.buckets
            if (stats := getattr(b, metric.field)) is not None
        ]
        for metric in charts.CHART_KINDS[kind].metrics
    }
    width = BUCKET_WIDTHS[series.width]
    return charts.chart(kind, buckets, plan, series.since, series.until, width, zone)


@router.get("/alerts/{alert_id}")
async def alert_page(
    request: Request, conn: Conn, user: BrowserReadsPatients, record: BrowserAudit, alert_id: int
) -> Response:
    """The alert: what fired it, its history, its SMS."""
    detail = await read_alert(conn, user.principal, record, alert_id)
    patient = await patients.get(conn, detail.alert.patient_id)
    staff_ids = {n.staff_id for n in detail.notifications}
    if detail.alert.assigned_to is not None:
        staff_ids.add(detail.alert.assigned_to)
    staff = await care_teams.staff_by_ids(conn, staff_ids)
    may_act = user.principal.may(Permission.ACT_ON_ALERTS)
    context = {"detail": detail, "patient": patient, "staff": staff, "may_act": may_act}
    return render(request, user, "alert.html", context)
