"""A patient's care plan: its limits, what its alerts led to (the nurses' resolve outcomes,
with a suggestion where a rule's were mostly not actionable), its versions (who changed
it, when, why) and the last change; for care managers, an editor of the limits with a
preview of what the proposed plan would have raised over the last 30 days, before it is
saved as a new version.

Reads, the dry run and the save go through the API's own functions (`read_current_plan`,
`read_plan_outcomes`, `read_plan_versions`, `read_plan_version`, `read_plan_diff`, `dry_run_plan`,
`replace_plan`), so the page sees, refuses and audits exactly as `/api/v1` does. The form
carries the version it was made from (`based_on_version`): a save after someone else's
is refused with the API's 409 sentence, never merged silently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from rpm.api.care_plans import (
    dry_run_plan,
    read_current_plan,
    read_plan_diff,
    read_plan_outcomes,
    read_plan_version,
    read_plan_versions,
    replace_plan,
)
from rpm.api.deps import AuditTrail, Conn, Rules, status_of
from rpm.api.patients import read_patient
from rpm.auth.access import Permission
from rpm.rules.care_plans import PlanVersion, StalePlan
from rpm.rules.engine import RuleEngine
from rpm.rules.plan import CarePlan
from rpm.rules.templates import TEMPLATES, UnknownTemplate, plan_from_templates
from rpm.web import plan_form
from rpm.web.deps import (
    PREFIX,
    BrowserAudit,
    BrowserChangesCarePlans,
    BrowserReadsPatients,
    BrowserUser,
    is_htmx,
    render,
)
from rpm.web.plan_form import FormRefused

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_PLAN = "/patients/{patient_id}/care-plan"

BasedOn = Annotated[int, Form(ge=1)]


@router.get(_PLAN)
async def care_plan_page(
    request: Request,
    conn: Conn,
    user: BrowserReadsPatients,
    record: BrowserAudit,
    patient_id: int,
    saved: int | None = None,
) -> Response:
    """The plan in force, its versions and its last change; the editor for those who may
    change it. `saved`: the version just saved, to say so."""
    context = await _page(conn, user, record, patient_id)
    if saved is not None:
        context["notice"] = f"Saved: the care plan is now at version {saved}."
    return render(request, user, "care_plan.html", context)


@router.post(f"{_PLAN}/preview")
async def preview(
    request: Request,
    conn: Conn,
    user: BrowserChangesCarePlans,
    record: BrowserAudit,
    rules: Rules,
    patient_id: int,
    based_on_version: BasedOn,
) -> Response:
    """What the plan of the form would have raised on the last 30 days beside what the
    plan in force did; nothing saved. To htmx, the preview alone; else the whole page."""
    entered = await _entered(request)
    base = await read_plan_version(conn, user.principal, record, patient_id, based_on_version)
    context: dict[str, Any] = {"titles": {r.id: r.title or r.id for r in base.plan.rules}}
    return await _preview(
        request, conn, user, record, rules, patient_id, context,
        lambda: plan_form.proposed_plan(base.plan, entered),
        lambda: _page(conn, user, record, patient_id, base, entered),
    )  # fmt: skip


@router.post(_PLAN)
async def save(
    request: Request,
    conn: Conn,
    user: BrowserChangesCarePlans,
    record: BrowserAudit,
    patient_id: int,
    based_on_version: BasedOn,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """The plan of the form as the patient's next version (audited as the API's change
    is), then the page saying so; or the form again, saying why not."""
    entered = await _entered(request)
    base = await read_plan_version(conn, user.principal, record, patient_id, based_on_version)
    try:
        proposed = plan_form.plan_to_save(base.plan, entered, reason)
        saved = await replace_plan(
            conn, user.principal, record, patient_id, proposed, reason.strip(), based_on_version
        )
    except (FormRefused, StalePlan) as exc:
        status = 422 if isinstance(exc, FormRefused) else status_of(exc)
        page = await _page(conn, user, record, patient_id, base, entered)
        page |= {"refusal": str(exc), "stale": isinstance(exc, StalePlan), "reason": reason}
        return render(request, user, "care_plan.html", page, status)
    location = f"{PREFIX}/patients/{patient_id}/care-plan?saved={saved.version}"
    return RedirectResponse(location, 303)


@router.post(f"{_PLAN}/template/preview")
async def template_preview(
    request: Request,
    conn: Conn,
    user: BrowserChangesCarePlans,
    record: BrowserAudit,
    rules: Rules,
    patient_id: int,
) -> Response:
    """What a plan from the chosen templates would have raised on the last 30 days,
    beside the plan in force (the API's dry run); nothing saved. To htmx, the preview
    alone; else the whole page."""
    names = await _templates_chosen(request)
    context: dict[str, Any] = {"chosen": names}
    return await _preview(
        request, conn, user, record, rules, patient_id, context,
        lambda: _from_templates(names), lambda: _page(conn, user, record, patient_id),
    )  # fmt: skip


async def _preview(
    request: Request,
    conn: AsyncConnection[TupleRow],
    user: BrowserUser,
    record: AuditTrail,
    rules: RuleEngine,
    patient_id: int,
    context: dict[str, Any],
    proposed_plan: Callable[[], CarePlan],
    whole_page: Callable[[], Awaitable[dict[str, Any]]],
) -> Response:
    """The dry run of the proposed plan (or why the form gives none): to htmx, the preview
    alone; else the whole page with it."""
    try:
        proposed = proposed_plan()
    except FormRefused as exc:
        context["preview_refusal"], status = str(exc), 422
    else:
        context |= await _dry_run(conn, user, record, rules, patient_id, proposed)
        status = 200
    if is_htmx(request):
        return render(request, user, "_dry_run.html", context, status)
    return render(request, user, "care_plan.html", await whole_page() | context, status)


@router.post(f"{_PLAN}/template")
async def save_template(
    request: Request,
    conn: Conn,
    user: BrowserChangesCarePlans,
    record: BrowserAudit,
    patient_id: int,
    based_on_version: Annotated[int | None, Form(ge=1)] = None,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """The plan of the chosen templates as the patient's next version (the API's
    `replace_plan`, audited, compare-and-set on `based_on_version`), then the page saying
    so; or the page again, saying why not."""
    names = await _templates_chosen(request)
    try:
        plan_form.check_reason(reason)
        saved = await replace_plan(
            conn,
            user.principal,
            record,
            patient_id,
            _from_templates(names),
            reason.strip(),
            based_on_version,
        )
    except (FormRefused, StalePlan) as exc:
        status = 422 if isinstance(exc, FormRefused) else status_of(exc)
        page = await _page(conn, user, record, patient_id)
        page |= {"template_refusal": str(exc), "chosen": names, "template_reason": reason}
        return render(request, user, "care_plan.html", page, status)
    location = f"{PREFIX}/patients/{patient_id}/care-plan?saved={saved.version}"
    return RedirectResponse(location, 303)


async def _templates_chosen(request: Request) -> list[str]:
    form = await request.form()
    return [name for name in form.getlist("templates") if isinstance(name, str)]


def _from_templates(names: list[str]) -> CarePlan:
    if not names:
        raise FormRefused("choose at least one condition: its template gives the plan's rules")
    try:
        return plan_from_templates(names)
    except UnknownTemplate as exc:
        raise FormRefused(str(exc)) from None


async def _dry_run(
    conn: AsyncConnection[TupleRow],
    user: BrowserUser,
    record: AuditTrail,
    rules: RuleEngine,
    patient_id: int,
    proposed: CarePlan,
) -> dict[str, Any]:
    """The preview's context: the API's dry run of `proposed`, and its counts by rule."""
    result = await dry_run_plan(conn, user.principal, record, rules, patient_id, proposed)
    current = result.current.by_rule if result.current else None
    return {
        "titles": {r.id: r.title or r.id for r in proposed.rules},
        "dry_run": result,
        "counts": plan_form.counts_by_rule(proposed, current, result.proposed.by_rule),
    }


async def _entered(request: Request) -> dict[str, str]:
    """The form's fields (Starlette keeps the form it parsed for the route's own fields)."""
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


async def _page(
    conn: AsyncConnection[TupleRow],
    user: BrowserUser,
    record: AuditTrail,
    patient_id: int,
    editing: PlanVersion | None = None,
    entered: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The page's context: the patient, the plan in force, its versions and last change,
    and the form over `editing` (default: the plan in force) showing what was `entered`."""
    principal = user.principal
    patient = await read_patient(conn, principal, record, patient_id)
    context: dict[str, Any] = {
        "patient": patient,
        "may_change": principal.may(Permission.CHANGE_CARE_PLANS),
        "reason": "",
        "templates": list(TEMPLATES.values()),
    }
    if patient.care_plan_version is None:
        return context | {"current": None}
    current = await read_current_plan(conn, principal, record, patient_id)
    versions = await read_plan_versions(conn, principal, record, patient_id)
    last_change = None
    if len(versions) > 1:
        newest, before = versions[0].version, versions[1].version
        diff = await read_plan_diff(conn, principal, record, patient_id, before, newest)
        last_change = plan_form.changes(diff)
    editing = editing or current
    return context | {
        "current": current,
        "versions": versions,
        "last_change": last_change,
        "outcomes": await read_plan_outcomes(conn, principal, record, patient_id),
        "editing": editing,
        "rules": plan_form.limit_fields(editing.plan, entered),
        "all_rules": plan_form.rule_fields(editing.plan, entered),
        "sms": plan_form.sms_fields(editing.plan, entered),
        "other_rules": plan_form.other_rules(editing.plan),
    }
