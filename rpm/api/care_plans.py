"""Care plans over HTTP: read, replace (a new version each time), history, compare, and
the dry run that shows what a proposed plan would have raised before it is saved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import BaseModel, ConfigDict, Field

from rpm.alerts import repository as alerts
from rpm.alerts.feedback import PlanFeedback, RuleFeedback, feedback
from rpm.alerts.lifecycle import Outcome
from rpm.api import problems
from rpm.api.deps import (
    Audit,
    AuditTrail,
    ChangesCarePlans,
    Conn,
    ReadsPatients,
    RequestBody,
    Rules,
    SignedInUser,
    patient_in_view,
)
from rpm.auth.access import Principal
from rpm.rules import care_plans
from rpm.rules.care_plans import PlanNotFound, PlanVersion, VersionSummary
from rpm.rules.engine import DryRunResult, RuleEngine
from rpm.rules.evaluate import Finding
from rpm.rules.plan import CarePlan, diff
from rpm.rules.templates import TEMPLATES, plan_from_templates

router = APIRouter(
    tags=["care plans"],
    responses=problems.errors(
        {
            404: "No such patient, plan or version",
            409: "The plan has changed since the version the edit started from",
        }
    ),
)
_PLAN = "/api/v1/patients/{patient_id}/care-plan"


class Template(BaseModel):
    name: str
    title: str
    plan: CarePlan


# What /docs shows for a plan: the hypertension template, as a clinician starts from it.
_EXAMPLE_PLAN = plan_from_templates(["hypertension"]).model_dump(mode="json")


class Replacement(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "plan": _EXAMPLE_PLAN,
                    "reason": "Reviewed at clinic: the guideline limits to start with",
                    "based_on_version": 1,
                }
            ]
        }
    )

    plan: CarePlan
    reason: str = Field(min_length=1, max_length=1000, description="Why: kept with the version")
    based_on_version: int | None = Field(
        description="The version the edit started from (null for a patient without a plan):"
        " if the plan has moved on since, the change is refused with 409"
    )


class Proposal(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"plan": _EXAMPLE_PLAN}]})

    plan: CarePlan


class Alert(BaseModel):
    rule_id: str
    severity: str
    at: datetime
    message: str


class DryRunOutcome(BaseModel):
    """What a plan raised over the period: one alert per episode of a rule."""

    alerts: int
    by_rule: dict[str, int]
    raised: list[Alert]

    @classmethod
    def of(cls, found: list[Finding]) -> DryRunOutcome:
        by_rule: dict[str, int] = {}
        for f in found:
            by_rule[f.rule_id] = by_rule.get(f.rule_id, 0) + 1
        return cls(
            alerts=len(found),
            by_rule=by_rule,
            raised=[Alert(rule_id=f.rule_id, severity=f.severity, at=f.at, message=f.message)
                    for f in found],
        )  # fmt: skip


class DryRun(BaseModel):
    since: datetime
    until: datetime
    readings: int = Field(description="Readings in the period")
    proposed: DryRunOutcome
    current: DryRunOutcome | None = Field(description="The plan in force, for comparison")


@router.get("/api/v1/care-plan-templates", summary="Guideline templates for enrolment")
async def templates(user: SignedInUser) -> list[Template]:
    return [Template(name=t.name, title=t.title, plan=plan_from_templates([t.name]))
            for t in TEMPLATES.values()]  # fmt: skip


@router.get(_PLAN, summary="The care plan in force")
async def current(conn: Conn, user: ReadsPatients, record: Audit, patient_id: int) -> PlanVersion:
    return await read_current_plan(conn, user, record, patient_id)


async def read_current_plan(
    conn: AsyncConnection[TupleRow], user: Principal, record: AuditTrail, patient_id: int
) -> PlanVersion:
    """The plan in force, if the patient is in the user's view; the read audited. This
    and the functions below serve the API and the UI's pages alike."""
    await patient_in_view(conn, user, record, patient_id)
    await record("read", "care_plan", patient_id, [patient_id])
    return await care_plans.current(conn, patient_id)


class RuleOutcomes(BaseModel):
    rule_id: str
    title: str
    in_plan: bool = Field(description="False: a rule since removed, whose alerts still count")
    resolved: int
    not_actionable: int = Field(description="Resolved as needing no action, or as an error")
    outcomes: dict[Outcome, int]
    suggestion: str | None = Field(description="When most of its alerts were not actionable")

    @classmethod
    def of(cls, rule: RuleFeedback) -> RuleOutcomes:
        return cls(
            rule_id=rule.rule_id,
            title=rule.title,
            in_plan=rule.in_plan,
            resolved=rule.resolved,
            not_actionable=rule.not_actionable,
            outcomes=rule.outcomes,
            suggestion=rule.suggestion,
        )


class PlanOutcomes(BaseModel):
    since: datetime
    resolved: int
    not_actionable: int
    outcomes: dict[Outcome, int]
    rules: list[RuleOutcomes]

    @classmethod
    def of(cls, since: datetime, found: PlanFeedback) -> PlanOutcomes:
        return cls(
            since=since,
            resolved=found.resolved,
            not_actionable=found.not_actionable,
            outcomes=found.outcomes,
            rules=[RuleOutcomes.of(rule) for rule in found.rules],
        )


@router.get(
    f"{_PLAN}/outcomes",
    summary="What nurses recorded when resolving the patient's alerts, per rule and for the plan",
)
async def outcomes(
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    patient_id: int,
    days: Annotated[int, Query(ge=1, le=730, description="Alerts resolved this recently")] = 90,
) -> PlanOutcomes:
    return await read_plan_outcomes(conn, user, record, patient_id, days)


async def read_plan_outcomes(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    days: int = 90,
) -> PlanOutcomes:
    """Resolve outcomes counted per rule of the plan in force (and of rules since removed),
    with a suggestion where a rule's alerts were mostly not actionable; the read audited."""
    await patient_in_view(conn, user, record, patient_id)
    await record("read", "alert_outcomes", patient_id, [patient_id])
    try:
        plan: CarePlan | None = (await care_plans.current(conn, patient_id)).plan
    except PlanNotFound:
        plan = None
    since = datetime.now(UTC) - timedelta(days=days)
    counts = await alerts.outcome_counts(conn, patient_id, since)
    return PlanOutcomes.of(since, feedback(plan, counts))


@router.put(_PLAN, summary="Replace the care plan: a new version")
async def replace(
    conn: Conn, user: ChangesCarePlans, record: Audit, patient_id: int, body: Replacement
) -> PlanVersion:
    return await replace_plan(
        conn, user, record, patient_id, body.plan, body.reason, body.based_on_version
    )


async def replace_plan(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    plan: CarePlan,
    reason: str,
    based_on_version: int | None,
) -> PlanVersion:
    """The plan as the patient's next version, by the user, if the plan is still at
    `based_on_version` (`StalePlan` otherwise); the change audited."""
    await patient_in_view(conn, user, record, patient_id)
    async with conn.transaction():
        saved = await care_plans.save(
            conn, patient_id, plan, user.username, reason, based_on_version
        )
    await record("change", "care_plan", patient_id, [patient_id], {"version": saved.version})
    return saved


@router.get(f"{_PLAN}/versions", summary="Every version, newest first")
async def versions(
    conn: Conn, user: ReadsPatients, record: Audit, patient_id: int
) -> list[VersionSummary]:
    return await read_plan_versions(conn, user, record, patient_id)


async def read_plan_versions(
    conn: AsyncConnection[TupleRow], user: Principal, record: AuditTrail, patient_id: int
) -> list[VersionSummary]:
    """Every version, newest first; the read audited."""
    await patient_in_view(conn, user, record, patient_id)
    await record("read", "care_plan_versions", patient_id, [patient_id])
    return await care_plans.versions(conn, patient_id)


@router.get(f"{_PLAN}/versions/{{version}}", summary="One version")
async def version(
    conn: Conn, user: ReadsPatients, record: Audit, patient_id: int, version: int
) -> PlanVersion:
    return await read_plan_version(conn, user, record, patient_id, version)


async def read_plan_version(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    version: int,
) -> PlanVersion:
    """One version; the read audited."""
    await patient_in_view(conn, user, record, patient_id)
    await record("read", "care_plan", patient_id, [patient_id], {"version": version})
    return await care_plans.version_of(conn, patient_id, version)


@router.get(f"{_PLAN}/diff", summary="What changed between two versions")
async def compare(
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    patient_id: int,
    from_version: Annotated[int, Query(alias="from", ge=1)],
    to_version: Annotated[int, Query(alias="to", ge=1)],
) -> dict[str, Any]:
    return await read_plan_diff(conn, user, record, patient_id, from_version, to_version)


async def read_plan_diff(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    from_version: int,
    to_version: int,
) -> dict[str, Any]:
    """What changed between two versions (`rpm.rules.plan.diff`); the read audited."""
    await patient_in_view(conn, user, record, patient_id)
    await record(
        "read", "care_plan", patient_id, [patient_id], {"from": from_version, "to": to_version}
    )
    old = await care_plans.version_of(conn, patient_id, from_version)
    new = await care_plans.version_of(conn, patient_id, to_version)
    return diff(old.plan, new.plan)


@router.post(
    f"{_PLAN}/dry-run",
    summary="What a proposed plan would have raised on the last 30 days of readings",
)
async def dry_run(
    conn: Conn,
    user: ChangesCarePlans,
    record: Audit,
    rules: Rules,
    patient_id: int,
    body: Proposal,
) -> DryRun:
    return await dry_run_plan(conn, user, record, rules, patient_id, body.plan)


async def dry_run_plan(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    rules: RuleEngine,
    patient_id: int,
    plan: CarePlan,
) -> DryRun:
    """What `plan` would have raised on the patient's last 30 days, beside what the plan
    in force did; nothing saved, the dry run audited."""
    patient = await patient_in_view(conn, user, record, patient_id)
    await record("dry_run", "care_plan", patient_id, [patient_id])
    zone = ZoneInfo(patient.time_zone)
    try:
        in_force: PlanVersion | None = await care_plans.current(conn, patient_id)
    except PlanNotFound:
        in_force = None
    next_version = (in_force.version if in_force else 0) + 1
    proposed = await rules.dry_run(conn, patient_id, zone, plan, next_version)
    now: DryRunResult | None = None
    if in_force is not None:
        now = await rules.dry_run(conn, patient_id, zone, in_force.plan, in_force.version)
    return DryRun(
        since=proposed.since,
        until=proposed.until,
        readings=proposed.readings,
        proposed=DryRunOutcome.of(proposed.alerts),
        current=None if now is None else DryRunOutcome.of(now.alerts),
    )
