"""/api/v1/dead-letters: list, inspect and replay, against the real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress
from tests.support import free_port, receive, signed_in, wiring

SENT_AT = datetime.now(UTC) - timedelta(hours=2)


@pytest.fixture
def admin(service: TestClient, db_url: str) -> TestClient:
    """The service, signed in as an admin: who replays dead letters and assigns devices."""
    return signed_in(service, db_url, "admin-1")


def _reading(minutes: int) -> dict[str, object]:
    return {
        "kind": "blood_pressure",
        "measured_at": (SENT_AT - timedelta(minutes=minutes)).isoformat(),
        "systolic": 128,
        "diastolic": 82,
        "unit": "mmHg",
    }


def _receive(service: TestClient, topic: str, payload: bytes) -> None:
    """A message as the consumer would hand it over, received two hours ago."""
    receive(service, topic, payload, SENT_AT)


def _register_cuff(db_url: str, serial: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO device (serial, kind) VALUES (%s, 'blood_pressure_cuff')", [serial]
        )
        row = conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name)"
            " VALUES ('P-1', 'T', 'P') RETURNING id"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_replay_after_assigning_stores_what_was_dead_lettered(
    admin: TestClient, db_url: str
) -> None:
    patient = _register_cuff(db_url, "BP-7")
    backlog = json.dumps([_reading(30), _reading(20)]).encode()
    _receive(admin, "rpm/v1/devices/BP-7/readings", backlog)
    _receive(admin, "rpm/v1/devices/BP-7/readings", b"\xff\xfe not json")

    pending = admin.get("/api/v1/dead-letters", params={"device_serial": "BP-7"}).json()
    assert [(d["reason"], d["payload_bytes"]) for d in pending] == [
        ("malformed_json", 11),
        ("unassigned_device", len(backlog)),
    ]
    unassigned_id = pending[1]["id"]
    shown = admin.get(f"/api/v1/dead-letters/{unassigned_id}").json()
    assert json.loads(shown["payload"]) == json.loads(backlog)
    assert shown["payload_encoding"] == "utf-8"
    assert "assign it, then replay this message" in shown["detail"]
    binary = admin.get(f"/api/v1/dead-letters/{pending[0]['id']}").json()
    assert binary["payload_encoding"] == "base64"

    # The cuff was the patient's since before the readings were taken.
    admin.post(
        "/api/v1/devices/BP-7/assign",
        json={"patient_id": patient, "at": (SENT_AT - timedelta(days=1)).isoformat()},
    )
    replayed = admin.post(
        "/api/v1/dead-letters/replay",
        json={"device_serial": "BP-7", "reason": "unassigned_device"},
    )
    assert replayed.status_code == 200, replayed.text
    [outcome] = replayed.json()
    assert outcome["dead_letter_id"] == unassigned_id
    assert (outcome["stored"], outcome["new_dead_letter_id"]) == (2, None)

    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT count(*), min(received_at) FROM reading").fetchone()
    # Stored with the time it reached us, not the time of the replay.
    assert stored == (2, SENT_AT)

    # Replayed ones leave the pending list, but stay listed with their outcome.
    still_pending = admin.get("/api/v1/dead-letters").json()
    assert [d["reason"] for d in still_pending] == ["malformed_json"]
    everything = admin.get("/api/v1/dead-letters", params={"include_replayed": True}).json()
    assert everything[1]["replay_result"] == "stored 2 reading(s), 0 already stored"

    twice = admin.post(f"/api/v1/dead-letters/{unassigned_id}/replay")
    assert twice.status_code == 409
    assert "already replayed" in twice.json()["detail"]


def test_a_replay_that_fails_again_leaves_a_new_dead_letter(admin: TestClient, db_url: str) -> None:
    _receive(admin, "rpm/v1/devices/GHOST/readings", json.dumps(_reading(5)).encode())
    [letter] = admin.get("/api/v1/dead-letters").json()

    outcome = admin.post(f"/api/v1/dead-letters/{letter['id']}/replay").json()
    assert outcome["reason"] == "unknown_device"
    assert outcome["new_dead_letter_id"] > letter["id"]
    assert outcome["result"].endswith(f"see dead letter {outcome['new_dead_letter_id']}")
    [pending] = admin.get("/api/v1/dead-letters").json()
    assert pending["id"] == outcome["new_dead_letter_id"]


def test_requests_that_cannot_be_served_say_why(admin: TestClient) -> None:
    missing = admin.post("/api/v1/dead-letters/999999/replay")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no dead letter with id 999999"
    assert admin.get("/api/v1/dead-letters/999999").status_code == 404

    everything = admin.post("/api/v1/dead-letters/replay", json={})
    assert everything.status_code == 422
    assert "give ids, or a reason or device_serial" in everything.json()["errors"][0]["msg"]
    bad_reason = admin.get("/api/v1/dead-letters", params={"reason": "bogus"})
    assert bad_reason.status_code == 422


def test_the_api_says_when_the_database_is_away() -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/rpm"
    fatal: list[str] = []
    app = create_app(wiring(nowhere, BrokerAddress("127.0.0.1", free_port()), fatal))
    with TestClient(app) as client:
        reply = client.get("/api/v1/devices")
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "5"
    assert reply.json()["detail"] == "the database is not available at the moment; retry shortly"
