"""Program operations over HTTP against the real service: adherence on the patient's clock
(a patient's, and the teams' patients at risk), the device-supply and time codes their
data and logged time support, staff time logs, the monthly time report (JSON and CSV),
and a patient's consent to SMS reminders.

Patients enrolled through the API start their episode of care now; a test that needs a
period that began earlier moves the enrolment and the episode back in SQL. Days are the
patient's days in America/Chicago, so readings sit near local midnight where a UTC day
would count them on another day.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import Clinic
from tests.support import TEST_PASSWORD, add_readings, add_user, bearer, sign_in_as

CHICAGO = ZoneInfo("America/Chicago")
Headers = dict[str, str]

WEIGHT = {"weight_kg": 81.5}
BLOOD_PRESSURE = {"systolic_mmhg": 150.0, "diastolic_mmhg": 90.0}


@pytest.fixture
def admin(ui_client: TestClient, clinic: Clinic) -> Headers:
    """The clinic's admin (who enrols patients and sees every team's)."""
    return bearer(ui_client, "admin-1", TEST_PASSWORD)


@pytest.fixture
def nurse(ui_client: TestClient, clinic: Clinic) -> Headers:
    """nurse-1, Nurse One of Team A."""
    return bearer(ui_client, "nurse-1", TEST_PASSWORD)


def _today() -> date:
    """The patients' day now. A test run across Chicago's midnight would see two."""
    return datetime.now(CHICAGO).date()


def _local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=CHICAGO)


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _began(db_url: str, patient_id: int, at: datetime) -> None:
    """The patient enrolled, and their open episode of care begun, at `at`."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE patient SET enrolled_at = %s WHERE id = %s", [at, patient_id])
        conn.execute(
            "UPDATE care_episode SET started_at = %s WHERE patient_id = %s AND ended_at IS NULL",
            [at, patient_id],
        )


def _add_average(db_url: str, serial: str, patient_id: int, at: datetime) -> None:
    """A blood-pressure summary (an Open mHealth average), as an OMH upload stores it."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO reading (device_id, kind, measured_at, patient_id, systolic_mmhg,"
            " diastolic_mmhg, statistic, original, source)"
            " SELECT id, 'blood_pressure', %s, %s, 140, 85, 'average', '{}', 'omh'"
            " FROM device WHERE serial = %s",
            [at, patient_id, serial],
        )


def _audited(db_url: str, username: str, resource: str) -> list[tuple[str, int | None]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT action, patient_id FROM audit_event WHERE username = %s AND resource = %s"
            " ORDER BY id",
            [username, resource],
        ).fetchall()
    return [(action, patient_id) for action, patient_id in rows]


def _set_status(client: TestClient, admin: Headers, patient_id: int, status: str) -> None:
    body = {"status": status, "reason": "Fictional test change"}
    _ok(client.put(f"/api/v1/patients/{patient_id}/status", json=body, headers=admin))


def _log(
    client: TestClient,
    who: Headers,
    patient_id: int,
    started_at: datetime,
    minutes: int,
    interactive: bool,
    note: str = "Reviewed the week's readings",
) -> Any:
    body = {
        "minutes": minutes,
        "started_at": started_at.isoformat(),
        "interactive": interactive,
        "note": note,
    }
    return client.post(f"/api/v1/patients/{patient_id}/time-logs", json=body, headers=who)


# Adherence


def test_adherence_counts_local_days_per_device_kind_and_leaves_summaries_out(
    ui_client: TestClient, db_url: str, clinic: Clinic, nurse: Headers
) -> None:
    today = _today()
    patient = clinic.first.patient("MRN-ADH")
    clinic.first.device("SCALE-ADH", "weight_scale", patient)
    clinic.first.device("CUFF-ADH", "blood_pressure_cuff", patient)
    _began(db_url, patient, _local(today - timedelta(days=14), 10))
    # Two weighings a day on 8 days, five minutes after and before local midnight: one day
    # each on the patient's clock, but the late one is already the next day in UTC.
    scale_days = [today - timedelta(days=n) for n in range(10, 2, -1)]
    weighings = [at for day in scale_days for at in (_local(day, 0, 5), _local(day, 23, 55))]
    add_readings(db_url, "SCALE-ADH", patient, "body_weight", [(at, WEIGHT) for at in weighings])
    cuff_readings = [_local(today - timedelta(days=n), 7, 30) for n in (12, 11)]
    add_readings(
        db_url,
        "CUFF-ADH",
        patient,
        "blood_pressure",
        [(at, BLOOD_PRESSURE) for at in cuff_readings],
    )
    # Summaries are not readings on a day: neither on a day without readings nor as the last.
    for n in (13, 1):
        _add_average(db_url, "CUFF-ADH", patient, _local(today - timedelta(days=n), 12))

    found = _ok(ui_client.get(f"/api/v1/patients/{patient}/adherence", headers=nurse))

    overall = found["overall"]
    assert overall["period_number"] == 1
    assert overall["period_first_day"] == str(today - timedelta(days=14))
    assert overall["period_last_day"] == str(today + timedelta(days=15))
    assert (overall["days_with_readings"], overall["days_needed"], overall["days_left"]) == (
        10,
        6,
        16,
    )
    assert overall["summary"] == "10 of 16 days with 16 days left"
    # 10 days in 14 keeps up: 10 + 16 * 10/14 = 21 by the end.
    assert (overall["projected_days"], overall["standing"]) == (21, "on_track")
    assert datetime.fromisoformat(overall["last_reading_at"]) == weighings[-1]

    by_kind = found["by_device_kind"]
    assert set(by_kind) == {"weight_scale", "blood_pressure_cuff"}
    scale, cuff = by_kind["weight_scale"], by_kind["blood_pressure_cuff"]
    assert scale["summary"] == "8 of 16 days with 16 days left"
    assert scale["standing"] == "on_track"
    assert cuff["summary"] == "2 of 16 days with 16 days left"
    assert (cuff["projected_days"], cuff["standing"]) == (4, "at_risk")
    assert datetime.fromisoformat(cuff["last_reading_at"]) == cuff_readings[-1]
    assert _audited(db_url, "nurse-1", "adherence") == [("read", patient)]


def test_periods_start_every_30_local_days_from_the_episode_and_a_discharge_ends_them(
    ui_client: TestClient, db_url: str, clinic: Clinic, admin: Headers, nurse: Headers
) -> None:
    today = _today()
    patient = clinic.first.patient("MRN-PER")
    clinic.first.device("SCALE-PER", "weight_scale", patient)
    # 22:00 in Chicago is already the next day in UTC: the periods count from the local day.
    _began(db_url, patient, _local(today - timedelta(days=35), 22))
    second_period = today - timedelta(days=5)
    readings = [
        _local(second_period - timedelta(days=1), 23, 50),  # the first period's last day
        _local(second_period, 0, 10),
        _local(today - timedelta(days=2), 12),
        datetime.now(UTC) - timedelta(seconds=5),
    ]
    add_readings(db_url, "SCALE-PER", patient, "body_weight", [(at, WEIGHT) for at in readings])

    overall = _ok(ui_client.get(f"/api/v1/patients/{patient}/adherence", headers=nurse))["overall"]
    assert (overall["period_number"], overall["period_first_day"]) == (2, str(second_period))
    # Today has its reading, so today is no longer a day left to fill.
    assert overall["summary"] == "3 of 16 days with 24 days left"
    assert overall["standing"] == "at_risk"

    _set_status(ui_client, admin, patient, "discharged")
    gone = _ok(ui_client.get(f"/api/v1/patients/{patient}/adherence", headers=nurse))
    assert gone == {"patient_id": patient, "overall": None, "by_device_kind": {}}


def test_at_risk_lists_the_teams_active_patients_who_will_miss_16_days_fewest_to_spare_first(
    ui_client: TestClient, db_url: str, clinic: Clinic, admin: Headers, nurse: Headers
) -> None:
    today = _today()
    three_weeks_ago = _local(today - timedelta(days=21), 10)
    slow, steady = clinic.first.patient("MRN-SLOW"), clinic.first.patient("MRN-STEADY")
    discharged = clinic.first.patient("MRN-DONE")
    silent = clinic.second.patient("MRN-SILENT")
    for patient in (slow, steady, discharged, silent):
        _began(db_url, patient, three_weeks_ago)
    for serial, patient, days in (("SCALE-SLOW", slow, 8), ("SCALE-STEADY", steady, 15)):
        clinic.first.device(serial, "weight_scale", patient)
        add_readings(
            db_url,
            serial,
            patient,
            "body_weight",
            [(_local(today - timedelta(days=20 - n), 19), WEIGHT) for n in range(days)],
        )
    # Summaries on days of their own do not lift the slow patient's count.
    clinic.first.device("CUFF-SLOW", "blood_pressure_cuff", slow)
    for n in (5, 4):
        _add_average(db_url, "CUFF-SLOW", slow, _local(today - timedelta(days=n), 12))
    _set_status(ui_client, admin, discharged, "discharged")

    mine = _ok(ui_client.get("/api/v1/adherence/at-risk", headers=nurse))
    assert mine["next"] is None
    [row] = mine["patients"]
    assert (row["patient_id"], row["external_ref"], row["care_team_id"]) == (
        slow,
        "MRN-SLOW",
        clinic.first.team_id,
    )
    # At 8 days in 21 the period ends near 11; 16 is still in reach.
    assert row["adherence"]["summary"] == "8 of 16 days with 9 days left"
    assert (row["adherence"]["standing"], row["adherence"]["projected_days"]) == ("at_risk", 11)
    assert _audited(db_url, "nurse-1", "adherence") == [("read", slow)]
    # Nor can the nurse look at the other team's patient one by one.
    assert ui_client.get(f"/api/v1/patients/{silent}/adherence", headers=nurse).status_code == 404

    # The admin sees every team's; 0 days with 9 left has 7 fewer to spare than 8 with 9.
    pages, offset = [], 0
    while offset is not None:
        page = _ok(
            ui_client.get(
                "/api/v1/adherence/at-risk", params={"offset": offset, "limit": 1}, headers=admin
            )
        )
        pages.append([(p["patient_id"], p["adherence"]["standing"]) for p in page["patients"]])
        offset = page["next"]
    assert pages == [[(silent, "out_of_reach")], [(slow, "at_risk")]]


def test_an_at_risk_page_audits_only_the_patients_it_shows(
    ui_client: TestClient, db_url: str, clinic: Clinic, admin: Headers
) -> None:
    patients = [clinic.first.patient(f"MRN-QUIET-{n}") for n in (1, 2, 3)]
    for patient in patients:
        _began(db_url, patient, _local(_today() - timedelta(days=21), 10))

    page = _ok(ui_client.get("/api/v1/adherence/at-risk", params={"limit": 1}, headers=admin))

    shown = [p["patient_id"] for p in page["patients"]]
    assert len(shown) == 1
    # As the worklist's: "who looked at this patient" must not name unseen patients.
    assert [p for _, p in _audited(db_url, "admin-1", "adherence")] == shown


# Billing periods


def test_device_supply_per_period_and_set_up_once_per_episode(
    ui_client: TestClient, db_url: str, clinic: Clinic, admin: Headers, nurse: Headers
) -> None:
    today = _today()
    patient = clinic.first.patient("MRN-BILL")
    clinic.first.device("SCALE-BILL", "weight_scale", patient)
    _set_status(ui_client, admin, patient, "discharged")
    _set_status(ui_client, admin, patient, "active")
    # The first episode: two whole periods, 70 to 11 days ago, then the second from 10 days
    # ago (the discharge and re-activation above, moved back to give them readings).
    first_day = today - timedelta(days=70)
    with psycopg.connect(db_url, autocommit=True) as conn:
        (first, _), (second, _) = conn.execute(
            "SELECT id, ended_at FROM care_episode WHERE patient_id = %s ORDER BY id", [patient]
        ).fetchall()
        conn.execute(
            "UPDATE patient SET enrolled_at = %s WHERE id = %s",
            [_local(first_day, 22), patient],
        )
        conn.execute(
            "UPDATE care_episode SET started_at = %s, ended_at = %s WHERE id = %s",
            [_local(first_day, 22), _local(today - timedelta(days=11), 20), first],
        )
        conn.execute(
            "UPDATE care_episode SET started_at = %s WHERE id = %s",
            [_local(today - timedelta(days=10), 9), second],
        )
    # Period 1: 15 days, the last at 23:30 on its last day (the next day in UTC).
    period_1 = [_local(first_day + timedelta(days=n), 12) for n in range(1, 15)]
    period_1.append(_local(first_day + timedelta(days=29), 23, 30))
    # Period 2: 16 days, each 15 minutes after local midnight.
    period_2 = [_local(first_day + timedelta(days=30 + n), 0, 15) for n in range(16)]
    # The new episode's first period: 3 days.
    episode_2 = [_local(today - timedelta(days=n), 12) for n in (9, 8, 7)]
    add_readings(
        db_url,
        "SCALE-BILL",
        patient,
        "body_weight",
        [(at, WEIGHT) for at in period_1 + period_2 + episode_2],
    )
    # A summary on a day of its own would make period 1 16 days, if it counted.
    clinic.first.device("CUFF-BILL", "blood_pressure_cuff", patient)
    _add_average(db_url, "CUFF-BILL", patient, _local(first_day + timedelta(days=20), 12))

    billing = _ok(ui_client.get(f"/api/v1/patients/{patient}/billing", headers=nurse))

    assert billing["time_zone"] == "America/Chicago"
    periods = [
        (p["number"], p["first_day"], p["days_with_readings"], p["codes"], p["complete"])
        for p in billing["periods"]
    ]
    assert periods == [
        (1, str(today - timedelta(days=10)), 3, ["99445", "99453"], False),
        (2, str(first_day + timedelta(days=30)), 16, ["99454"], True),
        (1, str(first_day), 15, ["99445", "99453"], True),
    ]
    for period in billing["periods"]:
        assert not {"99445", "99454"} <= set(period["codes"])
    assert billing["periods"][2]["reasons"] == [
        "99445: readings on 15 of 30 days",
        "99453: the episode's first period with device supply",
    ]
    assert billing["periods"][1]["reasons"] == ["99454: readings on 16 of 30 days"]
    # The re-activation restarts the adherence periods too.
    overall = _ok(ui_client.get(f"/api/v1/patients/{patient}/adherence", headers=nurse))["overall"]
    assert (overall["period_number"], overall["period_first_day"]) == (
        1,
        str(today - timedelta(days=10)),
    )
    assert _audited(db_url, "nurse-1", "billing") == [("read", patient)]


def test_readings_after_a_discharge_are_not_billed_to_the_ended_episode(
    ui_client: TestClient, db_url: str, clinic: Clinic, admin: Headers
) -> None:
    today = _today()
    patient = clinic.first.patient("MRN-GAP")
    clinic.first.device("SCALE-GAP", "weight_scale", patient)
    _set_status(ui_client, admin, patient, "discharged")
    _set_status(ui_client, admin, patient, "active")
    # Enrolled 40 days ago, discharged 5 days ago and re-activated an hour later: the first
    # episode's second period (from 10 days ago) ends at the discharge, so the days after
    # it are the new episode's alone.
    with psycopg.connect(db_url, autocommit=True) as conn:
        (first,), (second,) = conn.execute(
            "SELECT id FROM care_episode WHERE patient_id = %s ORDER BY id", [patient]
        ).fetchall()
        started = _local(today - timedelta(days=40), 10)
        conn.execute("UPDATE patient SET enrolled_at = %s WHERE id = %s", [started, patient])
        conn.execute(
            "UPDATE care_episode SET started_at = %s, ended_at = %s WHERE id = %s",
            [started, _local(today - timedelta(days=5), 12), first],
        )
        conn.execute(
            "UPDATE care_episode SET started_at = %s WHERE id = %s",
            [_local(today - timedelta(days=5), 13), second],
        )
    after_return = [_local(today - timedelta(days=n), 12) for n in (4, 3, 2, 1)]
    add_readings(db_url, "SCALE-GAP", patient, "body_weight", [(at, WEIGHT) for at in after_return])

    periods = _ok(ui_client.get(f"/api/v1/patients/{patient}/billing", headers=admin))["periods"]

    by_start = {p["first_day"]: (p["days_with_readings"], p["codes"]) for p in periods}
    assert by_start[str(today - timedelta(days=5))] == (4, ["99445", "99453"])
    # The same 4 days must not supply the ended episode's period as well.
    assert by_start[str(today - timedelta(days=10))] == (0, [])


# Time logs


def test_time_is_logged_as_minutes_or_by_stopwatch_never_twice_and_voided_with_a_reason(
    ui_client: TestClient, db_url: str, clinic: Clinic, nurse: Headers
) -> None:
    add_user(db_url, "nurse-2", "nurse", TEST_PASSWORD, clinic.teammate)
    teammate = bearer(ui_client, "nurse-2", TEST_PASSWORD)
    patient, other = clinic.first.patient("MRN-TIME"), clinic.first.patient("MRN-WATCH")
    day = _today() - timedelta(days=1)
    month = f"{day:%Y-%m}"

    call = _ok(
        _log(ui_client, nurse, patient, _local(day, 10), 25, True, "Called about missed readings"),
        201,
    )
    assert (call["minutes"], call["interactive"], call["note"]) == (
        25,
        True,
        "Called about missed readings",
    )
    assert (call["staff_id"], call["staff_name"], call["staff_role"], call["created_by"]) == (
        clinic.nurse,
        "Nurse One",
        "nurse",
        "nurse-1",
    )
    assert datetime.fromisoformat(call["ended_at"]) == _local(day, 10, 25)

    twice = _log(ui_client, nurse, other, _local(day, 10, 20), 10, False)
    assert twice.status_code == 409
    assert twice.json()["detail"].startswith(f"this time overlaps your time-log entry {call['id']}")
    assert twice.json()["detail"].endswith("the same minutes cannot count twice")
    # Another person's minutes are their own: a teammate on the same call logs them too.
    joined = _ok(_log(ui_client, teammate, patient, _local(day, 10, 10), 15, False), 201)
    future = _log(ui_client, nurse, patient, datetime.now(UTC) + timedelta(hours=1), 10, False)
    assert future.status_code == 422
    assert future.json()["detail"] == "time cannot be logged before it has been spent"

    def month_of_patient() -> Any:
        path = f"/api/v1/patients/{patient}/time-logs"
        return _ok(ui_client.get(path, params={"month": month}, headers=nurse))

    both = month_of_patient()["month"]
    assert (both["minutes"], both["interactive"], both["codes"]) == (40, True, ["99457", "99458"])

    void_path = f"/api/v1/patients/{patient}/time-logs/{joined['id']}/void"
    # Only whoever logged it (or a care manager) takes minutes off the codes.
    refused = ui_client.post(void_path, json={"reason": "Entered twice"}, headers=nurse)
    assert refused.status_code == 403
    assert "only the person who logged" in refused.json()["detail"]
    voided = _ok(ui_client.post(void_path, json={"reason": "Entered twice"}, headers=teammate))
    assert voided["void_reason"] == "Entered twice"
    again = ui_client.post(void_path, json={"reason": "Entered twice"}, headers=teammate)
    assert again.status_code == 409
    assert again.json()["detail"] == f"time-log entry {joined['id']} is already void"
    elsewhere = f"/api/v1/patients/{other}/time-logs/{joined['id']}/void"
    assert ui_client.post(elsewhere, json={"reason": "x"}, headers=nurse).status_code == 404

    # The voided entry stays on the record, struck out; its minutes no longer count.
    after = month_of_patient()
    assert [(e["id"], e["voided_at"] is not None) for e in after["entries"]] == [
        (call["id"], False),
        (joined["id"], True),
    ]
    assert after["month"] == {
        "month": month,
        "entries": 1,
        "minutes": 25,
        "physician_minutes": 0,
        "interactive": True,
        "codes": ["99457"],
        "reason": "25 min with an interactive communication",
    }

    # The stopwatch: running (and so overlapping anything later) until stopped.
    watch_path = f"/api/v1/patients/{other}/time-logs/stopwatch"
    watch = _ok(ui_client.post(watch_path, json={"note": "Reviewing readings"}, headers=nurse), 201)
    assert (watch["ended_at"], watch["minutes"], watch["interactive"]) == (None, None, False)
    second = ui_client.post(watch_path, json={}, headers=nurse)
    assert second.status_code == 409
    assert "still running" in second.json()["detail"]
    stop_path = f"/api/v1/patients/{other}/time-logs/{watch['id']}/stop"
    too_soon = ui_client.post(stop_path, json={}, headers=nurse)
    assert too_soon.status_code == 422
    assert too_soon.json()["detail"] == "the stopwatch ran for less than a minute: void it instead"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE time_log SET started_at = now() - interval '12 minutes 10 seconds'"
            " WHERE id = %s",
            [watch["id"]],
        )
    not_theirs = ui_client.post(stop_path, json={}, headers=teammate)
    assert not_theirs.status_code == 409
    assert not_theirs.json()["detail"] == "only the person who started a stopwatch can stop it"
    stopped = _ok(ui_client.post(stop_path, json={"interactive": True}, headers=nurse))
    assert (stopped["minutes"], stopped["interactive"]) == (12, True)
    twice_stopped = ui_client.post(stop_path, json={}, headers=nurse)
    assert twice_stopped.status_code == 409
    assert twice_stopped.json()["detail"] == f"time-log entry {watch['id']} is not running"
    assert [a for a, _ in _audited(db_url, "nurse-1", "time_log")] == ["log", "log", "stop"]
    assert [a for a, _ in _audited(db_url, "nurse-2", "time_log")] == ["log", "void"]


def test_a_physicians_30_minutes_support_99091_unless_the_month_bills_management_time(
    ui_client: TestClient, db_url: str, clinic: Clinic, nurse: Headers
) -> None:
    # A physician signs in with a clinical user role: the staff role marks the physician.
    physician = clinic.first.staff("doc-1", "Doctor One", role="physician")
    doctor = sign_in_as(ui_client, db_url, "doc-1", "nurse", physician)
    patient = clinic.first.patient("MRN-DOC")
    day = _today() - timedelta(days=1)
    _began(db_url, patient, _local(day - timedelta(days=3), 9))

    reviewed = _ok(_log(ui_client, doctor, patient, _local(day, 9), 30, False), 201)
    assert reviewed["staff_role"] == "physician"

    def billing() -> tuple[Any, Any]:
        found = _ok(ui_client.get(f"/api/v1/patients/{patient}/billing", headers=nurse))
        [period] = found["periods"]
        [month] = [m for m in found["months"] if m["month"] == f"{day:%Y-%m}"]
        return period, month

    period, month = billing()
    assert (period["physician_minutes"], period["codes"]) == (30, ["99091"])
    assert period["reasons"][-1] == "99091: 30 min of physician time"
    # No interactive communication: the month supports no management code of its own.
    assert (month["minutes"], month["physician_minutes"], month["codes"]) == (30, 30, [])

    _ok(_log(ui_client, nurse, patient, _local(day, 11), 20, True), 201)
    period, month = billing()
    assert month["codes"] == ["99457", "99458"]
    assert period["codes"] == []
    assert period["reasons"][-1] == f"99091 not billable: 99457/99458 supported in {day:%Y-%m}"


def test_only_care_team_members_log_time(
    ui_client: TestClient, db_url: str, clinic: Clinic, admin: Headers, nurse: Headers
) -> None:
    patient = clinic.first.patient("MRN-WHO")
    other_team = clinic.second.patient("MRN-THEIRS")
    at = datetime.now(UTC) - timedelta(hours=1)

    by_admin = _log(ui_client, admin, patient, at, 10, False)
    assert by_admin.status_code == 403
    assert (
        by_admin.json()["detail"] == "a user with the role admin may not log time spent on patients"
    )
    no_staff = sign_in_as(ui_client, db_url, "cm-without-staff", "care_manager")
    refused = _log(ui_client, no_staff, patient, at, 10, False)
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "user cm-without-staff is not a care-team member: no time to log"
    )
    assert _log(ui_client, nurse, other_team, at, 10, False).status_code == 404
    assert (
        ui_client.get(f"/api/v1/patients/{patient}/time-logs", headers=nurse).json()["entries"]
        == []
    )


# The monthly report


def test_the_time_report_shows_the_care_managers_teams_as_json_and_csv(
    ui_client: TestClient, db_url: str, clinic: Clinic, nurse: Headers
) -> None:
    manager = sign_in_as(
        ui_client,
        db_url,
        "cm-1",
        "care_manager",
        clinic.first.staff("cm-1", "Care Manager One", role="care_manager"),
    )
    add_user(db_url, "nurse-9", "nurse", TEST_PASSWORD, clinic.outsider)
    outsider = bearer(ui_client, "nurse-9", TEST_PASSWORD)
    short, long = clinic.first.patient("MRN-SHORT"), clinic.first.patient("MRN-LONG")
    # A reference a spreadsheet would run as a formula.
    silent = clinic.first.patient("=MRN-NOCALL")
    theirs = clinic.second.patient("MRN-B1")
    untouched = clinic.first.patient("MRN-NONE")
    day = _today() - timedelta(days=1)
    month = f"{day:%Y-%m}"
    _ok(_log(ui_client, nurse, short, _local(day, 8), 12, True), 201)
    _ok(_log(ui_client, nurse, long, _local(day, 9), 25, True), 201)
    _ok(_log(ui_client, nurse, long, _local(day, 10), 40, False), 201)
    _ok(_log(ui_client, nurse, silent, _local(day, 11), 15, False), 201)
    _ok(_log(ui_client, outsider, theirs, _local(day, 9), 30, True), 201)

    report = _ok(ui_client.get("/api/v1/reports/time", params={"month": month}, headers=manager))
    assert (report["month"], report["next"]) == (month, None)
    rows = [
        (r["patient_id"], r["external_ref"], r["time"]["minutes"], r["time"]["codes"])
        for r in report["patients"]
    ]
    assert rows == [
        (short, "MRN-SHORT", 12, ["99470"]),
        (long, "MRN-LONG", 65, ["99457", "99458", "99458"]),
        (silent, "=MRN-NOCALL", 15, []),
    ]
    assert report["patients"][2]["time"]["reason"] == (
        "15 min but no interactive communication in the month"
    )
    assert untouched not in [r["patient_id"] for r in report["patients"]]

    exported = ui_client.get("/api/v1/reports/time.csv", params={"month": month}, headers=manager)
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert exported.headers["content-disposition"] == (
        f'attachment; filename="rpm-time-{month}.csv"'
    )
    assert exported.text.endswith("\r\n")
    header, *lines = list(csv.reader(io.StringIO(exported.text)))
    assert header == [
        "month",
        "patient_id",
        "external_ref",
        "entries",
        "minutes",
        "physician_minutes",
        "interactive",
        "codes",
        "reason",
    ]
    assert lines == [
        [month, str(short), "MRN-SHORT", "1", "12", "0", "yes", "99470",
         "12 min with an interactive communication"],
        [month, str(long), "MRN-LONG", "2", "65", "0", "yes", "99457 99458 99458",
         "65 min with an interactive communication"],
        [month, str(silent), "'=MRN-NOCALL", "1", "15", "0", "no", "",
         "15 min but no interactive communication in the month"],
    ]  # fmt: skip
    assert [p for _, p in _audited(db_url, "cm-1", "time_report")] == [short, long, silent] * 2

    # The report is for care managers and admins; a nurse is refused, saying so.
    refused = ui_client.get("/api/v1/reports/time", params={"month": month}, headers=nurse)
    assert refused.status_code == 403
    assert "may not read the program's time and billing reports" in refused.json()["detail"]


def test_the_time_report_comes_a_page_of_patients_at_a_time_and_audits_the_page_it_shows(
    ui_client: TestClient, db_url: str, clinic: Clinic, admin: Headers, nurse: Headers
) -> None:
    patients = [clinic.first.patient(f"MRN-PAGE-{n}") for n in range(5)]
    day = _today() - timedelta(days=1)
    month = f"{day:%Y-%m}"
    for n, patient in enumerate(patients):
        if n != 2:  # no time: not in the report, and not counted towards a page
            _ok(_log(ui_client, nurse, patient, _local(day, 8 + n), 5 + n, True), 201)
    listed = [patients[n] for n in (0, 1, 3, 4)]

    def page(after: int) -> dict[str, Any]:
        params = {"month": month, "limit": "2", "after": str(after)}
        return _ok(ui_client.get("/api/v1/reports/time", params=params, headers=admin))

    first = page(0)
    assert [r["patient_id"] for r in first["patients"]] == listed[:2]
    assert first["next"] == listed[1]
    second = page(first["next"])
    assert [r["patient_id"] for r in second["patients"]] == listed[2:]
    assert second["next"] is None
    assert page(listed[-1]) == {"month": month, "patients": [], "next": None}
    # Each read audits the patients it returned, not the one it looked ahead to.
    assert [p for _, p in _audited(db_url, "admin-1", "time_report")] == [*listed, None]

    for params in ({"limit": "0"}, {"limit": "1001"}, {"after": "-1"}):
        refused = ui_client.get(
            "/api/v1/reports/time", params={"month": month, **params}, headers=admin
        )
        assert refused.status_code == 422, params


def test_a_month_that_is_not_one_is_refused_as_problem_details(
    ui_client: TestClient, db_url: str, clinic: Clinic, admin: Headers, nurse: Headers
) -> None:
    patient = clinic.first.patient("MRN-MONTH")
    for path, params in (
        ("/api/v1/reports/time", {"month": "2026-13"}),
        ("/api/v1/reports/time.csv", {"month": "2026-00"}),
        (f"/api/v1/patients/{patient}/time-logs", {"month": "0000-05"}),
    ):
        refused = ui_client.get(path, params=params, headers=admin)
        assert refused.status_code == 422, path
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["status"] == 422
        assert refused.json()["instance"] == path
        assert refused.json()["detail"] == (
            f"a month is written YYYY-MM (e.g. 2026-11), not {params['month']!r}"
        )
    for params in ({"month": "November"}, {}):
        refused = ui_client.get("/api/v1/reports/time", params=params, headers=admin)
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["loc"] == ["query", "month"]


# Reminders


def test_reminder_consent_needs_a_phone_shows_only_its_last_digits_and_keeps_its_time(
    ui_client: TestClient, db_url: str, clinic: Clinic, admin: Headers, nurse: Headers
) -> None:
    patient = clinic.first.patient("MRN-SMS")
    path = f"/api/v1/patients/{patient}/reminders"

    assert _ok(ui_client.get(path, headers=nurse)) == {
        "patient_id": patient,
        "phone_ending": None,
        "opted_in": False,
        "opted_in_at": None,
        "after_days": None,
        "quiet_hours_start": None,
        "quiet_hours_end": None,
    }
    no_phone = ui_client.put(path, json={"opted_in": True}, headers=admin)
    assert no_phone.status_code == 422
    assert no_phone.json()["detail"] == (
        "a patient opts in to SMS reminders with a phone number to send them to"
    )
    half_quiet = {"opted_in": True, "phone": "+15555550142", "quiet_hours_start": "21:00"}
    assert ui_client.put(path, json=half_quiet, headers=admin).status_code == 422
    assert ui_client.put(path, json={"opted_in": False}, headers=nurse).status_code == 403

    consent = {
        "opted_in": True,
        "phone": "+15555550142",
        "after_days": 3,
        "quiet_hours_start": "21:00",
        "quiet_hours_end": "08:00",
    }
    given = ui_client.put(path, json=consent, headers=admin)
    assert given.status_code == 200, given.text
    assert "5555550142" not in given.text
    first = given.json()
    assert (first["phone_ending"], first["opted_in"], first["after_days"]) == ("0142", True, 3)
    assert (first["quiet_hours_start"], first["quiet_hours_end"]) == ("21:00:00", "08:00:00")
    assert first["opted_in_at"] is not None

    # Changing the settings keeps the time the patient consented.
    changed = _ok(ui_client.put(path, json={**consent, "after_days": 5}, headers=admin))
    assert (changed["after_days"], changed["opted_in_at"]) == (5, first["opted_in_at"])
    seen = ui_client.get(path, headers=nurse)
    assert seen.json() == changed
    assert "5555550142" not in seen.text
    # A new number is consented to anew: its own time.
    moved = _ok(ui_client.put(path, json={**consent, "phone": "+15555550143"}, headers=admin))
    assert moved["phone_ending"] == "0143"
    assert moved["opted_in_at"] > first["opted_in_at"]

    ended = _ok(ui_client.put(path, json={"opted_in": False}, headers=admin))
    assert (ended["opted_in"], ended["opted_in_at"], ended["phone_ending"]) == (False, None, None)
    # The audit trail records the choice, never the number.
    with psycopg.connect(db_url) as conn:
        details = conn.execute(
            "SELECT action, details::text FROM audit_event WHERE resource = 'reminders' ORDER BY id"
        ).fetchall()
    assert [action for action, _ in details] == [
        "read",
        "change",
        "change",
        "read",
        "change",
        "change",
    ]
    assert not any("555555014" in text for _, text in details)


def test_adherence_and_billing_count_the_same_days_from_the_episode_s_start(
    ui_client: TestClient, db_url: str, clinic: Clinic, nurse: Headers
) -> None:
    """A reading earlier on the enrolment day, before the episode began, is not the
    episode's: both sections of the patient page leave it out (they showed 1 and 0)."""
    today = _today()
    patient = clinic.first.patient("MRN-SAME")
    clinic.first.device("CUFF-SAME", "blood_pressure_cuff", patient)
    first_day = today - timedelta(days=3)
    _began(db_url, patient, _local(first_day, 12))
    add_readings(
        db_url,
        "CUFF-SAME",
        patient,
        "blood_pressure",
        [
            (_local(first_day, 8), BLOOD_PRESSURE),
            (_local(today - timedelta(days=1), 8), BLOOD_PRESSURE),
        ],
    )

    adherence = _ok(ui_client.get(f"/api/v1/patients/{patient}/adherence", headers=nurse))
    billing = _ok(ui_client.get(f"/api/v1/patients/{patient}/billing", headers=nurse))

    assert adherence["overall"]["days_with_readings"] == 1
    assert billing["periods"][0]["days_with_readings"] == 1


def test_an_enrolment_entered_afterwards_counts_from_when_it_was(
    ui_client: TestClient, clinic: Clinic, admin: Headers
) -> None:
    """A patient enrolled ten days ago and entered today: their period began then (the
    demo enrols so, before its two weeks of readings). The future, and more than 90 days
    back, are refused in words."""
    body = {"given_name": "Test", "family_name": "Patient", "time_zone": "America/Chicago",
            "templates": ["hypertension"], "care_team_id": clinic.first.team_id}  # fmt: skip
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    enrolled = _ok(
        ui_client.post(
            "/api/v1/patients",
            json=body | {"external_ref": "MRN-LATE", "enrolled_at": ten_days_ago.isoformat()},
            headers=admin,
        ),
        201,
    )
    adherence = _ok(ui_client.get(f"/api/v1/patients/{enrolled['id']}/adherence", headers=admin))
    assert adherence["overall"]["period_first_day"] == str(ten_days_ago.astimezone(CHICAGO).date())
    for when, says in (
        (datetime.now(UTC) + timedelta(days=1), "must not be in the future"),
        (datetime.now(UTC) - timedelta(days=91), "must be within the last 90 days"),
    ):
        refused = ui_client.post(
            "/api/v1/patients",
            json=body | {"external_ref": "MRN-BAD", "enrolled_at": when.isoformat()},
            headers=admin,
        )
        assert refused.status_code == 422
        assert says in refused.json()["detail"]
