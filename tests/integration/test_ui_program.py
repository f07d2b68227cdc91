"""Program operations in the browser against the real service: the adherence worklist,
time logged from the patient's page (minutes, a stopwatch stopped, a void), the billing
periods shown there, and the monthly time report with its CSV."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient

from rpm.web.deps import CSRF_FIELD
from tests.integration.conftest import Clinic
from tests.support import TEST_PASSWORD, add_readings, add_user, browser_csrf, browser_sign_in

NOW = datetime.now(UTC)


def _enrolled_days_ago(db_url: str, patient: int, days: int) -> None:
    with psycopg.connect(db_url) as conn:
        for table, column, key in (("patient", "enrolled_at", "id"),
                                   ("care_episode", "started_at", "patient_id")):  # fmt: skip
            conn.execute(
                f"UPDATE {table} SET {column} = now() - %s * interval '1 day' WHERE {key} = %s",
                [days, patient],
            )


def test_the_adherence_page_lists_patients_at_risk_with_their_days(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    quiet = clinic.first.patient("MRN-QUIET")
    steady = clinic.first.patient("MRN-STEADY")
    other_team = clinic.second.patient("MRN-ELSEWHERE")
    for patient in (quiet, steady, other_team):
        _enrolled_days_ago(db_url, patient, 20)
    clinic.first.device("SCALE-S", "weight_scale", steady)
    # Chicago noon on each of the last 20 days: on track.
    add_readings(db_url, "SCALE-S", steady, "body_weight",
                 [(NOW - timedelta(days=d), {"weight_kg": 80.0}) for d in range(20)])  # fmt: skip
    browser_sign_in(ui_client, "nurse-1")

    page = ui_client.get("/ui/adherence")
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    assert "MRN-QUIET" in text
    assert "0 of 16 days with" in text
    # 20 days in with none: even a reading every day left cannot make 16.
    assert "Out of reach" in text
    assert "MRN-STEADY" not in text
    assert "MRN-ELSEWHERE" not in text


def test_time_is_logged_stopped_and_voided_from_the_patient_page(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient = clinic.first.patient("MRN-TIME")
    browser_sign_in(ui_client, "nurse-1")
    csrf = {CSRF_FIELD: browser_csrf(db_url, "nurse-1")}

    logged = ui_client.post(
        f"/ui/patients/{patient}/time-logs",
        data={**csrf, "minutes": "25", "note": "Called about readings", "interactive": "true"},
        follow_redirects=False,
    )
    assert logged.status_code == 303, logged.text
    assert logged.headers["location"] == f"/ui/patients/{patient}#time"
    page = html.unescape(ui_client.get(f"/ui/patients/{patient}").text)
    assert "25 min" in page
    assert "codes: 99457 (25 min with an interactive communication)" in page
    assert "Billing periods" in page
    assert "Adherence this period" in page

    # Overlapping time of the same nurse: refused, in words.
    again = ui_client.post(
        f"/ui/patients/{patient}/time-logs",
        data={**csrf, "minutes": "5", "note": "Twice"},
        follow_redirects=False,
    )
    assert again.status_code == 409
    assert "overlaps your time-log entry" in html.unescape(again.text)

    with psycopg.connect(db_url) as conn:
        [(first,)] = conn.execute(
            "SELECT id FROM time_log WHERE patient_id = %s", [patient]
        ).fetchall()
    voided = ui_client.post(
        f"/ui/patients/{patient}/time-logs/{first}/void",
        data={**csrf, "reason": "Entered on the wrong patient"},
        follow_redirects=False,
    )
    assert voided.status_code == 303, voided.text

    started = ui_client.post(
        f"/ui/patients/{patient}/time-logs/stopwatch", data={**csrf, "note": "Review"},
        follow_redirects=False,
    )  # fmt: skip
    assert started.status_code == 303
    with psycopg.connect(db_url) as conn:
        # As if it had run for 12 minutes.
        [(running,)] = conn.execute(
            "UPDATE time_log SET started_at = now() - interval '12 minutes'"
            " WHERE patient_id = %s AND ended_at IS NULL RETURNING id",
            [patient],
        ).fetchall()
    page = ui_client.get(f"/ui/patients/{patient}").text
    assert f"/time-logs/{running}/stop" in page
    stopped = ui_client.post(
        f"/ui/patients/{patient}/time-logs/{running}/stop",
        data={**csrf, "interactive": "true"},
        follow_redirects=False,
    )
    assert stopped.status_code == 303, stopped.text
    page = html.unescape(ui_client.get(f"/ui/patients/{patient}").text)
    assert "Void: Entered on the wrong patient (nurse-1)" in page
    # The voided 25 minutes no longer count: 12 with the call, 99470.
    assert "codes: 99470 (12 min with an interactive communication)" in page


def test_the_time_report_and_its_csv_for_a_care_manager(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient = clinic.first.patient("MRN-REPORT")
    manager = clinic.first.staff("manager-1", "Manager One", "care_manager")
    add_user(db_url, "manager-1", "care_manager", TEST_PASSWORD, manager)
    browser_sign_in(ui_client, "manager-1")
    csrf = {CSRF_FIELD: browser_csrf(db_url, "manager-1")}
    ui_client.post(
        f"/ui/patients/{patient}/time-logs",
        data={**csrf, "minutes": "11", "note": "Call", "interactive": "true"},
    )
    month = f"{NOW:%Y-%m}"
    page = ui_client.get("/ui/reports/time")
    assert page.status_code == 200, page.text
    assert "MRN-REPORT" in page.text
    assert "99470" in page.text
    report = ui_client.get(f"/ui/reports/time.csv?month={month}")
    assert report.status_code == 200
    assert report.headers["content-type"] == "text/csv; charset=utf-8"
    lines = report.text.splitlines()
    assert lines[0].split(",") == [
        "month", "patient_id", "external_ref", "entries", "minutes", "physician_minutes",
        "interactive", "codes", "reason",
    ]  # fmt: skip
    assert lines[1].startswith(f"{month},{patient},MRN-REPORT,1,11,0,yes,99470,")
    # Nurses do not read the program's reports.
    browser_sign_in(ui_client, "nurse-1")
    assert ui_client.get("/ui/reports/time").status_code == 403
