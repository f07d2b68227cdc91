"""A patient's place in the programme, from the browser: the enrolment form
(/ui/patients/new), pausing, resuming or discharging them with a reason, and their devices
(give them an unassigned one, or swap one for another).

Each goes through the API's own audited functions (`enrol_patient`, `change_status`,
`read_devices`, `assign_device`, `unassign_device`), behind the same permissions, so the
pages refuse and audit exactly as `/api/v1` does: a nurse may not enrol, only admins
manage devices. The enrolment form's refusals are said beside their fields.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import available_timezones

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import ValidationError

from rpm.api.deps import AuditTrail, Conn, DeviceIdentities, Forbidden
from rpm.api.devices import assign_device, read_device, read_devices, unassign_device
from rpm.api.patients import Enrolment, StatusChange, change_status, enrol_patient
from rpm.auth import audit
from rpm.auth.access import Permission, Principal
from rpm.auth.audit import AuditFilter
from rpm.care_teams import registry as care_teams
from rpm.care_teams.registry import CareTeamRecord
from rpm.devices import registry as devices
from rpm.patients.registry import PatientConflict, PatientRecord
from rpm.rules.templates import TEMPLATES
from rpm.web.deps import (
    PREFIX,
    BrowserAudit,
    BrowserEnrolsPatients,
    BrowserManagesDevices,
    error_response,
    render,
)
from rpm.web.devices import NO_STORE, device_context

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# The enrolment form's fields, as the API's `Enrolment` names them.
_FIELDS = ("external_ref", "given_name", "family_name", "birth_date", "time_zone", "care_team_id")
# Offered in the time zone field's list (any IANA name is accepted).
ZONES = sorted(available_timezones() - {"localtime", "Factory"})


def patient_path(patient_id: int, done: str | None = None) -> str:
    return f"{PREFIX}/patients/{patient_id}" + (f"?{urlencode({'done': done})}" if done else "")


async def teams_to_choose(conn: AsyncConnection[TupleRow], user: Principal) -> list[CareTeamRecord]:
    """The care teams the user may put a patient in (`check_team_choice`): an admin's, all."""
    return await care_teams.list_teams(conn, 0, 1000, user.visible_teams())


@router.get("/patients/new")
async def enrol_page(request: Request, conn: Conn, user: BrowserEnrolsPatients) -> Response:
    context = await _form(conn, user.principal, {"templates": []}, {})
    return render(request, user, "patient_new.html", context)


@router.post("/patients/new")
async def enrol(
    request: Request, conn: Conn, user: BrowserEnrolsPatients, record: BrowserAudit
) -> Response:
    """Enrol as the API does, then the patient's page; else the form again, each refusal
    beside its field."""
    form = await request.form()
    entered: dict[str, Any] = {
        name: value.strip()
        for name in _FIELDS
        if isinstance(value := form.get(name), str) and value.strip()
    }
    entered["templates"] = [t for t in form.getlist("templates") if isinstance(t, str)]
    errors: dict[str, str] = {}
    try:
        enrolment = Enrolment.model_validate(entered)
        patient = await enrol_patient(conn, user.principal, record, enrolment)
    except ValidationError as exc:
        errors = _field_errors(exc)
    except PatientConflict as exc:
        errors["external_ref"] = str(exc)
    except Forbidden as exc:
        errors["care_team_id"] = str(exc)
    else:
        return RedirectResponse(patient_path(patient.id, "enrolled"), 303)
    context = await _form(conn, user.principal, entered, errors)
    return render(request, user, "patient_new.html", context, 422)


def _field_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic's refusals by field, in words (a missing field is "required")."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] in ("missing", "string_too_short"):
            message = "required"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        errors.setdefault(field if field in (*_FIELDS, "templates") else "", message)
    return errors


async def _form(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    entered: dict[str, Any],
    errors: dict[str, str],
) -> dict[str, Any]:
    return {
        "entered": entered,
        "errors": errors,
        "teams": await teams_to_choose(conn, user),
        "may_leave_teamless": user.sees_all_patients,
        "templates": list(TEMPLATES.values()),
        "zones": ZONES,
    }


# What each status change is called, on its button and in the page's notice after it.
STATUS_WORDS = {"active": "resumed", "paused": "paused", "discharged": "discharged"}


@router.post("/patients/{patient_id}/status")
async def set_status(
    request: Request,
    conn: Conn,
    user: BrowserEnrolsPatients,
    record: BrowserAudit,
    patient_id: int,
    status: Annotated[str, Form()],
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Pause, resume or discharge (the API's `change_status`, audited with the reason),
    then the patient's page saying so; a refusal (no reason) is the API's 422."""
    try:
        change = StatusChange.model_validate({"status": status, "reason": reason.strip()})
    except ValidationError:
        words = "say why (the reason is kept in the audit trail), and pause, resume or discharge"
        return error_response(request, 422, words)
    await change_status(conn, user.principal, record, patient_id, change)
    return RedirectResponse(patient_path(patient_id, STATUS_WORDS[change.status]), 303)


@router.post("/patients/{patient_id}/devices")
async def give_device(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    identities: DeviceIdentities,
    patient_id: int,
    serial: Annotated[str, Form(min_length=1, max_length=200)],
    replaces: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Give the patient a device (the API's `assign_device`); `replaces`: the serial of
    the one it takes the place of, taken back first (`unassign_device`). Both audited.
    A device that was another patient's gets a new MQTT password: the device's page then
    shows it, once."""
    async with conn.transaction():
        if replaces:
            old = await read_device(conn, record, replaces)
            if old.patient_id != patient_id:
                raise devices.Conflict(f"device {replaces} is not patient {patient_id}'s")
            await unassign_device(conn, record, replaces, None)
        issued = await assign_device(conn, record, identities, serial, patient_id, None)
    if issued.secret is not None:
        context = await device_context(conn, record, identities, serial)
        outcome = f"device {serial} is now patient {patient_id}'s, with a new MQTT password"
        context |= {"outcome": outcome, "secret": issued.secret}
        return render(request, user, "device.html", context, headers=NO_STORE)
    return RedirectResponse(patient_path(patient_id, f"device:{serial}"), 303)


# Status changes are found among the patient's last this many audited changes.
_STATUS_LOOKBACK = 200
# Devices a patient can be given, offered at most this many (serial order).
DEVICE_CHOICES = 200


async def manage_context(
    conn: AsyncConnection[TupleRow], user: Principal, record: AuditTrail, patient: PatientRecord
) -> dict[str, Any]:
    """What the patient page shows of the patient's place in the programme: the last
    status change (who, when, why: from the audit trail, where the API keeps the reason),
    the status form for those who may enrol, and for admins the patient's devices and
    the unassigned ones to give them."""
    changes = await audit.query(
        conn, AuditFilter(patient_id=patient.id, action="change"), None, _STATUS_LOOKBACK
    )
    context: dict[str, Any] = {
        "status_change": next((e for e in changes if e.resource == "status"), None),
        "may_change_status": user.may(Permission.ENROL_PATIENTS),
        "may_change_plans": user.may(Permission.CHANGE_CARE_PLANS),
        "manages_devices": user.may(Permission.MANAGE_DEVICES),
    }
    if context["manages_devices"]:
        context["devices"] = await read_devices(conn, record, "", 100, patient.id)
        context["free_devices"] = await read_devices(conn, record, "", DEVICE_CHOICES, None, True)
    return context
