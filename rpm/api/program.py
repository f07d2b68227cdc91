"""Program operations over HTTP: adherence (a patient's, and the program's patients at
risk), billing periods and monthly time with the codes they support, staff time logs,
the monthly time report (JSON or CSV), and a patient's SMS-reminder consent.

Every read of a patient's data is audited, as elsewhere; so are the program lists, a
row per patient they show."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Self

from fastapi import APIRouter, Query, status
from fastapi.responses import Response
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rpm.api import problems
from rpm.api.deps import (
    Audit,
    AuditTrail,
    Conn,
    EnrolsPatients,
    Forbidden,
    LogsTime,
    Offset,
    PageLimit,
    ReadsPatients,
    ReadsProgramReports,
    RequestBody,
    patient_in_view,
)
from rpm.api.values import Instant, LocalTime
from rpm.auth.access import Principal, Role
from rpm.patients import registry
from rpm.patients.registry import PatientRecord, ReminderSettings
from rpm.program import service, time_logs
from rpm.program.adherence import Adherence, Standing
from rpm.program.billing import MonthTime, PeriodBilling, month_time
from rpm.program.periods import Month, local_day
from rpm.program.time_logs import TimeLogEntry

router = APIRouter(
    prefix="/api/v1",
    tags=["program"],
    responses=problems.errors({404: "No such patient (or time-log entry)"}),
)

MONTH_PATTERN = r"^\d{4}-\d{2}$"
MonthQuery = Annotated[
    str | None,
    Query(
        pattern=MONTH_PATTERN,
        description="YYYY-MM on the patient's clock; default: the current month",
    ),
]
ReportMonth = Annotated[str, Query(pattern=MONTH_PATTERN, examples=["2026-11"])]


def parse_month(text: str) -> Month:
    """The month, or a 422 refusal in words (a pattern lets "2026-13" through)."""
    try:
        return Month.parse(text)
    except ValueError as exc:
        raise registry.PatientError(str(exc)) from None


class AdherenceView(BaseModel):
    period_number: int
    period_first_day: date
    period_last_day: date
    days_with_readings: int
    days_needed: int
    days_left: int
    projected_days: int
    standing: Standing
    last_reading_at: datetime | None
    summary: str = Field(examples=["8 of 16 days with 9 days left"])

    @classmethod
    def of(cls, adherence: Adherence) -> AdherenceView:
        return cls(
            period_number=adherence.period.number,
            period_first_day=adherence.period.first_day,
            period_last_day=adherence.period.last_day,
            days_with_readings=adherence.days_with_readings,
            days_needed=adherence.days_needed,
            days_left=adherence.days_left,
            projected_days=adherence.projected_days,
            standing=adherence.standing,
            last_reading_at=adherence.last_reading_at,
            summary=adherence.summary,
        )


class PatientAdherenceView(BaseModel):
    patient_id: int
    # Null: discharged (no open episode of care).
    overall: AdherenceView | None
    by_device_kind: dict[str, AdherenceView]


@router.get(
    "/patients/{patient_id}/adherence",
    summary="Days with readings in the current 30-day period, overall and per device kind",
)
async def patient_adherence(
    conn: Conn, user: ReadsPatients, record: Audit, patient_id: int
) -> PatientAdherenceView:
    return await read_patient_adherence(conn, user, record, patient_id, datetime.now(UTC))


async def read_patient_adherence(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    now: datetime,
) -> PatientAdherenceView:
    patient = await patient_in_view(conn, user, record, patient_id)
    found = await service.patient_adherence(conn, patient, now)
    await record("read", "adherence", patient_id, [patient_id])
    if found is None:
        return PatientAdherenceView(patient_id=patient_id, overall=None, by_device_kind={})
    return PatientAdherenceView(
        patient_id=patient_id,
        overall=AdherenceView.of(found.overall),
        by_device_kind={k: AdherenceView.of(a) for k, a in found.by_device_kind.items()},
    )


class AtRiskRow(BaseModel):
    patient_id: int
    external_ref: str
    care_team_id: int | None
    adherence: AdherenceView


class AtRiskPage(BaseModel):
    patients: list[AtRiskRow]
    total: int = Field(description="Patients at risk in all (0 past the last page)")
    next: int | None = Field(description="The next page's `offset`; null on the last page")


@router.get(
    "/adherence/at-risk",
    summary="Active patients whose period will not reach 16 days at their pace, or cannot",
)
async def at_risk(
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    offset: Offset = 0,
    limit: PageLimit = 100,
) -> AtRiskPage:
    return await read_at_risk(conn, user, record, datetime.now(UTC), offset, limit)


async def read_at_risk(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    now: datetime,
    offset: int,
    limit: int,
) -> AtRiskPage:
    """A page, fewest days to spare first. Audited as read: the patients on the page,
    as the worklist does."""
    found, total = await service.patients_at_risk(conn, now, user.visible_teams(), offset, limit)
    await record("read", "adherence", patient_ids=[p.patient_id for p in found] or [None])
    return AtRiskPage(
        patients=[
            AtRiskRow(
                patient_id=p.patient_id,
                external_ref=p.external_ref,
                care_team_id=p.care_team_id,
                adherence=AdherenceView.of(p.adherence),
            )
            for p in found
        ],
        total=total,
        next=offset + limit if offset + limit < total else None,
    )


class PeriodView(BaseModel):
    number: int
    first_day: date
    last_day: date
    days_with_readings: int
    physician_minutes: int
    codes: list[str] = Field(examples=[["99454", "99453"]])
    reasons: list[str]
    complete: bool = Field(description="False while the period runs: its codes may change")

    @classmethod
    def of(cls, billed: PeriodBilling) -> PeriodView:
        return cls(
            number=billed.period.number,
            first_day=billed.period.first_day,
            last_day=billed.period.last_day,
            days_with_readings=billed.days_with_readings,
            physician_minutes=billed.physician_minutes,
            codes=list(billed.codes),
            reasons=list(billed.reasons),
            complete=billed.complete,
        )


class MonthView(BaseModel):
    month: str = Field(examples=["2026-11"])
    entries: int
    minutes: int
    physician_minutes: int
    interactive: bool = Field(description="A real-time interactive communication in the month")
    codes: list[str] = Field(examples=[["99457", "99458"]])
    reason: str

    @classmethod
    def of(cls, spent: MonthTime) -> MonthView:
        return cls(
            month=str(spent.month),
            entries=spent.entries,
            minutes=spent.minutes,
            physician_minutes=spent.physician_minutes,
            interactive=spent.interactive,
            codes=list(spent.codes),
            reason=spent.reason,
        )


class BillingView(BaseModel):
    patient_id: int
    time_zone: str
    # Newest first: every 30-day period of every episode of care.
    periods: list[PeriodView]
    # Newest first: every calendar month since the first episode began.
    months: list[MonthView]


@router.get(
    "/patients/{patient_id}/billing",
    summary="The codes the patient's data and logged time support, per period and month",
)
async def patient_billing(
    conn: Conn, user: ReadsPatients, record: Audit, patient_id: int
) -> BillingView:
    return await read_patient_billing(conn, user, record, patient_id, datetime.now(UTC))


async def read_patient_billing(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    now: datetime,
) -> BillingView:
    patient = await patient_in_view(conn, user, record, patient_id)
    billing = await service.patient_billing(conn, patient, now)
    await record("read", "billing", patient_id, [patient_id])
    return BillingView(
        patient_id=patient_id,
        time_zone=patient.time_zone,
        periods=[PeriodView.of(p) for p in billing.periods],
        months=[MonthView.of(m) for m in billing.months],
    )


class TimeLogView(BaseModel):
    id: int
    patient_id: int
    staff_id: int
    staff_name: str
    staff_role: str
    started_at: datetime
    ended_at: datetime | None = Field(description="Null while the stopwatch runs")
    minutes: int | None
    interactive: bool
    note: str
    created_at: datetime
    created_by: str
    voided_at: datetime | None
    voided_by: str | None
    void_reason: str | None

    @classmethod
    def of(cls, entry: TimeLogEntry) -> TimeLogView:
        return cls(
            id=entry.id,
            patient_id=entry.patient_id,
            staff_id=entry.staff_id,
            staff_name=entry.staff_name,
            staff_role=entry.staff_role,
            started_at=entry.started_at,
            ended_at=entry.ended_at,
            minutes=entry.minutes,
            interactive=entry.interactive,
            note=entry.note,
            created_at=entry.created_at,
            created_by=entry.created_by,
            voided_at=entry.voided_at,
            voided_by=entry.voided_by,
            void_reason=entry.void_reason,
        )


class PatientMonthTime(BaseModel):
    patient_id: int
    month: MonthView
    entries: list[TimeLogView]


def _month(text: str | None, patient: PatientRecord, now: datetime) -> Month:
    if text is None:
        return Month.of(local_day(now, registry.time_zone(patient.time_zone)))
    return parse_month(text)


@router.get(
    "/patients/{patient_id}/time-logs",
    summary="A calendar month's time-log entries for the patient, and the codes they support",
)
async def patient_time(
    conn: Conn, user: ReadsPatients, record: Audit, patient_id: int, month: MonthQuery = None
) -> PatientMonthTime:
    return await read_patient_time(conn, user, record, patient_id, month, datetime.now(UTC))


async def read_patient_time(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    month_text: str | None,
    now: datetime,
) -> PatientMonthTime:
    patient = await patient_in_view(conn, user, record, patient_id)
    month = _month(month_text, patient, now)
    zone = registry.time_zone(patient.time_zone)
    start, end = month.starts_at(zone), month.ends_at(zone)
    entries = await time_logs.for_patient(conn, patient_id, start, end)
    await record("read", "time_logs", patient_id, [patient_id], {"month": str(month)})
    counted = [spent for entry in entries if (spent := entry.spent()) is not None]
    return PatientMonthTime(
        patient_id=patient_id,
        month=MonthView.of(month_time(month, counted, start, end)),
        entries=[TimeLogView.of(e) for e in entries],
    )


class TimeSpentEntry(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "minutes": 12,
                    "started_at": "2026-11-24T09:30:00-06:00",
                    "interactive": True,
                    "note": "Called the patient about missed readings; cuff re-paired",
                }
            ]
        }
    )

    minutes: int = Field(ge=1, le=720, description="Whole minutes spent")
    started_at: Instant | None = Field(
        None, description="When it began; default: `minutes` before now"
    )
    interactive: bool = Field(
        description="It included a real-time interactive communication (phone or video)"
    )
    note: str = Field(min_length=1, max_length=2000, description="What was done")


class StopwatchStart(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"interactive": False, "note": "Reviewing readings"}]}
    )

    interactive: bool = False
    note: str = Field("", max_length=2000)


class StopwatchStop(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"interactive": True}]})

    interactive: bool | None = Field(None, description="Null: as said when it started")


class VoidEntry(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "Entered twice"}]})

    reason: str = Field(min_length=1, max_length=1000)


def _staff_of(user: Principal) -> int:
    if user.staff_id is None:
        raise Forbidden(f"user {user.username} is not a care-team member: no time to log")
    return user.staff_id


@router.post(
    "/patients/{patient_id}/time-logs",
    status_code=status.HTTP_201_CREATED,
    summary="Log time already spent on the patient (minutes and a note)",
    responses=problems.errors({409: "It overlaps other time of yours"}),
)
async def log_time(
    conn: Conn, user: LogsTime, record: Audit, patient_id: int, entry: TimeSpentEntry
) -> TimeLogView:
    now = datetime.now(UTC)
    started = entry.started_at or now - timedelta(minutes=entry.minutes)
    if started + timedelta(minutes=entry.minutes) > now + timedelta(minutes=1):
        raise time_logs.TimeLogError("time cannot be logged before it has been spent")
    return await add_time(
        conn, user, record, patient_id, started, started + timedelta(minutes=entry.minutes),
        entry.interactive, entry.note,
    )  # fmt: skip


@router.post(
    "/patients/{patient_id}/time-logs/stopwatch",
    status_code=status.HTTP_201_CREATED,
    summary="Start a stopwatch on time spent on the patient",
    responses=problems.errors({409: "Another stopwatch of yours is running"}),
)
async def start_stopwatch(
    conn: Conn, user: LogsTime, record: Audit, patient_id: int, start: StopwatchStart
) -> TimeLogView:
    return await add_time(
        conn, user, record, patient_id, datetime.now(UTC), None, start.interactive, start.note
    )


async def add_time(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    started_at: datetime,
    ended_at: datetime | None,
    interactive: bool,
    note: str,
) -> TimeLogView:
    """Time spent (`ended_at`) or a stopwatch started (None), by the user's staff record."""
    staff_id = _staff_of(user)
    await patient_in_view(conn, user, record, patient_id)
    entry = await time_logs.add(
        conn, patient_id, staff_id, started_at, ended_at, interactive, note, user.username
    )
    await record("log", "time_log", entry.id, [patient_id], {"minutes": entry.minutes})
    return TimeLogView.of(entry)


async def entry_in_view(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    log_id: int,
) -> TimeLogEntry:
    await patient_in_view(conn, user, record, patient_id)
    entry = await time_logs.get(conn, log_id)
    if entry.patient_id != patient_id:
        raise time_logs.TimeLogNotFound(f"patient {patient_id} has no time-log entry {log_id}")
    return entry


@router.post(
    "/patients/{patient_id}/time-logs/{log_id}/stop",
    summary="Stop your running stopwatch",
    responses=problems.errors({409: "Not running, or not yours"}),
)
async def stop_stopwatch(
    conn: Conn, user: LogsTime, record: Audit, patient_id: int, log_id: int, stop: StopwatchStop
) -> TimeLogView:
    return await stop_time(conn, user, record, patient_id, log_id, stop.interactive)


async def stop_time(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    log_id: int,
    interactive: bool | None,
) -> TimeLogView:
    staff_id = _staff_of(user)
    await entry_in_view(conn, user, record, patient_id, log_id)
    entry = await time_logs.stop(conn, log_id, staff_id, datetime.now(UTC), interactive)
    await record("stop", "time_log", log_id, [patient_id], {"minutes": entry.minutes})
    return TimeLogView.of(entry)


@router.post(
    "/patients/{patient_id}/time-logs/{log_id}/void",
    summary="Void a mistaken entry (it stays, struck out, with the reason)",
    responses=problems.errors({409: "Already void"}),
)
async def void_time(
    conn: Conn, user: LogsTime, record: Audit, patient_id: int, log_id: int, void: VoidEntry
) -> TimeLogView:
    return await void_entry(conn, user, record, patient_id, log_id, void.reason)


async def void_entry(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    log_id: int,
    reason: str,
) -> TimeLogView:
    logged = await entry_in_view(conn, user, record, patient_id, log_id)
    if logged.staff_id != user.staff_id and user.role is not Role.CARE_MANAGER:
        # Voiding takes minutes off the codes: only whoever spent them, or the care
        # manager who answers for the programme's records.
        raise Forbidden(
            f"only the person who logged time-log entry {log_id}, or a care manager, can void it"
        )
    entry = await time_logs.void(conn, log_id, user.username, reason)
    await record("void", "time_log", log_id, [patient_id], {"reason": reason})
    return TimeLogView.of(entry)


class ProgramMonthRowView(BaseModel):
    patient_id: int
    external_ref: str
    time: MonthView

    @classmethod
    def of(cls, row: service.ProgramMonthRow) -> ProgramMonthRowView:
        return cls(
            patient_id=row.patient_id, external_ref=row.external_ref, time=MonthView.of(row.time)
        )


class TimeReportPage(BaseModel):
    month: str = Field(examples=["2026-11"])
    patients: list[ProgramMonthRowView]
    next: int | None = Field(
        description="The last patient id on this page, to pass as `after`; null on the last page"
    )


@router.get(
    "/reports/time",
    summary="Every patient's logged time in a calendar month, and the codes it supports",
    description="By patient id, a page at a time; the CSV has the whole month.",
)
async def time_report(
    conn: Conn,
    user: ReadsProgramReports,
    record: Audit,
    month: ReportMonth,
    after: Annotated[int, Query(ge=0, description="The `next` of the page before")] = 0,
    limit: PageLimit = 100,
) -> TimeReportPage:
    return await read_time_report_page(conn, user, record, month, after, limit)


async def read_time_report_page(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    month_text: str,
    after: int,
    limit: int,
) -> TimeReportPage:
    """The patients after `after` (by id), `limit` of them, and where the next page
    starts. Audited as read: the patients on the page."""
    month = parse_month(month_text)
    found = await service.program_month(conn, month, user.visible_teams(), after, limit + 1)
    rows = found[:limit]
    await record("read", "time_report", str(month), [r.patient_id for r in rows] or [None])
    return TimeReportPage(
        month=str(month),
        patients=[ProgramMonthRowView.of(r) for r in rows],
        next=rows[-1].patient_id if len(found) > limit else None,
    )


CSV_COLUMNS = (
    "month", "patient_id", "external_ref", "entries", "minutes", "physician_minutes",
    "interactive", "codes", "reason",
)  # fmt: skip


@router.get(
    "/reports/time.csv",
    summary="The same report as CSV, for billing",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "One row per patient"}},
)
async def time_report_csv(
    conn: Conn,
    user: ReadsProgramReports,
    record: Audit,
    month: ReportMonth,
) -> Response:
    rows = await read_time_report(conn, user, record, parse_month(month))
    return time_report_csv_response(rows, month)


def time_report_csv_response(rows: list[ProgramMonthRowView], month: str) -> Response:
    """The report as a CSV download: for the API and the report page alike."""
    return Response(
        time_report_as_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="rpm-time-{month}.csv"'},
    )


def time_report_as_csv(rows: list[ProgramMonthRowView]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        t = row.time
        writer.writerow(
            [
                t.month, row.patient_id, _spreadsheet_safe(row.external_ref), t.entries,
                t.minutes, t.physician_minutes, "yes" if t.interactive else "no",
                " ".join(t.codes), t.reason,
            ]
        )  # fmt: skip
    return out.getvalue()


def _spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet would run as a formula is quoted as text (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def read_time_report(
    conn: AsyncConnection[TupleRow], user: Principal, record: AuditTrail, month: Month
) -> list[ProgramMonthRowView]:
    """The whole month, for the CSV. Audited as read: every patient in it."""
    rows = await service.program_month(conn, month, user.visible_teams())
    await record("read", "time_report", str(month), [r.patient_id for r in rows] or [None])
    return [ProgramMonthRowView.of(r) for r in rows]


class RemindersView(BaseModel):
    patient_id: int
    # Only the last digits are shown back: the number is the patient's.
    phone_ending: str | None = Field(examples=["0142"])
    opted_in: bool
    opted_in_at: datetime | None
    after_days: int | None = Field(description="Silent days before a reminder; null: default")
    quiet_hours_start: time | None
    quiet_hours_end: time | None

    @classmethod
    def of(cls, patient_id: int, settings: ReminderSettings) -> RemindersView:
        return cls(
            patient_id=patient_id,
            phone_ending=settings.phone[-4:] if settings.phone else None,
            opted_in=settings.opted_in_at is not None,
            opted_in_at=settings.opted_in_at,
            after_days=settings.after_days,
            quiet_hours_start=settings.quiet_hours_start,
            quiet_hours_end=settings.quiet_hours_end,
        )


class ReminderChoice(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "opted_in": True,
                    "phone": "+15555550142",
                    "after_days": 3,
                    "quiet_hours_start": "21:00",
                    "quiet_hours_end": "08:00",
                }
            ]
        }
    )

    opted_in: bool = Field(description="The patient's consent to SMS reminders")
    phone: str | None = Field(
        None, pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164; needed to opt in"
    )
    after_days: int | None = Field(None, ge=1, le=30, description="Null: the service default")
    quiet_hours_start: LocalTime | None = None
    quiet_hours_end: LocalTime | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.quiet_hours_start is None) != (self.quiet_hours_end is None):
            raise ValueError("give both ends of the quiet hours, or neither")
        return self


@router.get("/patients/{patient_id}/reminders", summary="The patient's SMS-reminder consent")
async def reminders(
    conn: Conn, user: ReadsPatients, record: Audit, patient_id: int
) -> RemindersView:
    await patient_in_view(conn, user, record, patient_id)
    settings = await registry.reminder_settings(conn, patient_id)
    await record("read", "reminders", patient_id, [patient_id])
    return RemindersView.of(patient_id, settings)


@router.put(
    "/patients/{patient_id}/reminders",
    summary="Record the patient's consent to SMS reminders after silent days (or its end)",
)
async def set_reminders(
    conn: Conn, user: EnrolsPatients, record: Audit, patient_id: int, choice: ReminderChoice
) -> RemindersView:
    await patient_in_view(conn, user, record, patient_id)
    quiet = (
        (choice.quiet_hours_start, choice.quiet_hours_end)
        if choice.quiet_hours_start is not None and choice.quiet_hours_end is not None
        else None
    )
    settings = await registry.set_reminders(
        conn, patient_id, choice.phone, choice.opted_in, choice.after_days, quiet
    )
    await record(
        "change",
        "reminders",
        patient_id,
        [patient_id],
        {"opted_in": choice.opted_in, "after_days": choice.after_days},
    )
    return RemindersView.of(patient_id, settings)
