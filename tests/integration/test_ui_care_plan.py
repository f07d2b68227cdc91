"""The care-plan page and editor against the real service: the limits, versions and last
change for anyone who may read the patient; for care managers, a preview of what the
edited plan would have raised over the last 30 days (nothing saved), and a save that makes
a new version, audited as the API's; a concurrent change refused with the API's 409
sentence; nurses refused (403), other teams' patients out of reach (404)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import Clinic
from tests.support import (
    TEST_PASSWORD,
    add_readings,
    add_user,
    bearer,
    browser_csrf,
    browser_sign_in,
)

NOW = datetime.now(UTC)


@pytest.fixture
def patient(db_url: str, clinic: Clinic) -> int:
    """A patient of Team A (hypertension plan, version 1) with 28 days of blood pressures:
    165 each morning, 185 on two of them; and manager-1, Team A's care manager."""
    manager = clinic.first.staff("manager-1", "Care Manager One", role="care_manager")
    add_user(db_url, "manager-1", "care_manager", TEST_PASSWORD, manager)
    patient = clinic.first.patient("MRN-A1")
    clinic.first.device("BP-1", "blood_pressure_cuff", patient)
    add_readings(
        db_url,
        "BP-1",
        patient,
        "blood_pressure",
        [
            (
                NOW - timedelta(days=day),
                {"systolic_mmhg": 185 if day in (5, 20) else 165, "diastolic_mmhg": 85},
            )
            for day in range(1, 29)
        ],
    )
    return patient


def _version(db_url: str, patient: int) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT version FROM care_plan WHERE patient_id = %s", [patient]
        ).fetchone()
    assert row is not None
    return int(row[0])


def _audited(db_url: str, username: str) -> list[tuple[str, str, str, int | None]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT action, resource, path, patient_id FROM audit_event WHERE username = %s"
            " AND action <> 'sign_in' ORDER BY id",
            [username],
        ).fetchall()
    return [(a, r, p, patient) for a, r, p, patient in rows]


def _form(based_on: int, **limits: str) -> dict[str, str]:
    """The editor's form: `bp_crisis_0="170"` is the field of bp_crisis's first limit."""
    fields = {"based_on_version": str(based_on)}
    for key, value in limits.items():
        rule, n = key.rsplit("_", 1)
        fields[f"limit:{rule}:{n}"] = value
    return fields


def test_the_plan_page_for_a_nurse_reads_and_refuses_changes(
    ui_client: TestClient, db_url: str, clinic: Clinic, patient: int
) -> None:
    browser_sign_in(ui_client, "nurse-1")
    page = ui_client.get(f"/ui/patients/{patient}/care-plan")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "<h1>Care plan of patient MRN-A1</h1>" in text
    # The limits, read only, each with its unit.
    assert '<input id="limit-' not in text
    assert re.search(
        r"<td>Systolic <span class=\"muted\">\(crisis\)</span></td>\s*<td>At or above</td>", text
    )
    assert re.search(r'<td class="nowrap">\s*180\s*mmHg\s*</td>', text)
    assert "Care managers of the patient's care team change the care plan." in text
    assert "Also in the plan, without limits: Missed readings (missed_readings)." in text
    # Versions: who, when, why; the first has no change before it.
    assert re.search(
        r'<tr id="version-1">\s*<td class="card-title">Version 1 <span class="muted">\(in force\)',
        text,
    )
    assert "enrolment: templates hypertension" in text
    assert "Version 1 is the first: nothing has changed yet." in text
    path = f"/ui/patients/{patient}/care-plan"
    assert _audited(db_url, "nurse-1") == [
        ("read", "patient", path, patient),
        ("read", "care_plan", path, patient),
        ("read", "care_plan_versions", path, patient),
        ("read", "alert_outcomes", path, patient),
    ]

    # A nurse may not preview or save: 403, audited, nothing saved.
    htmx = {"HX-Request": "true", "X-CSRF-Token": browser_csrf(db_url, "nurse-1")}
    for action in ("/preview", ""):
        refused = ui_client.post(
            f"/ui/patients/{patient}/care-plan{action}",
            data=_form(1, bp_crisis_0="170") | {"reason": "lower"},
            headers=htmx,
        )
        assert refused.status_code == 403
        assert refused.text == "a user with the role nurse may not change care plans"
    assert _version(db_url, patient) == 1
    denied = [row for row in _audited(db_url, "nurse-1") if row[0] == "denied"]
    assert [row[1] for row in denied] == ["change_care_plans", "change_care_plans"]

    # Another team's patient: as if there were none.
    theirs = clinic.second.patient("MRN-B1")
    hidden = ui_client.get(f"/ui/patients/{theirs}/care-plan")
    assert hidden.status_code == 404
    assert f"No patient with id {theirs}." in hidden.text


def test_preview_shows_what_the_edited_plan_would_have_raised_and_saves_nothing(
    ui_client: TestClient, db_url: str, patient: int
) -> None:
    browser_sign_in(ui_client, "manager-1")
    page = ui_client.get(f"/ui/patients/{patient}/care-plan").text
    assert '<input type="hidden" name="based_on_version" value="1">' in page
    assert re.search(
        r'<input id="limit-bp_crisis-0" name="limit:bp_crisis:0" type="number"[^>]* value="180"',
        page,
    )
    assert (
        '<label class="visually-hidden" for="limit-bp_crisis-0">Hypertensive crisis: critical'
        " limit, systolic at or above, in mmHg</label>" in page
    )
    assert 'aria-live="polite"' in page
    # Every control has its label.
    for control in re.findall(r'<(?:select|textarea|input)[^>]*\sid="([^"]+)"', page):
        assert f'for="{control}"' in page, control
    htmx = {"HX-Request": "true", "X-CSRF-Token": browser_csrf(db_url, "manager-1")}

    preview = ui_client.post(
        f"/ui/patients/{patient}/care-plan/preview", data=_form(1, bp_crisis_0="160"), headers=htmx
    )
    assert preview.status_code == 200, preview.text
    text = html.unescape(preview.text)
    assert text.startswith("<h3>Preview, not saved</h3>")
    # In force: two separate crisis episodes; at 160 every reading is over, one long one.
    assert "the proposed plan would have raised <strong>2 alerts</strong>;" in text
    assert "the plan in force raised 3." in text
    assert re.search(
        r'<tr id="count-bp_crisis">\s*<th scope="row">Hypertensive crisis <span class="muted">'
        r"\(bp_crisis\)</span></th>\s*<td>2</td>\s*<td>1</td>",
        text,
    )
    assert re.search(
        r'<tr id="count-bp_sustained_stage2">\s*<th[^>]*>.*</th>\s*<td>1</td>\s*<td>1</td>', text
    )
    assert "(care plan v2)" in text
    # Nothing saved; the dry run audited as the API's.
    assert _version(db_url, patient) == 1
    assert ("dry_run", "care_plan", f"/ui/patients/{patient}/care-plan/preview", patient) in (
        _audited(db_url, "manager-1")
    )

    # A form that makes no plan: the reason, in the preview's place.
    crossed = ui_client.post(
        f"/ui/patients/{patient}/care-plan/preview",
        data=_form(1, pulse_out_of_range_0="130"),
        headers=htmx,
    )
    assert crossed.status_code == 422
    assert (
        "Rule pulse_out_of_range: lower bound 130 bpm (below) is not below upper bound 120 bpm"
        " (above) for pulse: it would fire on every reading." in html.unescape(crossed.text)
    )
    garbled = ui_client.post(
        f"/ui/patients/{patient}/care-plan/preview", data=_form(1, bp_crisis_0="1 80"), headers=htmx
    )
    assert garbled.status_code == 422
    assert "Rule bp_crisis, limit 1 (systolic): '1 80' is not a number of mmHg." in html.unescape(
        garbled.text
    )

    # Without JavaScript, the preview is the whole page, the values as entered.
    plain = ui_client.post(
        f"/ui/patients/{patient}/care-plan/preview",
        data=_form(1, bp_crisis_0="160") | {"csrf_token": htmx["X-CSRF-Token"]},
    )
    assert plain.status_code == 200
    assert "<h1>Care plan of patient MRN-A1</h1>" in plain.text
    assert re.search(r'name="limit:bp_crisis:0"[^>]* value="160"', plain.text)
    assert "would have raised <strong>2 alerts</strong>" in plain.text
    assert _version(db_url, patient) == 1


def test_save_makes_a_new_version_and_a_stale_form_is_refused_in_words(
    ui_client: TestClient, db_url: str, patient: int
) -> None:
    browser_sign_in(ui_client, "manager-1")
    csrf = {"csrf_token": browser_csrf(db_url, "manager-1")}
    path = f"/ui/patients/{patient}/care-plan"

    no_reason = ui_client.post(path, data=_form(1, bp_crisis_0="170") | csrf)
    assert no_reason.status_code == 422
    assert "Say why the plan changes: the reason is kept with the version." in no_reason.text
    assert re.search(r'name="limit:bp_crisis:0"[^>]* value="170"', no_reason.text)
    unchanged = ui_client.post(path, data=_form(1, bp_crisis_0="180") | csrf | {"reason": "x"})
    assert unchanged.status_code == 422
    assert "Nothing was changed: there is nothing to save." in unchanged.text

    saved = ui_client.post(
        path,
        data=_form(1, bp_crisis_0="170") | csrf | {"reason": "Reviewed at clinic: earlier call"},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    assert saved.headers["Location"] == f"{path}?saved=2"
    assert _version(db_url, patient) == 2
    page = html.unescape(ui_client.get(saved.headers["Location"]).text)
    assert "Saved: the care plan is now at version 2." in page
    assert re.search(
        r'<tr id="version-2">\s*<td class="card-title">Version 2 <span class="muted">\(in force\)'
        r'</span></td>\s*<td data-label="Saved" class="nowrap">[^<]+UTC</td>\s*'
        r'<td data-label="By">manager-1</td>\s*'
        r'<td data-label="Why">Reviewed at clinic: earlier call</td>',
        page,
    )
    assert "From version 1 to 2, by manager-1:" in page
    assert "<li>bp_crisis: limit 1 (systolic ≥ 180 mmHg, critical): value 180 → 170</li>" in page
    assert '<input type="hidden" name="based_on_version" value="2">' in page
    assert ("change", "care_plan", path, patient) in _audited(db_url, "manager-1")
    with psycopg.connect(db_url) as conn:
        details = conn.execute(
            "SELECT details FROM audit_event WHERE action = 'change' AND resource = 'care_plan'"
        ).fetchone()
    assert details == ({"version": 2},)

    # A form still of version 1 (another tab, another care manager): refused with the
    # API's 409 sentence, nothing saved.
    stale = ui_client.post(path, data=_form(1, bp_crisis_0="175") | csrf | {"reason": "mine"})
    assert stale.status_code == 409
    text = html.unescape(stale.text)
    assert (
        f"Patient {patient}'s care plan is at version 2, not 1: reload it, reapply your change"
        " and save again." in text
    )
    assert f'<a href="{path}">open version 2, the plan in force</a>' in text
    assert re.search(r'name="limit:bp_crisis:0"[^>]* value="175"', text)
    assert _version(db_url, patient) == 2


def _resolved(ui_client: TestClient, db_url: str, patient: int, rule: str, outcome: str) -> None:
    """An alert as the rule engine opens it, resolved by nurse-1 through the API."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "INSERT INTO alert (patient_id, rule_id, plan_version, severity, message,"
            " latest_message, first_triggered_at, last_triggered_at, occurrences, opened_at)"
            " VALUES (%s, %s, 1, 'critical', 'm', 'm', now(), now(), 1, now()) RETURNING id",
            [patient, rule],
        ).fetchone()
    assert row is not None
    answer = ui_client.post(
        f"/api/v1/alerts/{row[0]}/resolve",
        json={"outcome": outcome, "note": "called"},
        headers=bearer(ui_client, "nurse-1", TEST_PASSWORD),
    )
    assert answer.status_code == 200, answer.text


def test_the_nurses_outcomes_per_rule_and_a_suggestion_for_a_rule_mostly_not_actionable(
    ui_client: TestClient, db_url: str, clinic: Clinic, patient: int
) -> None:
    for outcome in ["measurement_or_device_error"] * 4 + ["no_action_needed", "patient_contacted"]:
        _resolved(ui_client, db_url, patient, "systolic_low", outcome)
    for outcome in ["measurement_or_device_error"] * 5:
        _resolved(ui_client, db_url, patient, "bp_crisis", outcome)
    _resolved(ui_client, db_url, patient, "pulse_out_of_range", "medication_adjusted")
    _resolved(ui_client, db_url, patient, "retired_rule", "no_action_needed")

    manager = bearer(ui_client, "manager-1", TEST_PASSWORD)
    found = ui_client.get(f"/api/v1/patients/{patient}/care-plan/outcomes", headers=manager)
    assert found.status_code == 200, found.text
    body = found.json()
    assert (body["resolved"], body["not_actionable"]) == (13, 11)
    rules = {rule["rule_id"]: rule for rule in body["rules"]}
    low = rules["systolic_low"]
    assert (low["resolved"], low["not_actionable"]) == (6, 5)
    assert low["outcomes"]["measurement_or_device_error"] == 4
    assert low["outcomes"]["referred_to_emergency_care"] == 0
    assert low["suggestion"] == (
        "5 of its 6 resolved alerts were not actionable, most of them measurement or device"
        " errors: ask the patient for a repeat reading before alerting (confirmation), or"
        " check their device."
    )
    # A crisis never waits for a repeat: the device, then.
    assert rules["bp_crisis"]["suggestion"] == (
        "5 of its 5 resolved alerts were not actionable, most of them measurement or device"
        " errors: check the patient's device and how they measure."
    )
    assert rules["pulse_out_of_range"]["suggestion"] is None  # one alert, and actionable
    assert rules["retired_rule"]["in_plan"] is False
    assert rules["missed_readings"]["resolved"] == 0
    old = ui_client.get(f"/api/v1/patients/{patient}/care-plan/outcomes?days=0", headers=manager)
    assert old.status_code == 422

    # The care manager's page: the table and the suggestions; a nurse sees the table only.
    browser_sign_in(ui_client, "manager-1")
    text = html.unescape(ui_client.get(f"/ui/patients/{patient}/care-plan").text)
    assert "13 alerts resolved,\n  11 of them not actionable" in text
    assert re.search(r'<tr id="outcomes-systolic_low">\s*<th scope="row">Low blood pressure</th>'
                     r"\s*<td>6</td>\s*<td>1</td>\s*<td>0</td>\s*<td>0</td>\s*<td>4</td>"
                     r"\s*<td>1</td>", text)  # fmt: skip
    assert 'retired_rule <span class="muted">(no longer in the plan)</span>' in text
    assert '<tr id="outcomes-missed_readings">' not in text
    assert "<strong>Low blood pressure</strong>: 5 of its 6 resolved alerts" in text
    browser_sign_in(ui_client, "nurse-1")
    text = html.unescape(ui_client.get(f"/ui/patients/{patient}/care-plan").text)
    assert '<tr id="outcomes-systolic_low">' in text
    assert 'id="suggestions"' not in text
