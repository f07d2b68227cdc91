"""Hand-offs against the real service: notes on a patient (signed, audited, append-only,
never another team's), who follows a patient up (only the patient's team), and the huddle
board over the API and in the browser, those to discuss first."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

import rpm.web.huddle
from rpm.web.deps import CSRF_FIELD
from tests.integration.conftest import Clinic
from tests.support import TEST_PASSWORD, add_readings, bearer, browser_csrf, browser_sign_in

NOW = datetime.now(UTC)


@pytest.fixture
def nurse(ui_client: TestClient, clinic: Clinic) -> dict[str, str]:
    return bearer(ui_client, "nurse-1", TEST_PASSWORD)


def test_a_note_is_signed_read_newest_first_and_audited_without_its_text(
    ui_client: TestClient, db_url: str, clinic: Clinic, nurse: dict[str, str]
) -> None:
    patient = clinic.first.patient("MRN-NOTES")
    for body in ("Cuff fits better on the left arm.", "  Daughter helps with the scale.  "):
        made = ui_client.post(
            f"/api/v1/patients/{patient}/notes", json={"body": body}, headers=nurse
        )
        assert made.status_code == 201, made.text
    assert made.json()["body"] == "Daughter helps with the scale."
    assert made.json()["staff_name"] == "Nurse One"
    assert made.json()["staff_role"] == "nurse"
    listed = ui_client.get(f"/api/v1/patients/{patient}/notes", headers=nurse).json()
    assert [n["body"] for n in listed] == [
        "Daughter helps with the scale.", "Cuff fits better on the left arm."
    ]  # fmt: skip
    page = ui_client.get(
        f"/api/v1/patients/{patient}/notes?before_id={listed[0]['id']}", headers=nurse
    )
    assert [n["id"] for n in page.json()] == [listed[1]["id"]]
    with psycopg.connect(db_url) as conn:
        audited = conn.execute(
            "SELECT action, details::text FROM audit_event WHERE resource = 'patient_note'"
            " AND patient_id = %s ORDER BY id",
            [patient],
        ).fetchall()
        assert [a for a, _ in audited] == ["write", "write", "read", "read"]
        assert all("Cuff" not in details for _, details in audited)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("UPDATE patient_note SET body = 'changed'")


def test_notes_refuse_what_is_wrong_in_words(
    ui_client: TestClient, db_url: str, clinic: Clinic, nurse: dict[str, str]
) -> None:
    patient = clinic.first.patient("MRN-NOTE-BAD")
    elsewhere = clinic.second.patient("MRN-NOTE-ELSEWHERE")
    blank = ui_client.post(f"/api/v1/patients/{patient}/notes", json={"body": "   "}, headers=nurse)
    assert blank.status_code == 422
    assert "a note needs some text" in blank.json()["detail"]
    long = ui_client.post(
        f"/api/v1/patients/{patient}/notes", json={"body": "x" * 4001}, headers=nurse
    )
    assert long.status_code == 422
    other = ui_client.post(
        f"/api/v1/patients/{elsewhere}/notes", json={"body": "hi"}, headers=nurse
    )
    assert other.status_code == 404
    assert ui_client.get(f"/api/v1/patients/{elsewhere}/notes", headers=nurse).status_code == 404


def test_the_follow_up_goes_only_to_the_patients_team(
    ui_client: TestClient, clinic: Clinic, nurse: dict[str, str]
) -> None:
    patient = clinic.first.patient("MRN-FOLLOW")
    given = ui_client.put(
        f"/api/v1/patients/{patient}/follow-up", json={"staff_id": clinic.teammate}, headers=nurse
    )
    assert given.status_code == 200, given.text
    assert given.json() == {
        "patient_id": patient,
        "staff_id": clinic.teammate,
        "staff_name": "Nurse Two",
    }
    refused = ui_client.put(
        f"/api/v1/patients/{patient}/follow-up", json={"staff_id": clinic.outsider}, headers=nurse
    )
    assert refused.status_code == 422
    assert "not an active member of patient" in refused.json()["detail"]
    cleared = ui_client.put(
        f"/api/v1/patients/{patient}/follow-up", json={"staff_id": None}, headers=nurse
    )
    assert cleared.json()["staff_id"] is None


def _alert(db_url: str, patient: int, rule: str, severity: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO alert (patient_id, rule_id, plan_version, severity, message,"
            " latest_message, first_triggered_at, last_triggered_at)"
            " SELECT %s, %s, version, %s, 'test finding', 'test finding', now(), now()"
            " FROM care_plan WHERE patient_id = %s",
            [patient, rule, severity, patient],
        )


def _bp(days_and_values: list[tuple[float, float]]) -> list[tuple[datetime, dict[str, float]]]:
    return [
        (NOW - timedelta(days=d), {"systolic_mmhg": s, "diastolic_mmhg": 80.0, "pulse_bpm": 70.0})
        for d, s in days_and_values
    ]


def test_the_huddle_board_puts_the_patients_to_discuss_first(
    ui_client: TestClient,
    db_url: str,
    clinic: Clinic,
    nurse: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stable = clinic.first.patient("MRN-HUDDLE-STABLE")
    crisis = clinic.first.patient("MRN-HUDDLE-CRISIS")
    alerted = clinic.first.patient("MRN-HUDDLE-ALERT")
    clinic.second.patient("MRN-HUDDLE-ELSEWHERE")
    clinic.first.device("CUFF-STABLE", "blood_pressure_cuff", stable)
    clinic.first.device("CUFF-CRISIS", "blood_pressure_cuff", crisis)
    add_readings(db_url, "CUFF-STABLE", stable, "blood_pressure",
                 _bp([(d + 0.1, 126.0) for d in range(14)]))  # fmt: skip
    # Rising over two weeks, and the last reading past the crisis limit.
    add_readings(db_url, "CUFF-CRISIS", crisis, "blood_pressure",
                 _bp([(d + 0.1, 150.0 - d) for d in range(1, 14)] + [(0.05, 186.0)]))  # fmt: skip
    _alert(db_url, alerted, "systolic_low", "high")
    call = {"minutes": 12, "interactive": True, "note": "call"}
    ui_client.post(f"/api/v1/patients/{alerted}/time-logs", json=call, headers=nurse)
    ui_client.put(
        f"/api/v1/patients/{alerted}/follow-up", json={"staff_id": clinic.nurse}, headers=nurse
    )

    board = ui_client.get(f"/api/v1/care-teams/{clinic.first.team_id}/huddle", headers=nurse)
    assert board.status_code == 200, board.text
    whole = board.json()
    assert (whole["total"], whole["to_discuss"], whole["next"]) == (3, 2, None)
    rows = whole["patients"]
    assert [r["external_ref"] for r in rows] == [
        "MRN-HUDDLE-CRISIS", "MRN-HUDDLE-ALERT", "MRN-HUDDLE-STABLE"
    ]  # fmt: skip
    first, second, third = rows
    systolic = next(m for m in first["marks"] if m["measure"] == "systolic")
    assert systolic["value"] == 186.0
    assert systolic["limit"] == "≥ 180 mmHg"
    assert systolic["severity"] == "critical"
    assert systolic["trend"] == "up"
    assert second["open_alerts"] == 1
    assert second["severity"] == "high"
    assert second["minutes_this_month"] == 12
    assert second["follow_up"] == "Nurse One"
    assert "no reading yet" in second["reasons"]
    assert third["reasons"] == []
    assert all(m["trend"] == "steady" for m in third["marks"])
    # Enrolled just now: the readings before it are not the episode's to count.
    assert third["days_with_readings"] == 0

    outside = ui_client.get(f"/api/v1/care-teams/{clinic.second.team_id}/huddle", headers=nurse)
    assert outside.status_code == 404
    # The board's plans are the rule engine's parsed ones: one cache a process.
    state = ui_client.app.state  # type: ignore[attr-defined]
    assert state.rules.plans is state.plans
    assert len(state.plans) > 0

    # A page at a time, in the board's order, each page's trends its own; the audit names
    # only the patients a page showed.
    pages = [
        ui_client.get(
            f"/api/v1/care-teams/{clinic.first.team_id}/huddle?offset={offset}&limit=1",
            headers=nurse,
        ).json()
        for offset in (0, 1, 2)
    ]
    assert [p["next"] for p in pages] == [1, 2, None]
    assert [p["total"] for p in pages] == [3, 3, 3]
    assert [p["patients"] for p in pages] == [[row] for row in rows]
    past = ui_client.get(
        f"/api/v1/care-teams/{clinic.first.team_id}/huddle?offset=3", headers=nurse
    ).json()
    assert (past["patients"], past["total"], past["next"]) == ([], 3, None)
    with psycopg.connect(db_url) as conn:
        audited = conn.execute(
            "SELECT patient_id FROM audit_event WHERE resource = 'huddle' ORDER BY id"
        ).fetchall()
    read = [p for (p,) in audited]
    assert sorted(read[:3]) == sorted([crisis, alerted, stable])
    assert read[3:] == [crisis, alerted, stable, None]

    # The same board in the browser, with the follow-up given from it.
    browser_sign_in(ui_client, "nurse-1")
    csrf = {CSRF_FIELD: browser_csrf(db_url, "nurse-1")}
    page = ui_client.get("/ui/huddle")
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    assert (
        text.index("MRN-HUDDLE-CRISIS")
        < text.index("MRN-HUDDLE-ALERT")
        < text.index("MRN-HUDDLE-STABLE")
    )
    assert "3 patients, 2 to discuss" in text
    assert "Last systolic 186 mmHg: ≥ 180 mmHg (critical)." in text
    assert "MRN-HUDDLE-ELSEWHERE" not in text
    given = ui_client.post(
        f"/ui/patients/{stable}/follow-up",
        data={
            **csrf,
            "staff_id": str(clinic.teammate),
            "back": f"/ui/huddle?team={clinic.first.team_id}",
        },
        follow_redirects=False,
    )
    assert given.status_code == 303, given.text
    assert given.headers["location"] == f"/ui/huddle?team={clinic.first.team_id}"
    with psycopg.connect(db_url) as conn:
        [(owner,)] = conn.execute(
            "SELECT follow_up_staff_id FROM patient WHERE id = %s", [stable]
        ).fetchall()
    assert owner == clinic.teammate

    # The board a page at a time; a follow-up given on the second page comes back to it.
    monkeypatch.setattr(rpm.web.huddle, "PAGE_SIZE", 2)
    board_page = f"/ui/huddle?team={clinic.first.team_id}"
    first_page = html.unescape(ui_client.get(board_page).text)
    assert "3 patients, 2 to discuss: 1 to 2 here" in first_page
    assert f'href="{board_page}&offset=2" rel="next">Next page' in first_page
    assert "MRN-HUDDLE-STABLE" not in first_page
    last_page = html.unescape(ui_client.get(f"{board_page}&offset=2").text)
    assert "3 patients, 2 to discuss: 3 to 3 here" in last_page
    assert "MRN-HUDDLE-STABLE" in last_page
    assert "MRN-HUDDLE-CRISIS" not in last_page
    assert f'<a href="{board_page}">First page</a>' in last_page
    assert "Next page" not in last_page
    assert f'name="back" value="{board_page}&offset=2"' in last_page
    past = html.unescape(ui_client.get(f"{board_page}&offset=4").text)
    assert "No more patients on this board." in past


def test_a_note_written_on_the_patient_page(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    patient = clinic.first.patient("MRN-NOTE-UI")
    browser_sign_in(ui_client, "nurse-1")
    csrf = {CSRF_FIELD: browser_csrf(db_url, "nurse-1")}
    written = ui_client.post(
        f"/ui/patients/{patient}/notes",
        data={**csrf, "body": "Evening shift: asked to re-measure tomorrow."},
        follow_redirects=False,
    )
    assert written.status_code == 303, written.text
    assert written.headers["location"] == f"/ui/patients/{patient}#notes"
    text = html.unescape(ui_client.get(f"/ui/patients/{patient}").text)
    assert "Evening shift: asked to re-measure tomorrow." in text
    assert "Nurse One" in text
