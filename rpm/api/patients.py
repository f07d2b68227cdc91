"""Patients over HTTP: enrol (with a care plan from guideline templates), look up, put in
a care team, pause or discharge, and their alerts. A nurse or care manager sees the
patients of their own care teams only; every read and change is audited."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal, Self

from fastapi import APIRouter, Query, status
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rpm.alerts import repository as alerts
from rpm.alerts.repository import AlertRecord
from rpm.api import problems
from rpm.api.deps import (
    Audit,
    AuditTrail,
    Conn,
    EnrolsPatients,
    PageLimit,
    ReadsPatients,
    RequestBody,
    check_team_choice,
    patient_in_view,
)
from rpm.api.values import in_utc
from rpm.auth.access import Principal
from rpm.patients import registry
from rpm.patients.registry import NewPatient, PatientRecord
from rpm.rules import care_plans
from rpm.rules.plan import CarePlan
from rpm.rules.templates import TEMPLATES, plan_from_templates

router = APIRouter(
    prefix="/api/v1/patients",
    tags=["patients"],
    responses=problems.errors(
        {
            404: "No such patient",
            409: "The external reference is taken",
        }
    ),
)


MAX_BACKDATED_DAYS = 90


class Enrolment(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "external_ref": "MRN-000123",
                    "given_name": "Test",
                    "family_name": "Patient",
                    "birth_date": "1956-04-12",
                    "time_zone": "America/Chicago",
                    "templates": ["hypertension"],
                    "care_team_id": 1,
                }
            ]
        }
    )

    external_ref: str = Field(min_length=1, max_length=100, description="e.g. the MRN")
    given_name: str = Field(min_length=1, max_length=200)
    family_name: str = Field(min_length=1, max_length=200)
    birth_date: date | None = None
    time_zone: str = Field(description="IANA name: the patient's days, for missed readings")
    templates: list[str] = Field(
        default=[],
        description=f"Guideline templates for the first care plan: {', '.join(TEMPLATES)}",
    )
    care_plan: CarePlan | None = Field(None, description="A full plan instead of templates")
    care_team_id: int | None = Field(
        None, description="The care team in charge; a care manager must name one of theirs"
    )
    enrolled_at: datetime | None = Field(
        None,
        description="When the patient was enrolled, when that was before now (an enrolment"
        f" entered afterwards): at most {MAX_BACKDATED_DAYS} days ago. Monitoring, adherence"
        " and billing periods count from it.",
    )

    @field_validator("time_zone")
    @classmethod
    def _iana(cls, value: str) -> str:
        # Refused here, not only by the registry, so that the refusal names the field.
        try:
            registry.time_zone(value)
        except registry.PatientError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("enrolled_at")
    @classmethod
    def _past_and_recent(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = in_utc(value)
        now = datetime.now(UTC)
        if value > now + timedelta(minutes=5):
            raise ValueError("must not be in the future")
        if value < now - timedelta(days=MAX_BACKDATED_DAYS):
            raise ValueError(f"must be within the last {MAX_BACKDATED_DAYS} days")
        return value

    @model_validator(mode="after")
    def _one_plan(self) -> Self:
        if self.templates and self.care_plan is not None:
            raise ValueError("give templates or a care plan, not both")
        return self


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Enrol a patient, with a first care plan",
)
async def enrol(
    conn: Conn, user: EnrolsPatients, record: Audit, enrolment: Enrolment
) -> PatientRecord:
    return await enrol_patient(conn, user, record, enrolment)


async def enrol_patient(
    conn: AsyncConnection[TupleRow], user: Principal, record: AuditTrail, enrolment: Enrolment
) -> PatientRecord:
    """Enrol the patient in the care team (one of the user's, `check_team_choice`), with
    a first plan from the enrolment's templates or plan; audited. For the API and the
    enrolment page alike."""
    await check_team_choice(user, record, enrolment.care_team_id)
    plan = enrolment.care_plan
    if plan is None and enrolment.templates:
        plan = plan_from_templates(enrolment.templates)
    async with conn.transaction():
        patient_id = await registry.enrol(
            conn,
            NewPatient(
                enrolment.external_ref,
                enrolment.given_name,
                enrolment.family_name,
                enrolment.time_zone,
                enrolment.birth_date,
                enrolment.enrolled_at,
            ),
        )
        if enrolment.care_team_id is not None:
            await registry.set_care_team(conn, patient_id, enrolment.care_team_id)
        if plan is not None:
            reason = (
                f"enrolment: templates {', '.join(enrolment.templates)}"
                if enrolment.templates
                else "enrolment"
            )
            await care_plans.save(
                conn, patient_id, plan, user.username, reason, None, enrolment.templates
            )
    await record("enrol", "patient", patient_id, [patient_id])
    return await registry.get(conn, patient_id)


@router.get("", summary="Patients, by id: those of your care teams")
async def list_patients(
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    after: Annotated[int, Query(ge=0, description="Start after this id (paging)")] = 0,
    limit: PageLimit = 100,
    external_ref: Annotated[str | None, Query(description="Only the patient with this")] = None,
) -> list[PatientRecord]:
    return await read_patients(conn, user, record, after, limit, external_ref)


async def read_patients(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    after: int,
    limit: int,
    external_ref: str | None = None,
) -> list[PatientRecord]:
    """A page of the patients of the user's care teams, by id, its read audited (a row per
    patient): for the API and the patients page alike."""
    found = await registry.list_patients(conn, after, limit, external_ref, user.visible_teams())
    await record("read", "patients", patient_ids=[p.id for p in found])
    return found


@router.get("/{patient_id}", summary="One patient")
async def get(conn: Conn, user: ReadsPatients, record: Audit, patient_id: int) -> PatientRecord:
    return await read_patient(conn, user, record, patient_id)


async def read_patient(
    conn: AsyncConnection[TupleRow], user: Principal, record: AuditTrail, patient_id: int
) -> PatientRecord:
    """The patient, if in the user's view (`patient_in_view`), the read audited: for the
    API and the UI's pages alike."""
    patient = await patient_in_view(conn, user, record, patient_id)
    await record("read", "patient", patient_id, [patient_id])
    return patient


class PatientAlertsPage(BaseModel):
    alerts: list[AlertRecord]
    # Pass as `before` for the next (older) page; null on the last page.
    next: int | None


@router.get(
    "/{patient_id}/alerts",
    summary="The patient's alerts, newest first (open ones only, unless asked)",
)
async def patient_alerts(
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    patient_id: int,
    include_resolved: bool = False,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="The previous page's `next`")
    ] = None,
    limit: PageLimit = 100,
) -> PatientAlertsPage:
    found = await read_patient_alerts(
        conn, user, record, patient_id, include_resolved, limit + 1, before
    )
    more = len(found) > limit
    found = found[:limit]
    return PatientAlertsPage(alerts=found, next=found[-1].id if more else None)


async def read_patient_alerts(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    include_resolved: bool,
    limit: int,
    before_id: int | None = None,
) -> list[AlertRecord]:
    """The patient's alerts, newest first (`alerts.for_patient`), if in the user's view,
    the read audited: for the API and the patient page alike."""
    await patient_in_view(conn, user, record, patient_id)
    found = await alerts.for_patient(conn, patient_id, include_resolved, limit, before_id)
    await record("read", "alerts", patient_ids=[patient_id])
    return found


class CareTeamChoice(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"care_team_id": 1}]})

    care_team_id: int | None = Field(description="null: no team (admins only)")


@router.put(
    "/{patient_id}/care-team",
    summary="Put the patient in a care team's care (its worklist, its on-call SMS)",
)
async def set_care_team(
    conn: Conn, user: EnrolsPatients, record: Audit, patient_id: int, choice: CareTeamChoice
) -> PatientRecord:
    before = await patient_in_view(conn, user, record, patient_id)
    await check_team_choice(user, record, choice.care_team_id)
    patient = await registry.set_care_team(conn, patient_id, choice.care_team_id)
    await record(
        "change",
        "care_team",
        patient_id,
        [patient_id],
        {"from": before.care_team_id, "to": choice.care_team_id},
    )
    return patient


class StatusChange(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "paused", "reason": "In hospital from today; resume when discharged"}
            ]
        }
    )

    status: Literal["active", "paused", "discharged"] = Field(
        description="Paused (in hospital, travelling) and discharged patients raise no alerts"
    )
    reason: str = Field(min_length=1, max_length=1000, description="Why: kept in the audit trail")


@router.put(
    "/{patient_id}/status",
    summary="Pause, discharge or resume monitoring: only active patients raise alerts",
)
async def set_status(
    conn: Conn, user: EnrolsPatients, record: Audit, patient_id: int, change: StatusChange
) -> PatientRecord:
    return await change_status(conn, user, record, patient_id, change)


async def change_status(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    change: StatusChange,
) -> PatientRecord:
    """The patient's new status, if in the user's view; audited with the reason. For the
    API and the patient page alike."""
    before = await patient_in_view(conn, user, record, patient_id)
    patient = await registry.set_status(conn, patient_id, change.status)
    await record(
        "change",
        "status",
        patient_id,
        [patient_id],
        {"from": before.status, "to": change.status, "reason": change.reason},
    )
    return patient
