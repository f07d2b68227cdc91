"""Hand-offs over HTTP: a care team's huddle board, notes on a patient between shifts and
disciplines, and who owns the patient's follow-up. The web UI's huddle page and patient
page call these same functions (`huddle`, `write_note`, `give_follow_up`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import BaseModel, ConfigDict, Field

from rpm.api import problems
from rpm.api.care_teams import team_in_view
from rpm.api.deps import (
    Audit,
    AuditTrail,
    Conn,
    Forbidden,
    HandsOff,
    Offset,
    PageLimit,
    Plans,
    ReadsPatients,
    RequestBody,
    patient_in_view,
)
from rpm.auth.access import Principal
from rpm.patients import handoff
from rpm.patients.handoff import MAX_NOTE_LENGTH, FollowUp, PatientNote
from rpm.program.huddle import HuddleRow
from rpm.program.service import HuddlePage, huddle_board
from rpm.rules.care_plans import PlanCache

router = APIRouter(
    prefix="/api/v1",
    tags=["hand-offs"],
    responses=problems.errors({404: "No such patient or care team (or not one of yours)"}),
)


class NoteIn(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"body": "Called: cuff fits better on the left arm."}]}
    )

    body: str = Field(min_length=1, max_length=MAX_NOTE_LENGTH)


class NoteView(BaseModel):
    id: int
    patient_id: int
    staff_id: int
    staff_name: str
    staff_role: str
    body: str
    written_at: datetime
    written_by: str

    @classmethod
    def of(cls, note: PatientNote) -> NoteView:
        return cls(**note.__dict__)


async def write_note(
    conn: AsyncConnection[TupleRow], user: Principal, record: AuditTrail, patient_id: int, body: str
) -> PatientNote:
    """A note by the user's staff record; audited (without its text)."""
    if user.staff_id is None:
        raise Forbidden(f"user {user.username} is not a care-team member: notes are signed")
    await patient_in_view(conn, user, record, patient_id)
    note = await handoff.add_note(conn, patient_id, user.staff_id, body, user.username)
    await record("write", "patient_note", note.id, [patient_id])
    return note


async def read_notes(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    before_id: int | None = None,
    limit: int = 50,
) -> list[PatientNote]:
    await patient_in_view(conn, user, record, patient_id)
    notes = await handoff.notes(conn, patient_id, before_id, limit)
    await record("read", "patient_note", None, [patient_id])
    return notes


@router.post(
    "/patients/{patient_id}/notes",
    status_code=status.HTTP_201_CREATED,
    summary="Write a note on the patient for the care team (never sent by SMS)",
)
async def add_note(
    conn: Conn, user: HandsOff, record: Audit, patient_id: int, note: NoteIn
) -> NoteView:
    return NoteView.of(await write_note(conn, user, record, patient_id, note.body))


@router.get(
    "/patients/{patient_id}/notes",
    summary="The patient's notes, newest first (page on with before_id, the last id shown)",
)
async def list_notes(
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    patient_id: int,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[NoteView]:
    notes = await read_notes(conn, user, record, patient_id, before_id, limit)
    return [NoteView.of(n) for n in notes]


class FollowUpIn(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"staff_id": 3}]})

    staff_id: int | None = Field(description="A member of the patient's care team; null: nobody")


class FollowUpView(BaseModel):
    patient_id: int
    staff_id: int | None
    staff_name: str | None

    @classmethod
    def of(cls, follow_up: FollowUp) -> FollowUpView:
        return cls(**follow_up.__dict__)


async def give_follow_up(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    staff_id: int | None,
) -> FollowUp:
    await patient_in_view(conn, user, record, patient_id)
    given = await handoff.set_follow_up(conn, patient_id, staff_id)
    await record("follow_up", "patient", patient_id, [patient_id], {"staff_id": staff_id})
    return given


@router.put(
    "/patients/{patient_id}/follow-up",
    summary="Give the patient's follow-up to a member of their care team (or to nobody)",
    responses=problems.errors({422: "Not a member of the patient's care team"}),
)
async def put_follow_up(
    conn: Conn, user: HandsOff, record: Audit, patient_id: int, follow_up: FollowUpIn
) -> FollowUpView:
    return FollowUpView.of(await give_follow_up(conn, user, record, patient_id, follow_up.staff_id))


class MarkView(BaseModel):
    measure: str
    value: float = Field(description="In the measure's canonical unit")
    unit: str
    measured_at: datetime
    trend: str = Field(description="The 7-day mean against the 7 days before: up, down, steady")
    limit: str | None = Field(description="The plan's limit the last value is beyond, if any")
    severity: str | None


class HuddleRowView(BaseModel):
    patient_id: int
    external_ref: str
    name: str
    time_zone: str
    reasons: list[str] = Field(description="Why to discuss the patient; empty: stable")
    severity: str | None
    open_alerts: int
    marks: list[MarkView]
    days_with_readings: int | None
    adherence: str | None
    minutes_this_month: int
    follow_up: str | None

    @classmethod
    def of(cls, row: HuddleRow) -> HuddleRowView:
        patient = row.patient
        adherence = patient.adherence
        return cls(
            patient_id=patient.patient_id,
            external_ref=patient.external_ref,
            name=patient.name,
            time_zone=patient.time_zone,
            reasons=row.reasons,
            severity=row.severity.value if row.severity else None,
            open_alerts=len(patient.open_alerts),
            marks=[
                MarkView(
                    measure=m.measure.value,
                    value=round(m.value, 2),
                    unit=m.measure.canonical_unit,
                    measured_at=m.measured_at,
                    trend=m.trend.value,
                    limit=m.limit.condition if m.limit else None,
                    severity=m.limit.severity.value if m.limit else None,
                )
                for m in row.marks
            ],
            days_with_readings=adherence.days_with_readings if adherence else None,
            adherence=adherence.standing.value if adherence else None,
            minutes_this_month=patient.minutes_this_month,
            follow_up=patient.follow_up,
        )


class HuddlePageView(BaseModel):
    patients: list[HuddleRowView]
    total: int = Field(description="Active patients on the team's board")
    to_discuss: int = Field(description="Of them, those with a reason to discuss")
    next: int | None = Field(description="The next page's `offset`; null on the last page")


async def huddle(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    plans: PlanCache,
    team_id: int,
    offset: int,
    limit: int,
) -> HuddlePage:
    """A page of the team's board; the audit names the patients on it."""
    await team_in_view(conn, user, record, team_id)
    page = await huddle_board(conn, team_id, datetime.now(UTC), plans, offset, limit)
    await record("read", "huddle", team_id, [r.patient.patient_id for r in page.rows] or [None])
    return page


@router.get(
    "/care-teams/{team_id}/huddle",
    summary="A page of the team's huddle board: its active patients, those to discuss first",
)
async def get_huddle(
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    plans: Plans,
    team_id: int,
    offset: Offset = 0,
    limit: PageLimit = 100,
) -> HuddlePageView:
    page = await huddle(conn, user, record, plans, team_id, offset, limit)
    return HuddlePageView(
        patients=[HuddleRowView.of(r) for r in page.rows],
        total=page.total,
        to_discuss=page.to_discuss,
        next=page.next,
    )
