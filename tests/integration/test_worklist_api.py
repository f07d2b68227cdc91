"""The worklist and the alert lifecycle over HTTP against the real PostgreSQL: order,
filters and paging; acknowledge, assign, resolve, each refused with 409 and its reason
when the state does not allow it; the append-only event log; care teams and on-call."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress
from tests.support import as_nobody, sign_in_as, signed_in, wait_until_ready, wiring

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def client(db_url: str, mqtt_broker: BrokerAddress) -> Iterator[TestClient]:
    """The service, signed in as an admin (who enrols patients and sets up care teams);
    nurses send their own sign-in."""
    fatal: list[str] = []
    with TestClient(create_app(wiring(db_url, mqtt_broker, fatal))) as client:
        wait_until_ready(client)
        yield signed_in(client, db_url, "admin-1")
    assert not fatal


def _created(response: Any) -> Any:
    assert response.status_code == 201, response.text
    return response.json()


def _patient(client: TestClient, ref: str) -> int:
    body = {
        "external_ref": ref,
        "given_name": "Test",
        "family_name": "Patient",
        "time_zone": "America/Chicago",
        "templates": ["hypertension"],
    }
    patient_id: int = _created(client.post("/api/v1/patients", json=body))["id"]
    return patient_id


def _staff(client: TestClient, username: str, role: str = "nurse", phone: str | None = None) -> int:
    body = {"username": username, "display_name": f"Staff {username}", "role": role, "phone": phone}
    staff_id: int = _created(client.post("/api/v1/staff", json=body))["id"]
    return staff_id


def _alert(db_url: str, patient_id: int, rule: str, severity: str, opened_ago_min: int) -> int:
    """An alert as the rule engine opens it (the engine's own tests cover that path)."""
    opened = NOW - timedelta(minutes=opened_ago_min)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "INSERT INTO alert (patient_id, rule_id, plan_version, severity, message,"
            " latest_message, first_triggered_at, last_triggered_at, occurrences, opened_at)"
            " VALUES (%s, %s, 1, %s, 'm', 'm', %s, %s, 1, %s) RETURNING id",
            [patient_id, rule, severity, opened, opened, opened],
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO alert_event (alert_id, actor, action, to_status)"
            " VALUES (%s, 'system:rules', 'opened', 'open')",
            [row[0]],
        )
    return int(row[0])


def test_the_worklist_is_most_severe_first_then_oldest_and_pages_by_key(
    client: TestClient, db_url: str
) -> None:
    p1, p2 = _patient(client, "P-1"), _patient(client, "P-2")
    warning_old = _alert(db_url, p1, "bp_sustained_stage2", "warning", 300)
    critical_new = _alert(db_url, p1, "bp_crisis", "critical", 5)
    high = _alert(db_url, p2, "systolic_low", "high", 60)
    critical_old = _alert(db_url, p2, "bp_crisis", "critical", 30)
    order = [critical_old, critical_new, high, warning_old]

    def walk(limit: int, **filters: Any) -> list[int]:
        seen: list[int] = []
        after = None
        while True:
            params: dict[str, Any] = {"limit": limit, **filters}
            if after:
                params["after"] = after
            page = client.get("/api/v1/alerts", params=params).json()
            seen += [a["id"] for a in page["alerts"]]
            if not (after := page["next"]):
                return seen

    assert walk(3) == order
    # A page at a time: the next page goes on within the rank, then into the ranks below.
    assert walk(1) == order
    assert walk(1, severity=["critical", "warning"]) == [critical_old, critical_new, warning_old]

    def ids(**params: Any) -> list[int]:
        response = client.get("/api/v1/alerts", params=params)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["alerts"]]

    assert ids(patient_id=p2) == [critical_old, high]
    assert ids(severity=["critical", "high"]) == [critical_old, critical_new, high]
    bad = client.get("/api/v1/alerts", params={"after": "not-a-token"})
    assert bad.status_code == 422
    assert "page token" in bad.json()["detail"]

    # The team filter follows the patient's care team.
    team = _created(client.post("/api/v1/care-teams", json={"name": "Team A"}))["id"]
    put = client.put(f"/api/v1/patients/{p2}/care-team", json={"care_team_id": team})
    assert put.status_code == 200
    assert put.json()["care_team_id"] == team
    assert ids(care_team_id=team) == [critical_old, high]

    # A patient's history: newest first (as raised), paged back by `before`.
    with psycopg.connect(db_url) as conn:  # resolved, as a nurse would (tested below)
        conn.execute(
            "UPDATE alert SET status = 'resolved', resolved_at = now(), resolved_by = 'nurse-1',"
            " outcome = 'no_action_needed', resolution_note = 'reviewed' WHERE id = %s",
            [warning_old],
        )
    history: list[int] = []
    before = None
    while True:
        params = {"include_resolved": "true", "limit": 1} | ({"before": before} if before else {})
        page = client.get(f"/api/v1/patients/{p1}/alerts", params=params).json()
        history += [a["id"] for a in page["alerts"]]
        if not (before := page["next"]):
            break
    assert history == [critical_new, warning_old]
    open_only = client.get(f"/api/v1/patients/{p1}/alerts").json()
    assert [a["id"] for a in open_only["alerts"]] == [critical_new]


def test_acknowledge_assign_resolve_and_every_refusal(client: TestClient, db_url: str) -> None:
    patient = _patient(client, "P-1")
    team = _created(client.post("/api/v1/care-teams", json={"name": "Team A"}))["id"]
    client.put(f"/api/v1/patients/{patient}/care-team", json={"care_team_id": team})
    nurse, backup = _staff(client, "nurse-1"), _staff(client, "nurse-2")
    outsider = _staff(client, "nurse-9")
    for member in (nurse, backup):
        assert client.put(f"/api/v1/care-teams/{team}/members/{member}").status_code == 200
    nurse_1 = sign_in_as(client, db_url, "nurse-1", "nurse", nurse)
    nurse_2 = sign_in_as(client, db_url, "nurse-2", "nurse", backup)
    alert = _alert(db_url, patient, "bp_crisis", "critical", 10)

    ack = client.post(
        f"/api/v1/alerts/{alert}/acknowledge", headers=nurse_1, json={"note": "on it"}
    )
    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "acknowledged"
    assert ack.json()["acknowledged_by"] == "nurse-1"
    assert ack.json()["assigned_to"] == nurse

    again = client.post(f"/api/v1/alerts/{alert}/acknowledge", headers=nurse_1, json={})
    assert again.status_code == 409
    assert again.json()["detail"] == f"alert {alert} is already acknowledged by nurse-1"

    refused = client.post(
        f"/api/v1/alerts/{alert}/assign", headers=nurse_1, json={"staff_id": outsider}
    )
    assert refused.status_code == 422
    assert f"staff member {outsider} is not in care team {team}" in refused.json()["detail"]
    moved = client.post(
        f"/api/v1/alerts/{alert}/assign", headers=nurse_1, json={"staff_id": backup}
    )
    assert moved.status_code == 200
    assert moved.json()["assigned_to"] == backup

    no_note = client.post(
        f"/api/v1/alerts/{alert}/resolve", headers=nurse_1, json={"outcome": "patient_contacted"}
    )
    assert no_note.status_code == 422
    bad_outcome = client.post(
        f"/api/v1/alerts/{alert}/resolve", headers=nurse_1, json={"outcome": "fixed", "note": "x"}
    )
    assert bad_outcome.status_code == 422
    done = client.post(
        f"/api/v1/alerts/{alert}/resolve",
        headers=nurse_2,
        json={"outcome": "patient_contacted", "note": "re-measured 150/90, advised"},
    )
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["outcome"]) == ("resolved", "patient_contacted")
    late = client.post(f"/api/v1/alerts/{alert}/acknowledge", headers=nurse_1, json={})
    assert late.status_code == 409
    assert "already resolved" in late.json()["detail"]
    missing = client.post("/api/v1/alerts/999999/acknowledge", headers=nurse_1, json={})
    assert missing.status_code == 404
    no_actor = as_nobody(client, "POST", f"/api/v1/alerts/{alert}/acknowledge", json={})
    assert no_actor.status_code == 401

    events = client.get(f"/api/v1/alerts/{alert}").json()["events"]
    assert [(e["action"], e["actor"], e["from_status"], e["to_status"]) for e in events] == [
        ("opened", "system:rules", None, "open"),
        ("acknowledged", "nurse-1", "open", "acknowledged"),
        ("assigned", "nurse-1", "acknowledged", "acknowledged"),
        ("resolved", "nurse-2", "acknowledged", "resolved"),
    ]
    assert events[3]["reason"] == "re-measured 150/90, advised"
    assert client.get("/api/v1/alerts").json()["alerts"] == []


def test_the_event_log_cannot_be_changed(client: TestClient, db_url: str) -> None:
    alert = _alert(db_url, _patient(client, "P-1"), "bp_crisis", "critical", 1)
    with psycopg.connect(db_url) as conn:
        for statement in (
            "UPDATE alert_event SET actor = 'someone-else'",
            "DELETE FROM alert_event",
            "TRUNCATE alert_event CASCADE",
        ):
            with (
                pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
                conn.transaction(),
            ):
                conn.execute(statement)
        assert conn.execute(
            "SELECT count(*) FROM alert_event WHERE alert_id = %s", [alert]
        ).fetchone() == (1,)


def test_care_teams_with_members_and_an_on_call_schedule(client: TestClient) -> None:
    nurse = _staff(client, "nurse-1", phone="+15555550101")
    physician = _staff(client, "doc-1", role="physician", phone="+15555550103")
    taken = client.post(
        "/api/v1/staff",
        json={"username": "nurse-3", "display_name": "N", "role": "nurse", "phone": "+15555550101"},
    )
    assert taken.status_code == 409
    assert "phone number" in taken.json()["detail"]
    not_e164 = client.post(
        "/api/v1/staff",
        json={"username": "nurse-4", "display_name": "N", "role": "nurse", "phone": "555-0101"},
    )
    assert not_e164.status_code == 422
    assert "E.164" in not_e164.json()["detail"]

    team = _created(client.post("/api/v1/care-teams", json={"name": "Team A"}))["id"]
    assert client.post("/api/v1/care-teams", json={"name": "Team A"}).status_code == 409
    team_b = _created(client.post("/api/v1/care-teams", json={"name": "Team B"}))["id"]
    first = client.get("/api/v1/care-teams", params={"limit": 1}).json()
    rest = client.get("/api/v1/care-teams", params={"after": first[-1]["id"]}).json()
    assert [t["id"] for t in first + rest] == [team, team_b]
    shift = {
        "staff_id": nurse,
        "tier": 1,
        "starts_at": (NOW - timedelta(hours=1)).isoformat(),
        "ends_at": (NOW + timedelta(hours=7)).isoformat(),
    }
    not_member = client.post(f"/api/v1/care-teams/{team}/shifts", json=shift)
    assert not_member.status_code == 422
    assert "not a member" in not_member.json()["detail"]
    for member in (nurse, physician):
        client.put(f"/api/v1/care-teams/{team}/members/{member}")
    _created(client.post(f"/api/v1/care-teams/{team}/shifts", json=shift))
    overlap = client.post(
        f"/api/v1/care-teams/{team}/shifts",
        json={**shift, "staff_id": physician, "starts_at": NOW.isoformat()},
    )
    assert overlap.status_code == 409
    assert "overlaps another on-call nurse shift" in overlap.json()["detail"]
    _created(
        client.post(
            f"/api/v1/care-teams/{team}/shifts", json={**shift, "staff_id": physician, "tier": 3}
        )
    )

    detail = client.get(f"/api/v1/care-teams/{team}").json()
    assert {m["username"] for m in detail["team"]["members"]} == {"nurse-1", "doc-1"}
    assert {tier: s["username"] for tier, s in detail["on_call"].items()} == {
        "1": "nurse-1",
        "3": "doc-1",
    }
    assert len(client.get(f"/api/v1/care-teams/{team}/shifts").json()) == 2
    assert client.get("/api/v1/care-teams/999").status_code == 404
