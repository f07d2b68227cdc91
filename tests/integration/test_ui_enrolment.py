"""Running the programme from the browser against the real service: enrolling a patient
(refusals beside their fields), pausing, resuming and discharging with a reason, giving and
swapping devices, and a first care plan from a template with its preview; each through the
API's own functions, so refused and audited as the API's are."""

from __future__ import annotations

import html
import re

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import Clinic
from tests.support import (
    TEST_PASSWORD,
    add_user,
    assert_every_control_is_labelled,
    browser_csrf,
    browser_sign_in,
)


@pytest.fixture
def manager(db_url: str, clinic: Clinic) -> str:
    """manager-1, Team A's care manager, signed in in the browser."""
    staff = clinic.first.staff("manager-1", "Care Manager One", role="care_manager")
    add_user(db_url, "manager-1", "care_manager", TEST_PASSWORD, staff)
    return "manager-1"


def _csrf(db_url: str, username: str) -> dict[str, str]:
    return {"X-CSRF-Token": browser_csrf(db_url, username)}


def _audited(db_url: str, username: str, action: str) -> list[tuple[str, int | None, dict]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT resource, patient_id, details FROM audit_event"
            " WHERE username = %s AND action = %s ORDER BY id",
            [username, action],
        ).fetchall()
    return [(r, p, d) for r, p, d in rows]


def _enrolment(**fields: str | list[str]) -> dict[str, str | list[str]]:
    return {
        "external_ref": "MRN-NEW",
        "given_name": "Test",
        "family_name": "Patient",
        "time_zone": "America/Chicago",
        "templates": ["hypertension"],
    } | fields


def test_a_care_manager_enrols_a_patient_with_refusals_beside_fields(
    ui_client: TestClient, db_url: str, clinic: Clinic, manager: str
) -> None:
    browser_sign_in(ui_client, manager)
    form = ui_client.get("/ui/patients/new")
    assert form.status_code == 200
    assert_every_control_is_labelled(form.text)
    # Their own team only, and the guideline templates by condition.
    assert f'<option value="{clinic.first.team_id}">Team A</option>' in form.text
    assert "Team B" not in form.text
    assert "No team yet" not in form.text
    assert 'value="heart_failure"' in form.text
    csrf = _csrf(db_url, manager)

    team = str(clinic.first.team_id)
    refused = ui_client.post(
        "/ui/patients/new",
        data=_enrolment(given_name=" ", time_zone="Mars/Olympus", care_team_id=team),
        headers=csrf,
    )
    assert refused.status_code == 422
    text = html.unescape(refused.text)
    assert "The patient was not enrolled: 2 fields to correct" in text
    assert '<span id="given_name-error" class="field-error">Required.</span>' in text
    assert re.search(
        r'id="time_zone-error" class="field-error">Time zone \'Mars/Olympus\' is not an IANA', text
    )
    assert 'aria-invalid="true"' in text
    # What was entered is kept.
    assert 'value="MRN-NEW"' in text
    assert re.search(r'value="hypertension" checked', text)

    # Another team: refused beside the field, as the API refuses it (403, audited).
    other = ui_client.post(
        "/ui/patients/new",
        data=_enrolment(care_team_id=str(clinic.second.team_id)),
        headers=csrf,
    )
    assert other.status_code == 422
    assert "may put patients only in their own care teams" in html.unescape(other.text)
    assert _audited(db_url, manager, "denied")[-1][0] == "care_team"

    done = ui_client.post(
        "/ui/patients/new",
        data=_enrolment(care_team_id=team, birth_date="1950-02-03"),
        headers=csrf,
        follow_redirects=False,
    )
    assert done.status_code == 303
    patient = int(done.headers["location"].split("/")[-1].split("?")[0])
    assert done.headers["location"] == f"/ui/patients/{patient}?done=enrolled"
    page = ui_client.get(done.headers["location"])
    assert "Enrolled." in page.text
    assert "Version 1</a>" in page.text
    assert _audited(db_url, manager, "enrol") == [("patient", patient, {})]
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT p.care_team_id, p.time_zone, p.birth_date::text, c.version"
            " FROM patient p JOIN care_plan c ON c.patient_id = p.id WHERE p.id = %s",
            [patient],
        ).fetchone()
    assert row == (clinic.first.team_id, "America/Chicago", "1950-02-03", 1)

    # The reference is now taken: said beside it.
    again = ui_client.post("/ui/patients/new", data=_enrolment(care_team_id=team), headers=csrf)
    assert again.status_code == 422
    taken = "A patient with external reference 'MRN-NEW' is already enrolled"
    assert f'id="external_ref-error" class="field-error">{taken}' in html.unescape(again.text)


def test_a_nurse_may_not_enrol(ui_client: TestClient, db_url: str, clinic: Clinic) -> None:
    browser_sign_in(ui_client, "nurse-1")
    assert ui_client.get("/ui/patients/new").status_code == 403
    refused = ui_client.post(
        "/ui/patients/new",
        data=_enrolment(care_team_id=str(clinic.first.team_id)),
        headers=_csrf(db_url, "nurse-1") | {"HX-Request": "true"},
    )
    assert refused.status_code == 403
    assert (
        refused.text
        == "a user with the role nurse may not enrol patients or change their care team"
    )
    # The patients list offers enrolment to those who may only.
    assert "/ui/patients/new" not in ui_client.get("/ui/patients").text


def test_pause_resume_and_discharge_with_a_reason(
    ui_client: TestClient, db_url: str, clinic: Clinic, manager: str
) -> None:
    patient = clinic.first.patient("MRN-A1")
    browser_sign_in(ui_client, "nurse-1")
    assert "Pause monitoring" not in ui_client.get(f"/ui/patients/{patient}").text
    refused = ui_client.post(
        f"/ui/patients/{patient}/status",
        data={"status": "paused", "reason": "x"},
        headers=_csrf(db_url, "nurse-1"),
    )
    assert refused.status_code == 403

    browser_sign_in(ui_client, manager)
    csrf = _csrf(db_url, manager)
    page = ui_client.get(f"/ui/patients/{patient}")
    assert "Pause monitoring" in page.text
    assert "Resume monitoring" not in page.text
    no_reason = ui_client.post(
        f"/ui/patients/{patient}/status", data={"status": "paused", "reason": " "}, headers=csrf
    )
    assert no_reason.status_code == 422
    paused = ui_client.post(
        f"/ui/patients/{patient}/status",
        data={"status": "paused", "reason": "In hospital from today"},
        headers=csrf,
    )
    assert paused.status_code == 200
    assert str(paused.url).endswith(f"/ui/patients/{patient}?done=paused")
    text = html.unescape(paused.text)
    assert "Monitoring paused: no alerts are raised until it is resumed." in text
    assert re.search(r'id="status-change">\s*Paused\s*<time[^>]*>[^<]+</time>\s*by manager-1:'
                     r" In hospital from today", text)  # fmt: skip
    assert "Paused: readings are stored, and raise no alerts." in text
    assert "Resume monitoring" in text
    resumed = ui_client.post(
        f"/ui/patients/{patient}/status",
        data={"status": "active", "reason": "Home again"},
        headers=csrf,
    )
    assert "Monitoring resumed." in resumed.text
    ui_client.post(
        f"/ui/patients/{patient}/status",
        data={"status": "discharged", "reason": "Programme completed"},
        headers=csrf,
    )
    assert [d for r, p, d in _audited(db_url, manager, "change") if r == "status"] == [
        {"from": "active", "to": "paused", "reason": "In hospital from today"},
        {"from": "paused", "to": "active", "reason": "Home again"},
        {"from": "active", "to": "discharged", "reason": "Programme completed"},
    ]
    # Another team's patient is out of reach, as on the API.
    outsider = clinic.second.patient("MRN-B1")
    gone = ui_client.post(
        f"/ui/patients/{outsider}/status",
        data={"status": "paused", "reason": "x"},
        headers=csrf,
    )
    assert gone.status_code == 404


def test_an_admin_gives_and_swaps_devices_on_the_patient_page(
    ui_client: TestClient, db_url: str, clinic: Clinic, manager: str
) -> None:
    patient = clinic.first.patient("MRN-A1")
    for serial in ("BP-1", "BP-2"):
        clinic.first.call(
            "POST", "/api/v1/devices", {"serial": serial, "kind": "blood_pressure_cuff"}
        )
    browser_sign_in(ui_client, manager)
    # Devices are admins' (as on the API): a care manager sees no device actions.
    assert "Give this device" not in ui_client.get(f"/ui/patients/{patient}").text
    refused = ui_client.post(
        f"/ui/patients/{patient}/devices", data={"serial": "BP-1"}, headers=_csrf(db_url, manager)
    )
    assert refused.status_code == 403

    browser_sign_in(ui_client, "admin-1")
    csrf = _csrf(db_url, "admin-1")
    page = ui_client.get(f"/ui/patients/{patient}")
    assert_every_control_is_labelled(page.text)
    assert '<option value="BP-1">BP-1 (blood pressure cuff)</option>' in page.text
    given = ui_client.post(f"/ui/patients/{patient}/devices", data={"serial": "BP-1"}, headers=csrf)
    assert "Device BP-1 is now this patient's." in html.unescape(given.text)
    assert 'name="replaces" value="BP-1"' in given.text
    swapped = ui_client.post(
        f"/ui/patients/{patient}/devices", data={"serial": "BP-2", "replaces": "BP-1"}, headers=csrf
    )
    assert "Device BP-2 is now this patient's." in html.unescape(swapped.text)
    devices = clinic.first.call("GET", f"/api/v1/devices?patient_id={patient}", None)
    assert [d["serial"] for d in devices] == ["BP-2"]
    free = clinic.first.call("GET", "/api/v1/devices?unassigned=true", None)
    assert [d["serial"] for d in free] == ["BP-1"]
    # Audited as the API's are: each naming the patient.
    assert [(r, p) for r, p, _ in _audited(db_url, "admin-1", "assign")] == [
        ("device", patient),
        ("device", patient),
    ]
    assert [(r, p) for r, p, _ in _audited(db_url, "admin-1", "unassign")] == [("device", patient)]
    # A swap names one of the patient's devices, or is refused in words.
    other = clinic.first.patient("MRN-A2")
    wrong = ui_client.post(
        f"/ui/patients/{other}/devices", data={"serial": "BP-1", "replaces": "BP-2"}, headers=csrf
    )
    assert wrong.status_code == 409
    assert "Device BP-2 is not patient" in html.unescape(wrong.text)


def test_a_first_care_plan_from_a_template_with_its_preview(
    ui_client: TestClient, db_url: str, clinic: Clinic, manager: str
) -> None:
    browser_sign_in(ui_client, manager)
    csrf = _csrf(db_url, manager)
    team = str(clinic.first.team_id)
    done = ui_client.post(
        "/ui/patients/new",
        data=_enrolment(care_team_id=team, templates=[]),
        headers=csrf,
        follow_redirects=False,
    )
    patient = int(done.headers["location"].split("/")[-1].split("?")[0])
    page = ui_client.get(f"/ui/patients/{patient}?done=enrolled")
    assert "give one from a template" in page.text
    plan_page = ui_client.get(f"/ui/patients/{patient}/care-plan")
    assert "Give a care plan from a template" in plan_page.text
    assert_every_control_is_labelled(plan_page.text)

    path = f"/ui/patients/{patient}/care-plan/template"
    preview = ui_client.post(
        f"{path}/preview",
        data={"templates": ["heart_failure"]},
        headers=csrf | {"HX-Request": "true"},
    )
    assert preview.status_code == 200
    assert "Preview, not saved" in preview.text
    assert "there is no plan in force to compare" in preview.text
    none_chosen = ui_client.post(f"{path}/preview", data={}, headers=csrf | {"HX-Request": "true"})
    assert none_chosen.status_code == 422
    assert "Choose at least one condition" in none_chosen.text
    assert _version_of(db_url, patient) is None

    no_reason = ui_client.post(path, data={"templates": ["heart_failure"]}, headers=csrf)
    assert no_reason.status_code == 422
    assert "Say why the plan changes" in no_reason.text
    saved = ui_client.post(
        path, data={"templates": ["heart_failure"], "reason": "Heart failure clinic"}, headers=csrf
    )
    assert "Saved: the care plan is now at version 1." in saved.text
    assert _version_of(db_url, patient) == 1
    # From a form made before that save: the API's 409 sentence.
    stale = ui_client.post(path, data={"templates": ["diabetes"], "reason": "x"}, headers=csrf)
    assert stale.status_code == 409
    assert (
        f"Patient {patient}'s care plan is at version 1, not none: reload it, reapply your change"
        in html.unescape(stale.text)
    )
    again = ui_client.post(
        path,
        data={"templates": ["heart_failure", "diabetes"], "reason": "Diabetes too",
              "based_on_version": "1"},
        headers=csrf,
    )  # fmt: skip
    assert "now at version 2" in again.text
    assert [d for r, p, d in _audited(db_url, manager, "change") if r == "care_plan"] == [
        {"version": 1},
        {"version": 2},
    ]


def _version_of(db_url: str, patient: int) -> int | None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT version FROM care_plan WHERE patient_id = %s", [patient]
        ).fetchone()
    return None if row is None else int(row[0])


def test_a_care_manager_edits_the_missed_readings_rule_and_sms_routing(
    ui_client: TestClient, db_url: str, clinic: Clinic, manager: str
) -> None:
    patient = clinic.first.patient("MRN-A1")
    browser_sign_in(ui_client, manager)
    page = ui_client.get(f"/ui/patients/{patient}/care-plan")
    assert_every_control_is_labelled(page.text)
    assert 'id="rule-missed_readings-days" name="rule:missed_readings:days"' in page.text
    form = {
        "based_on_version": "1",
        "rule:missed_readings:days": "5",
        "rule:missed_readings:severity": "high",
        "rule:missed_readings:expects": "",
        "rule:missed_readings:expects:blood_pressure": "on",
        "rule:missed_readings:expects:body_weight": "on",
        "notify:sms_from": "plan",
        "notify:sms:critical": "on",
        "reason": "Weekly readings at home",
    }
    csrf = _csrf(db_url, manager)
    refused = ui_client.post(
        f"/ui/patients/{patient}/care-plan",
        data=form | {"rule:missed_readings:days": "0"},
        headers=csrf,
    )
    assert refused.status_code == 422
    assert "Rule missed_readings, days: input should be greater than or equal to 1" in (
        html.unescape(refused.text)
    )
    saved = ui_client.post(f"/ui/patients/{patient}/care-plan", data=form, headers=csrf)
    assert "Saved: the care plan is now at version 2." in saved.text
    text = html.unescape(saved.text)
    assert "missed_readings: days 3 → 5" in text
    assert "missed_readings: severity 'warning' → 'high'" in text
    assert "severities sent by SMS: none → 'critical'" in text
    plan = clinic.first.call("GET", f"/api/v1/patients/{patient}/care-plan", None)["plan"]
    missed = next(r for r in plan["rules"] if r["id"] == "missed_readings")
    assert (missed["days"], missed["severity"]) == (5, "high")
    assert missed["expects"] == ["blood_pressure", "body_weight"]
    assert plan["notify"] == {"sms": ["critical"]}
