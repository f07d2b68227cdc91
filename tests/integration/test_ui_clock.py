"""Times on the reader's clock: every page rendered for users in America/Chicago, with
data on each, shows no UTC time; the zone is the user's own choice (/ui/settings, or
PATCH /api/v1/users/me), else their staff record's, else the service's; the change is
audited; the patient's own time stands beside a reading's."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from fastapi.testclient import TestClient

from rpm.web.deps import CSRF_FIELD
from tests.integration.conftest import Clinic
from tests.support import (
    TEST_PASSWORD,
    add_alert,
    add_readings,
    add_user,
    api_call_through,
    bearer,
    browser_csrf,
    browser_sign_in,
    receive,
)

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
CHICAGO = "America/Chicago"

# What a UTC time looks like in a page: the zone named, a zero offset, or ISO's "Z".
_UTC_TIME = re.compile(
    r"\bUTC\b|\bGMT\b|[+-]00:00\b|\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z\b|\bZulu\b", re.IGNORECASE
)
# Pages that show no instant at all (the patients list; the time report's months).
_TIMELESS = {"/ui/patients", "/ui/reports/time", "/ui/teams"}
# A time on the Chicago clock: "Sat 5 Dec 2026, 15:23 CST".
_CHICAGO_TIME = re.compile(r"\w{3} \d{1,2} \w{3} \d{4}, \d{2}:\d{2} C[SD]T")


def _utc_times(page: str) -> list[str]:
    """The UTC times in a page's HTML (its text and its attributes), with the context
    around each. Some things are not the UI's own times and are left out: the zone lists to
    choose from (UTC is one of the choices), a staff member's zone, and a dead letter's raw
    payload (the device's bytes, shown as they came)."""
    page = re.sub(r'<select id="time-zone".*?</select>', "", page, flags=re.DOTALL)
    # A staff member's zone, a setting of theirs (and the list to pick one from).
    page = re.sub(r'<td data-label="Time zone">[^<]*</td>', "", page)
    page = re.sub(r"<datalist .*?</datalist>", "", page, flags=re.DOTALL)
    page = re.sub(r"<pre[^>]*>.*?</pre>", "", page, flags=re.DOTALL)
    text = html.unescape(page)
    return [text[max(0, m.start() - 60) : m.end() + 20] for m in _UTC_TIME.finditer(text)]


def _seed(ui_client: TestClient, db_url: str, clinic: Clinic) -> dict[str, object]:
    """A patient (in New York) with a month of readings, an acknowledged alert fired by a
    reading with a failed SMS, a resolved one, time logged, a second care-plan version; a
    device assigned and one not, with a dead letter that names when its reading was taken."""
    first = clinic.first
    patient = first.patient("MRN-CLOCK")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE patient SET time_zone = 'America/New_York' WHERE id = %s", [patient])
    first.device("BP-CLOCK", "blood_pressure_cuff", patient)
    days = [NOW - timedelta(days=day, hours=3) for day in range(30)]
    add_readings(
        db_url,
        "BP-CLOCK",
        patient,
        "blood_pressure",
        [(at, {"systolic_mmhg": 150, "diastolic_mmhg": 88}) for at in days],
    )
    # A patient at risk on adherence: enrolled 20 days ago, one day with readings.
    sparse = first.call(
        "POST",
        "/api/v1/patients",
        {
            "external_ref": "MRN-SPARSE",
            "given_name": "Test",
            "family_name": "Patient",
            "time_zone": "America/New_York",
            "templates": ["hypertension"],
            "care_team_id": first.team_id,
            "enrolled_at": (NOW - timedelta(days=20)).isoformat(),
        },
    )["id"]
    first.device("BP-SPARSE", "blood_pressure_cuff", sparse)
    reading = {"systolic_mmhg": 130, "diastolic_mmhg": 80}
    add_readings(
        db_url, "BP-SPARSE", sparse, "blood_pressure", [(NOW - timedelta(days=4), reading)]
    )
    crisis = add_alert(db_url, patient, "bp_crisis", "critical", "Blood pressure 185/121")
    resolved = add_alert(db_url, patient, "bp_high", "warning", "Blood pressure high")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alert_trigger (alert_id, device_id, kind, measured_at)"
            " SELECT %s, id, 'blood_pressure', %s FROM device WHERE serial = 'BP-CLOCK'",
            [crisis, days[0]],
        )
        conn.execute(
            "INSERT INTO notification (alert_id, staff_id, to_phone, purpose, severity, tier,"
            " status, expires_at, error_message)"
            " VALUES (%s, %s, '+15555550100', 'opened', 'critical', 1, 'failed', now(),"
            " 'unreachable')",
            [crisis, clinic.nurse],
        )

    manager = first.staff("manager-1", "Care Manager", role="care_manager")
    add_user(db_url, "manager-1", "care_manager", TEST_PASSWORD, manager)
    # The manager's staff record is in Chicago: their default clock, chosen by nobody.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE staff SET time_zone = %s WHERE id = %s", [CHICAGO, manager])

    # The nurse on call over the evening: the team's rota and its shifts.
    start, end = NOW - timedelta(hours=2), NOW + timedelta(hours=10)
    shift = {"staff_id": clinic.nurse, "tier": 1, "starts_at": start.isoformat(),
             "ends_at": end.isoformat()}  # fmt: skip
    first.call("POST", f"/api/v1/care-teams/{first.team_id}/shifts", shift)

    # Devices and a dead letter (the admin's pages): a cuff nobody has.
    first.call("POST", "/api/v1/devices", {"serial": "BP-LOOSE", "kind": "blood_pressure_cuff"})
    taken = (NOW - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    payload = {
        "kind": "blood_pressure",
        "measured_at": taken,
        "systolic": 128,
        "diastolic": 82,
        "unit": "mmHg",
    }
    receive(ui_client, "rpm/v1/devices/BP-LOOSE/readings", json.dumps(payload).encode(), NOW)
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT max(id) FROM rejected_message").fetchone()
    assert row is not None
    return {"patient": patient, "crisis": crisis, "resolved": resolved, "dead_letter": row[0]}


def test_no_page_shows_a_utc_time_to_a_user_in_chicago(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    seeded = _seed(ui_client, db_url, clinic)
    patient, crisis = seeded["patient"], seeded["crisis"]

    # The nurse picks her zone on the settings page: audited, through the users API's call.
    browser_sign_in(ui_client, "nurse-1")
    csrf = {CSRF_FIELD: browser_csrf(db_url, "nurse-1")}
    settings = ui_client.get("/ui/settings").text
    assert '<option value="" selected>Default: UTC</option>' in settings
    saved = ui_client.post(
        "/ui/settings", data={**csrf, "time_zone": CHICAGO}, follow_redirects=False
    )
    assert saved.status_code == 303, saved.text
    page = ui_client.get(saved.headers["location"]).text
    assert f'<option value="{CHICAGO}" selected>' in page
    assert "Saved: times are shown on America/Chicago time" in page
    with psycopg.connect(db_url) as conn:
        audited = conn.execute(
            "SELECT action, resource, details FROM audit_event WHERE path = '/ui/settings'"
        ).fetchall()
    assert audited == [("update", "user", {"time_zone": CHICAGO})]
    refused = ui_client.post("/ui/settings", data={**csrf, "time_zone": "Mars/Olympus"})
    assert refused.status_code == 422
    assert "is not an IANA time zone name" in refused.text

    # Data the pages show: an acknowledgement, a resolution, time logged.
    for path, data in (
        (f"/ui/alerts/{crisis}/acknowledge", {}),
        (
            f"/ui/alerts/{seeded['resolved']}/resolve",
            {"outcome": "no_action_needed", "note": "Rechecked"},
        ),
        (f"/ui/patients/{patient}/time-logs", {"minutes": "12", "note": "Called"}),
        (f"/ui/patients/{patient}/notes", {"body": "Handed over to the evening shift"}),
    ):
        done = ui_client.post(path, data={**csrf, **data}, follow_redirects=False)
        assert done.status_code == 303, (path, done.text)

    nurse_pages = [
        "/ui/worklist",
        "/ui/worklist/table",
        "/ui/patients",
        f"/ui/patients/{patient}?days=7",
        f"/ui/patients/{patient}",
        f"/ui/patients/{patient}?days=90",
        f"/ui/alerts/{crisis}",
        f"/ui/alerts/{seeded['resolved']}",
        "/ui/adherence",
        "/ui/huddle",
        f"/ui/patients/{patient}/care-plan",
        "/ui/teams",
        f"/ui/teams/{clinic.first.team_id}",
        "/ui/settings",
    ]
    shown = _check_pages(ui_client, nurse_pages)
    # Where it matters, the patient's own clock beside the reader's.
    alert_page = shown[f"/ui/alerts/{crisis}"]
    assert re.search(_CHICAGO_TIME.pattern + r" \(patient\s\d{2}:\d{2}\sEST\)", alert_page)
    assert "Times on your clock (America/Chicago)." in shown[f"/ui/patients/{patient}"]
    ui_client.post("/ui/logout", data=csrf)

    # The care manager's zone is her staff record's: she never chose one.
    browser_sign_in(ui_client, "manager-1")
    htmx = {"HX-Request": "true", "X-CSRF-Token": browser_csrf(db_url, "manager-1")}
    plan_page = ui_client.get(f"/ui/patients/{patient}/care-plan").text
    form = dict(re.findall(r'name="(limit:[^"]+)"[^>]*value="([^"]+)"', plan_page))
    form |= {"based_on_version": "1", "reason": "tighter"}
    preview = ui_client.post(f"/ui/patients/{patient}/care-plan/preview", data=form, headers=htmx)
    assert preview.status_code == 200, preview.text
    assert not _utc_times(preview.text), _utc_times(preview.text)
    assert _CHICAGO_TIME.search(html.unescape(preview.text))
    saved_plan = ui_client.post(
        f"/ui/patients/{patient}/care-plan",
        data=form | {CSRF_FIELD: htmx["X-CSRF-Token"], "limit:bp_crisis:0": "175"},
        follow_redirects=False,
    )
    assert saved_plan.status_code == 303, saved_plan.text
    team = f"/ui/teams/{clinic.first.team_id}"
    _check_pages(ui_client, [f"/ui/patients/{patient}/care-plan", "/ui/reports/time", team])
    ui_client.post("/ui/logout", data={CSRF_FIELD: htmx["X-CSRF-Token"]})

    # The admin (no staff record) chooses hers over the API, as any signed-in user may.
    admin = bearer(ui_client, "admin-1", TEST_PASSWORD)
    me = api_call_through(ui_client, admin)("PATCH", "/api/v1/users/me", {"time_zone": CHICAGO})
    assert me["time_zone"] == CHICAGO
    browser_sign_in(ui_client, "admin-1")
    admin_pages = [
        "/ui/devices",
        "/ui/devices/BP-CLOCK",
        "/ui/devices/BP-LOOSE",
        "/ui/dead-letters?include_replayed=true",
        f"/ui/dead-letters/{seeded['dead_letter']}",
        "/ui/reports/time",
        f"/ui/patients/{patient}",
        "/ui/settings",
    ]
    shown = _check_pages(ui_client, admin_pages)
    # The dead letter's detail names when its reading was taken: on the admin's clock.
    detail = "was not assigned to a patient at " + _CHICAGO_TIME.pattern
    assert re.search(detail, shown["/ui/dead-letters?include_replayed=true"])
    # Assigning from a time entered in the form: on the reader's clock too.
    entered = (NOW - timedelta(hours=12)).replace(tzinfo=None)
    section = ui_client.post(
        "/ui/devices/BP-LOOSE/assign",
        data={"patient_id": str(patient), "at": entered.strftime("%Y-%m-%dT%H:%M")},
        headers={"HX-Request": "true", "X-CSRF-Token": browser_csrf(db_url, "admin-1")},
    )
    assert section.status_code == 200, section.text
    assert not _utc_times(section.text), _utc_times(section.text)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT a.assigned_at FROM device_assignment a JOIN device d ON d.id = a.device_id"
            " WHERE d.serial = 'BP-LOOSE'"
        ).fetchone()
    assert row is not None
    # The form's wall-clock time was Chicago's.
    assert row[0] == entered.replace(tzinfo=ZoneInfo(CHICAGO))


def _check_pages(client: TestClient, paths: list[str]) -> dict[str, str]:
    """Each page rendered (200), with no UTC time in it and at least one time on the
    Chicago clock; their text, by path."""
    shown = {}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert not _utc_times(response.text), (path, _utc_times(response.text))
        text = html.unescape(response.text)
        assert _CHICAGO_TIME.search(text) or path in _TIMELESS, path
        shown[path] = text
    return shown
