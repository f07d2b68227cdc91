"""The patients list, a patient's page and an alert's page against the real service:
charts of each kind of reading with the care plan's limits drawn on them, over 7, 30 or
90 days; the alert history with outcomes and links; another team's patient out of reach
(404); every read audited as the API's are."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.web import patients as patients_ui
from tests.integration.conftest import Clinic
from tests.support import TEST_PASSWORD, add_alert, add_readings, browser_csrf, browser_sign_in

NOW = datetime.now(UTC)


def _audited(db_url: str, username: str = "nurse-1") -> list[tuple[str, str, str, int | None]]:
    """(action, resource, path, patient) of the user's audit rows, oldest first."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT action, resource, path, patient_id FROM audit_event WHERE username = %s"
            " ORDER BY id",
            [username],
        ).fetchall()
    return [(a, r, p, patient) for a, r, p, patient in rows]


def _blood_pressures(db_url: str, clinic: Clinic, patient: int) -> None:
    """A blood pressure each morning for 20 days, 185/95 five days ago and 150/88
    otherwise; and a weight each morning."""
    clinic.first.device("BP-1", "blood_pressure_cuff", patient)
    clinic.first.device("SCALE-1", "weight_scale", patient)
    days = [NOW - timedelta(days=day, hours=3) for day in range(20)]
    add_readings(
        db_url,
        "BP-1",
        patient,
        "blood_pressure",
        [
            (
                at,
                {
                    "systolic_mmhg": 185 if day == 5 else 150,
                    "diastolic_mmhg": 95 if day == 5 else 88,
                },
            )
            for day, at in enumerate(days)
        ],
    )
    add_readings(
        db_url, "SCALE-1", patient, "body_weight", [(at, {"weight_kg": 81.4}) for at in days]
    )


def test_the_patient_page_charts_each_kind_of_reading_with_the_plans_limits(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient = clinic.first.patient("MRN-A1")
    _blood_pressures(db_url, clinic, patient)
    browser_sign_in(ui_client, "nurse-1")

    page = ui_client.get(f"/ui/patients/{patient}")
    assert page.status_code == 200, page.text
    text = page.text
    # The header: reference, name, time zone, status, care team, plan version.
    assert "<h1>Patient MRN-A1</h1>" in text
    for fact in ("Test Patient", "America/Chicago", "Active", "Team A"):
        assert f"<dd>{fact}</dd>" in text, fact
    assert f'<a href="/ui/patients/{patient}/care-plan">Version 1</a>' in text
    assert '<a href="/ui/patients" aria-current="page">' not in text  # not the list itself

    # A chart per kind the patient has: an image named and described in words.
    assert re.findall(r'<figure class="chart" id="chart-([a-z_]+)"', text) == [
        "blood_pressure",
        "body_weight",
    ]
    assert text.count('role="img"') == 2
    assert 'aria-labelledby="chart-blood_pressure-title"' in text
    assert "20 readings. Systolic: mean 152, lowest 150, highest 185 mmHg." in text
    # The hypertension plan's limits as labelled lines: each at its value's height.
    bp_chart = text[text.index('id="chart-blood_pressure"') : text.index('id="chart-body_weight"')]
    limits = {
        html.unescape(label): float(y)
        for label, y in re.findall(
            r'<g class="threshold threshold-[a-z]+" data-rule="[a-z0-9_]+">\s*'
            r'<title>([^<]+)</title>\s*<line [^>]*y1="([\d.]+)"',
            bp_chart,
        )
    }
    assert sorted(limits) == [
        "Critical ≥ 120 mmHg diastolic",
        "Critical ≥ 180 mmHg systolic",
        "High < 90 mmHg systolic",
        "Warning ≥ 140 mmHg systolic (mean over 7 days)",
        "Warning ≥ 90 mmHg diastolic (mean over 7 days)",
    ]
    stage_2 = limits["Warning ≥ 140 mmHg systolic (mean over 7 days)"]
    assert limits["Critical ≥ 180 mmHg systolic"] < stage_2 < limits["High < 90 mmHg systolic"]
    assert (
        limits["High < 90 mmHg systolic"]
        == limits["Warning ≥ 90 mmHg diastolic (mean over 7 days)"]
    )
    # The weight chart: no limit on weight as a level; the weight-gain rules are changes.
    weight_chart = text[text.index('id="chart-body_weight"') :]
    assert 'class="threshold' not in weight_chart.split("</figure>")[0]
    # The same numbers as a table: each bucket's mean, lowest and highest.
    assert "<summary>Show as table" in bp_chart
    assert "<td>185</td><td>185</td><td>185</td><td>95</td><td>95</td><td>95</td>" in bp_chart
    assert "<td>Critical</td><td>Systolic ≥ 180 mmHg</td>" in bp_chart
    assert "<td>81.4</td>" in weight_chart

    # Every read audited as the API's: the patient, the plan, each kind of reading.
    path = f"/ui/patients/{patient}"
    assert [row for row in _audited(db_url) if row[0] != "sign_in"] == [
        ("read", "patient", path, patient),
        ("read", "care_plan", path, patient),
        ("read", "readings", path, patient),
        ("read", "readings", path, patient),
        ("read", "alerts", path, patient),
        ("read", "adherence", path, patient),
        ("read", "time_logs", path, patient),
        ("read", "billing", path, patient),
        ("read", "patient_note", path, patient),
    ]

    # Over 7 days: the older readings are not in it.
    week = ui_client.get(f"/ui/patients/{patient}?days=7")
    assert "7 readings. Systolic: mean 155, lowest 150, highest 185 mmHg." in week.text
    assert f'<a href="/ui/patients/{patient}?days=7" aria-current="true">' in week.text
    assert "No alerts." in week.text
    assert ui_client.get(f"/ui/patients/{patient}?days=12").status_code == 422


def test_the_alert_history_newest_first_with_outcomes_and_links(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient = clinic.first.patient("MRN-A1")
    older = add_alert(db_url, patient, "bp_crisis", "critical", "BP 185/95", timedelta(days=5))
    newer = add_alert(db_url, patient, "systolic_low", "high", "Systolic 84", timedelta(hours=2))
    browser_sign_in(ui_client, "nurse-1")
    htmx = {"HX-Request": "true", "X-CSRF-Token": browser_csrf(db_url, "nurse-1")}
    resolved = ui_client.post(
        f"/ui/alerts/{older}/resolve",
        data={"outcome": "patient_contacted", "note": "Re-measured: 142/88"},
        headers=htmx,
    )
    assert resolved.status_code == 200

    page = ui_client.get(f"/ui/patients/{patient}").text
    assert "No readings yet." in page
    assert re.findall(r'<tr id="history-(\d+)"', page) == [str(newer), str(older)]
    assert f'<a href="/ui/alerts/{older}">Alert {older}</a>' in page
    assert "Resolved by nurse-1: patient contacted" in page
    assert "Re-measured: 142/88" in page
    assert "2 alerts, newest first" in page

    # The alert's own page: what it said, its history, its patient.
    alert = ui_client.get(f"/ui/alerts/{older}")
    assert alert.status_code == 200
    assert f'<a href="/ui/patients/{patient}">MRN-A1</a>' in alert.text
    assert "BP 185/95" in alert.text
    history = re.findall(r"<td>(nurse-1|system:rules)</td>\s*<td>([^<]+)</td>", alert.text)
    assert history == [("system:rules", "Opened"), ("nurse-1", "Resolved (open to resolved)")]
    assert ("read", "alert", f"/ui/alerts/{older}", patient) in _audited(db_url)

    # The worklist's row links to the patient's page.
    worklist = ui_client.get("/ui/worklist").text
    assert f'href="/ui/patients/{patient}">MRN-A1</a>' in worklist


def test_another_teams_patient_and_alert_are_404_and_the_attempt_audited(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    theirs = clinic.second.patient("MRN-B1")
    their_alert = add_alert(db_url, theirs, "bp_crisis", "critical")
    browser_sign_in(ui_client, "nurse-1")
    for path in (f"/ui/patients/{theirs}", f"/ui/patients/{theirs}?days=7"):
        hidden = ui_client.get(path)
        assert hidden.status_code == 404
        assert f"No patient with id {theirs}." in hidden.text
        assert "MRN-B1" not in hidden.text
    assert ui_client.get("/ui/patients/999999").status_code == 404
    hidden_alert = ui_client.get(f"/ui/alerts/{their_alert}")
    assert hidden_alert.status_code == 404
    assert f"No alert with id {their_alert}." in hidden_alert.text
    denied = [row for row in _audited(db_url) if row[0] == "denied"]
    assert denied == [
        ("denied", "patient", f"/ui/patients/{theirs}", theirs),
        ("denied", "patient", f"/ui/patients/{theirs}", theirs),
        ("denied", "alert", f"/ui/alerts/{their_alert}", theirs),
    ]


def test_the_patients_list_holds_the_teams_patients_paged_and_found_by_reference(
    ui_client: TestClient, db_url: str, clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(patients_ui, "PAGE_SIZE", 2)
    mine = [clinic.first.patient(f"MRN-A{n}") for n in range(3)]
    clinic.second.patient("MRN-B1")
    browser_sign_in(ui_client, "nurse-1")

    first = ui_client.get("/ui/patients")
    assert first.status_code == 200
    assert '<a href="/ui/patients" aria-current="page">Patients</a>' in first.text
    assert re.findall(r'<a href="/ui/patients/(\d+)">', first.text) == [str(p) for p in mine[:2]]
    assert "MRN-B1" not in first.text
    assert "<td>Team A</td>" in first.text
    next_link = re.search(r'<a href="(/ui/patients\?after=\d+)">Next page</a>', first.text)
    assert next_link is not None
    second = ui_client.get(next_link.group(1))
    assert re.findall(r'<a href="/ui/patients/(\d+)">', second.text) == [str(mine[2])]
    assert "Next page" not in second.text

    found = ui_client.get("/ui/patients?ref=MRN-A1")
    assert re.findall(r'<a href="/ui/patients/(\d+)">', found.text) == [str(mine[1])]
    assert "No patient of your care teams has the reference MRN-B1." in (
        ui_client.get("/ui/patients?ref=MRN-B1").text
    )
    # Each page's read is audited with a row per patient shown.
    reads = [row for row in _audited(db_url) if row[1] == "patients"]
    assert [row[3] for row in reads] == [*mine[:2], mine[2], mine[1], None]


def test_an_sms_link_signs_in_then_opens_the_alert_and_acknowledges_it_there(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient = clinic.first.patient("MRN-A1")
    alert = add_alert(db_url, patient, "bp_crisis", "critical", "BP 185/95", timedelta(minutes=3))
    # The SMS's link, not signed in: the sign-in form, which comes back to it.
    opened = ui_client.get(f"/ui/alerts/{alert}", follow_redirects=False)
    assert opened.status_code == 303
    login = opened.headers["Location"]
    assert login == f"/ui/login?next=%2Fui%2Falerts%2F{alert}"
    form = ui_client.get(login).text
    assert f'<input type="hidden" name="next" value="/ui/alerts/{alert}">' in form
    signed_in = ui_client.post(
        "/ui/login",
        data={"username": "nurse-1", "password": TEST_PASSWORD, "next": f"/ui/alerts/{alert}"},
        follow_redirects=False,
    )
    assert signed_in.headers["Location"] == f"/ui/?signed_in=1&next=%2Fui%2Falerts%2F{alert}"
    home = ui_client.get(signed_in.headers["Location"], follow_redirects=False)
    assert home.headers["Location"] == f"/ui/alerts/{alert}"

    page = ui_client.get(f"/ui/alerts/{alert}").text
    assert f'<button type="submit" id="acknowledge-{alert}">Acknowledge' in page
    acknowledged = ui_client.post(
        f"/ui/alerts/{alert}/acknowledge",
        data={"csrf_token": browser_csrf(db_url, "nurse-1"), "back": f"/ui/alerts/{alert}"},
        follow_redirects=False,
    )
    assert acknowledged.headers["Location"] == f"/ui/alerts/{alert}"
    after = ui_client.get(f"/ui/alerts/{alert}").text
    assert "Acknowledged by nurse-1" in after
    assert f'id="acknowledge-{alert}"' not in after


@pytest.mark.parametrize(
    "elsewhere",
    ["//evil.example/ui/", "https://evil.example/ui/x", "/api/v1/alerts/1", "/ui/\\evil", ""],
)
def test_sign_in_returns_only_to_the_uis_own_pages(
    ui_client: TestClient, db_url: str, clinic: Clinic, elsewhere: str
) -> None:
    assert 'name="next" value=' not in ui_client.get(f"/ui/login?next={elsewhere}").text
    signed_in = ui_client.post(
        "/ui/login",
        data={"username": "nurse-1", "password": TEST_PASSWORD, "next": elsewhere},
        follow_redirects=False,
    )
    assert signed_in.headers["Location"] == "/ui/?signed_in=1"
    home = ui_client.get(f"/ui/?next={elsewhere}", follow_redirects=False)
    assert home.headers["Location"] == "/ui/worklist"
