"""/api/v1/devices against the real PostgreSQL: each refusal says what was wrong."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.support import signed_in


@pytest.fixture
def admin(service: TestClient, db_url: str) -> TestClient:
    """The service, signed in as an admin: who manages devices."""
    return signed_in(service, db_url, "admin-1")


def _patient(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name)"
            " VALUES ('P-1', 'Test', 'Patient') RETURNING id"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_register_assign_move_and_retire_a_device(admin: TestClient, db_url: str) -> None:
    patient = _patient(db_url)
    created = admin.post(
        "/api/v1/devices", json={"serial": "BP-0001", "kind": "blood_pressure_cuff"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "active"

    assigned = admin.post(
        "/api/v1/devices/BP-0001/assign",
        json={"patient_id": patient, "at": "2026-11-01T08:00:00-05:00"},
    )
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["patient_id"] == patient

    listed = admin.get("/api/v1/devices").json()
    assert [(d["serial"], d["patient_id"]) for d in listed] == [("BP-0001", patient)]

    unassigned = admin.post("/api/v1/devices/BP-0001/unassign", json={"at": "2026-11-20T08:00:00Z"})
    assert unassigned.json()["patient_id"] is None
    history = admin.get("/api/v1/devices/BP-0001/assignments").json()
    assert [(h["assigned_at"], h["unassigned_at"]) for h in history] == [
        ("2026-11-01T13:00:00Z", "2026-11-20T08:00:00Z")
    ]

    retired = admin.post("/api/v1/devices/BP-0001/deactivate")
    assert retired.json()["status"] == "inactive"
    again = admin.post("/api/v1/devices/BP-0001/assign", json={"patient_id": patient})
    assert again.status_code == 409
    assert "deactivated" in again.json()["detail"]

    # A device names its patient: every read and change of it is audited naming them.
    with psycopg.connect(db_url) as conn:
        trail = conn.execute(
            "SELECT action, resource, patient_id FROM audit_event"
            " WHERE resource LIKE 'device%%' ORDER BY id"
        ).fetchall()
    assert trail == [
        ("register", "device", None),
        ("assign", "device", patient),
        ("read", "devices", patient),
        ("unassign", "device", patient),
        ("read", "device_assignments", patient),
        ("deactivate", "device", None),
    ]


def test_refusals_name_the_problem(admin: TestClient, db_url: str) -> None:
    patient = _patient(db_url)
    body = {"serial": "SC-1", "kind": "weight_scale"}
    assert admin.post("/api/v1/devices", json=body).status_code == 201

    duplicate = admin.post("/api/v1/devices", json=body)
    assert duplicate.status_code == 409
    assert duplicate.json()["detail"] == "a device with serial 'SC-1' is already registered"

    bad_serial = admin.post("/api/v1/devices", json={"serial": "a b", "kind": "glucometer"})
    assert bad_serial.status_code == 422
    assert "must be 1 to 64" in bad_serial.json()["detail"]

    bad_kind = admin.post("/api/v1/devices", json={"serial": "X-1", "kind": "toaster"})
    assert bad_kind.status_code == 422
    assert bad_kind.json()["errors"][0]["loc"] == ["body", "kind"]

    naive = admin.post(
        "/api/v1/devices/SC-1/assign", json={"patient_id": patient, "at": "2026-11-01T08:00:00"}
    )
    assert naive.status_code == 422
    assert "timezone" in naive.json()["errors"][0]["msg"]

    nobody = admin.post("/api/v1/devices/SC-1/assign", json={"patient_id": patient + 99})
    assert nobody.status_code == 404
    assert nobody.json()["detail"] == f"no patient with id {patient + 99}"

    missing = admin.get("/api/v1/devices/NOPE/assignments")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no device with serial 'NOPE' is registered"

    not_assigned = admin.post("/api/v1/devices/SC-1/unassign", json={})
    assert not_assigned.status_code == 409
    assert not_assigned.json()["detail"] == "device SC-1 is not assigned to a patient"
