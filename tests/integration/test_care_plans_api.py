"""Patients, care plans and their alerts over HTTP, with readings over real MQTT: enrol
from templates, validate, version, compare, dry-run; and alerts raised once, also with
two consumers sharing the stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress
from tests.support import (
    MosquittoProcess,
    as_nobody,
    sign_in_as,
    signed_in,
    wait_until_ready,
    wiring,
)

CARE_MANAGER = "care-manager-1"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Team:
    """The care team whose care manager the client is signed in as, and the header of the
    admin who set it up (and who registers devices)."""

    id: int
    admin: dict[str, str]


def _care_team(client: TestClient, db_url: str) -> Team:
    """A care team with care-manager-1 in it; from now on the client acts as them."""
    admin = sign_in_as(client, db_url, "admin-1")
    team = client.post("/api/v1/care-teams", headers=admin, json={"name": "Team A"})
    assert team.status_code == 201, team.text
    staff = client.post(
        "/api/v1/staff",
        headers=admin,
        json={"username": CARE_MANAGER, "display_name": "Care Manager", "role": "care_manager"},
    )
    assert staff.status_code == 201, staff.text
    member = client.put(
        f"/api/v1/care-teams/{team.json()['id']}/members/{staff.json()['id']}", headers=admin
    )
    assert member.status_code == 200, member.text
    signed_in(client, db_url, CARE_MANAGER, "care_manager", staff.json()["id"])
    return Team(team.json()["id"], admin)


@pytest.fixture
def team(service: TestClient, db_url: str) -> Team:
    return _care_team(service, db_url)


def _enrol(
    client: TestClient, team: Team, ref: str, templates: list[str] | None = None
) -> dict[str, Any]:
    response = client.post(
        "/api/v1/patients",
        json={
            "external_ref": ref,
            "given_name": "Test",
            "family_name": "Patient",
            "time_zone": "Europe/London",
            "templates": templates if templates is not None else ["hypertension"],
            "care_team_id": team.id,
        },
    )
    assert response.status_code == 201, response.text
    patient: dict[str, Any] = response.json()
    return patient


def _device(
    client: TestClient, team: Team, serial: str, patient_id: int, kind: str = "blood_pressure_cuff"
) -> None:
    registered = client.post(
        "/api/v1/devices", headers=team.admin, json={"serial": serial, "kind": kind}
    )
    assert registered.status_code == 201, registered.text
    response = client.post(
        f"/api/v1/devices/{serial}/assign",
        headers=team.admin,
        json={"patient_id": patient_id, "at": (NOW - timedelta(days=40)).isoformat()},
    )
    assert response.status_code == 200, response.text


def _plan(client: TestClient, patient_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/patients/{patient_id}/care-plan")
    assert response.status_code == 200, response.text
    current: dict[str, Any] = response.json()
    return current


def _replace(
    client: TestClient, patient_id: int, plan: dict[str, Any], based_on: int | None
) -> Any:
    return client.put(
        f"/api/v1/patients/{patient_id}/care-plan",
        json={"plan": plan, "reason": "tuning", "based_on_version": based_on},
    )


def _bp(serial: str, at: datetime, systolic: float, diastolic: float = 80) -> tuple[str, bytes]:
    document = {
        "kind": "blood_pressure",
        "measured_at": at.isoformat(),
        "systolic": systolic,
        "diastolic": diastolic,
        "unit": "mmHg",
    }
    return f"rpm/v1/devices/{serial}/readings", json.dumps(document).encode()


async def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


def _wait_for(client: TestClient, path: str, check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if check(body):
            return body
        assert time.monotonic() < deadline, f"{path}: {body}"
        time.sleep(0.1)


def test_enrolment_from_templates_makes_version_1_with_sources(
    service: TestClient, team: Team
) -> None:
    patient = _enrol(service, team, "P-1", ["hypertension", "diabetes"])
    assert patient["care_plan_version"] == 1
    current = _plan(service, patient["id"])
    assert current["version"] == 1
    assert current["author"] == CARE_MANAGER
    assert current["templates"] == ["hypertension", "diabetes"]
    rules = {rule["id"]: rule for rule in current["plan"]["rules"]}
    assert {"bp_crisis", "glucose_low", "glucose_high", "missed_readings"} <= rules.keys()
    assert all(rule["source"] for rule in rules.values())
    templates = service.get("/api/v1/care-plan-templates").json()
    assert [t["name"] for t in templates] == [
        "hypertension",
        "heart_failure",
        "diabetes",
        "hypertension_personal",
        "heart_failure_personal",
        "diabetes_personal",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda rule: rule["limits"].append({**rule["limits"][0], "op": "below", "value": 200}),
            "lower bound 200 mmHg (below) is not below upper bound 180 mmHg",
        ),
        (lambda rule: rule["limits"][0].update(measure="cholesterol"), "measure"),
        (lambda rule: rule["limits"][0].pop("unit"), "Field required"),
        (lambda rule: rule["limits"][0].update(unit="mmol/L"), "unit 'mmol/L' is not one for"),
        (
            lambda rule: rule["limits"][0].update(value=1800),
            "1800 mmHg is not a value a person can have",
        ),
    ],
    ids=["lower-above-upper", "unknown-measure", "missing-unit", "wrong-unit", "impossible"],
)
def test_an_invalid_plan_is_refused_with_a_clear_422(
    service: TestClient, team: Team, change: Any, expected: str
) -> None:
    patient = _enrol(service, team, "P-2")
    plan = _plan(service, patient["id"])["plan"]
    change(plan["rules"][0])
    response = _replace(service, patient["id"], plan, 1)
    assert response.status_code == 422
    assert expected in response.text
    assert _plan(service, patient["id"])["version"] == 1


def test_plan_versions_are_kept_compared_and_guarded(service: TestClient, team: Team) -> None:
    patient = _enrol(service, team, "P-3")
    pid = patient["id"]
    plan = _plan(service, pid)["plan"]
    plan["rules"][0]["limits"][0]["value"] = 170
    saved = _replace(service, pid, plan, 1)
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 2
    # An editor who started from version 1 is told, not silently overwritten.
    stale = _replace(service, pid, plan, 1)
    assert stale.status_code == 409
    assert "is at version 2, not 1" in stale.json()["detail"]
    # Who and why are kept; old versions stay readable.
    versions = service.get(f"/api/v1/patients/{pid}/care-plan/versions").json()
    assert [(v["version"], v["current"], v["reason"]) for v in versions] == [
        (2, True, "tuning"),
        (1, False, "enrolment: templates hypertension"),
    ]
    old = service.get(f"/api/v1/patients/{pid}/care-plan/versions/1").json()
    assert old["plan"]["rules"][0]["limits"][0]["value"] == 180
    changes = service.get(f"/api/v1/patients/{pid}/care-plan/diff?from=1&to=2").json()
    assert changes["added"] == changes["removed"] == []
    [changed] = changes["changed"]
    assert changed["rule"] == "bp_crisis"
    assert [f["field"] for f in changed["fields"]] == ["limits"]
    # A change needs an author: somebody signed in.
    anonymous = as_nobody(
        service,
        "PUT",
        f"/api/v1/patients/{pid}/care-plan",
        json={"plan": plan, "reason": "x", "based_on_version": 2},
    )
    assert anonymous.status_code == 401
    assert "sign in first" in anonymous.json()["detail"]
    assert service.get("/api/v1/patients/999999/care-plan").status_code == 404


def test_dry_run_shows_what_a_proposed_plan_would_have_raised(
    service: TestClient, db_url: str, team: Team
) -> None:
    patient = _enrol(service, team, "P-4")
    pid = patient["id"]
    _device(service, team, "P-4-BP", pid)
    # 30 days of readings: 165 mmHg every morning, 185 on two of them.
    with psycopg.connect(db_url, autocommit=True) as conn:
        for day in range(1, 29):
            systolic = 185 if day in (5, 20) else 165
            conn.execute(
                "INSERT INTO reading (device_id, kind, measured_at, patient_id, systolic_mmhg,"
                " diastolic_mmhg, original, source)"
                " SELECT id, 'blood_pressure', %s, %s, %s, 85, '{}', 'native' FROM device"
                " WHERE serial = 'P-4-BP'",
                [NOW - timedelta(days=day), pid, systolic],
            )
    plan = _plan(service, pid)["plan"]
    plan["rules"][0]["limits"][0]["value"] = 160
    response = service.post(f"/api/v1/patients/{pid}/care-plan/dry-run", json={"plan": plan})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["readings"] == 28
    # In force: two separate crisis episodes, and one long stage 2 episode.
    assert result["current"]["by_rule"] == {"bp_crisis": 2, "bp_sustained_stage2": 1}
    # Proposed at 160: every reading is over, one long episode.
    assert result["proposed"]["by_rule"]["bp_crisis"] == 1
    assert "(care plan v2)" in result["proposed"]["raised"][0]["message"]
    # Nothing was saved.
    assert _plan(service, pid)["version"] == 1


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    process = MosquittoProcess("allow_anonymous true\npersistence false\n", tmp_path)
    process.start()
    yield process
    process.stop()


def test_readings_over_mqtt_raise_one_alert_with_two_consumers(
    db_url: str, broker: MosquittoProcess
) -> None:
    fatal: list[str] = []
    address = BrokerAddress("127.0.0.1", broker.port)
    with (
        TestClient(create_app(wiring(db_url, address, fatal))) as first,
        TestClient(create_app(wiring(db_url, address, fatal))) as second,
    ):
        wait_until_ready(first)
        wait_until_ready(second)
        team = _care_team(first, db_url)
        second.headers["Authorization"] = first.headers["Authorization"]
        patient = _enrol(first, team, "P-5")
        _device(first, team, "P-5-BP", patient["id"])
        # The condition repeats: twenty crisis readings, shared by the two consumers.
        readings = [_bp("P-5-BP", NOW - timedelta(minutes=30 - i), 190) for i in range(20)]
        asyncio.run(_publish(broker.port, readings))
        path = f"/api/v1/patients/{patient['id']}/alerts"
        alerts = _wait_for(
            second,
            path,
            lambda body: any(
                a["rule_id"] == "bp_crisis" and a["occurrences"] == 20 for a in body["alerts"]
            ),
        )["alerts"]
    assert fatal == []
    crisis = [a for a in alerts if a["rule_id"] == "bp_crisis"]
    assert len(crisis) == 1
    assert crisis[0]["severity"] == "critical"
    assert crisis[0]["plan_version"] == 1
    assert "crisis limit of 180 mmHg (care plan v1)" in crisis[0]["message"]
    with TestClient(create_app(wiring(db_url, address, fatal))) as client:
        wait_until_ready(client)
        client.headers["Authorization"] = first.headers["Authorization"]
        detail = client.get(f"/api/v1/alerts/{crisis[0]['id']}").json()
        assert client.get("/api/v1/alerts/999999").status_code == 404
        waiting = client.get("/api/v1/alerts").json()
    assert len(detail["readings"]) == 20
    assert {r["systolic_mmhg"] for r in detail["readings"]} == {190}
    assert crisis[0]["id"] in [a["id"] for a in waiting["alerts"]]
    assert [e["action"] for e in detail["events"]] == ["opened"]
