"""Patients over HTTP: enrol (with a care plan from guideline templates), look up, and
their alerts. Sign-in and per-team access arrive with the access-control issue."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Self

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field, model_validator

from rpm.alerts import repository as alerts
from rpm.alerts.repository import AlertRecord
from rpm.api.deps import Actor, Conn
from rpm.patients import registry
from rpm.patients.registry import NewPatient, PatientRecord
from rpm.rules import care_plans
from rpm.rules.plan import CarePlan
from rpm.rules.templates import TEMPLATES, plan_from_templates

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])

_ERRORS: dict[int | str, dict[str, str]] = {
    404: {"description": "No such patient"},
    409: {"description": "The external reference is taken"},
}


class Enrolment(BaseModel):
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

    @model_validator(mode="after")
    def _one_plan(self) -> Self:
        if self.templates and self.care_plan is not None:
            raise ValueError("give templates or a care plan, not both")
        return self


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Enrol a patient, with a first care plan",
    responses=_ERRORS,
)
async def enrol(conn: Conn, actor: Actor, enrolment: Enrolment) -> PatientRecord:
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
            ),
        )
        if plan is not None:
            reason = (
                f"enrolment: templates {', '.join(enrolment.templates)}"
                if enrolment.templates
                else "enrolment"
            )
            await care_plans.save(conn, patient_id, plan, actor, reason, None, enrolment.templates)
    return await registry.get(conn, patient_id)


@router.get("", summary="Patients, by id")
async def list_patients(
    conn: Conn,
    after: Annotated[int, Query(ge=0, description="Start after this id (paging)")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    external_ref: Annotated[str | None, Query(description="Only the patient with this")] = None,
) -> list[PatientRecord]:
    return await registry.list_patients(conn, after, limit, external_ref)


@router.get("/{patient_id}", summary="One patient", responses=_ERRORS)
async def get(conn: Conn, patient_id: int) -> PatientRecord:
    return await registry.get(conn, patient_id)


@router.get(
    "/{patient_id}/alerts",
    summary="The patient's alerts, most severe first",
    responses=_ERRORS,
)
async def patient_alerts(
    conn: Conn,
    patient_id: int,
    include_resolved: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertRecord]:
    await registry.get(conn, patient_id)
    return await alerts.for_patient(conn, patient_id, include_resolved, limit)


class CareTeamChoice(BaseModel):
    care_team_id: int | None = Field(description="null: no team")


@router.put(
    "/{patient_id}/care-team",
    summary="Put the patient in a care team's care (its worklist, its on-call SMS)",
    responses=_ERRORS,
)
async def set_care_team(conn: Conn, patient_id: int, choice: CareTeamChoice) -> PatientRecord:
    return await registry.set_care_team(conn, patient_id, choice.care_team_id)
