"""Readings pushed into an EHR: through the real ingest path, the real outbox and pusher,
to a real FHIR server process (Medplum's FHIR router, tests/fhir_server), over HTTP.

At least once and never doubled (conditional create on the Observation's identifier), a
server away or refusing rpm's credentials retried with backoff, the dead end visible to
admins and retried by them, a paused feed that keeps queueing."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress, EhrSettings
from tests.support import (
    TEST_PASSWORD,
    FhirServerProcess,
    MosquittoProcess,
    Ward,
    add_user,
    api_call_through,
    bearer,
    free_port,
    receive,
    sign_in_as,
    wait_until_ready,
    wiring,
)

TOKEN = "a-test-token-not-a-secret"
MRN_SYSTEM = "urn:oid:2.16.840.1.113883.19.5"


@dataclass(frozen=True)
class Feed:
    client: TestClient
    db_url: str
    admin: dict[str, str]
    patient: int


@pytest.fixture
def feed(db_url: str, tmp_path: Path) -> Iterator[Feed]:
    """The whole app (retrying quickly, giving up after 3 tries), a patient MRN-E1 with a
    cuff and a scale."""
    broker = MosquittoProcess("allow_anonymous true\npersistence false\n", tmp_path)
    broker.start()
    fatal: list[str] = []
    wired = wiring(db_url, BrokerAddress("127.0.0.1", broker.port), fatal)
    settings = wired.settings.model_copy(
        update={"ehr": EhrSettings(push_poll_s=0.2, push_max_attempts=3)}
    )
    try:
        with TestClient(create_app(dataclasses.replace(wired, settings=settings))) as client:
            wait_until_ready(client)
            admin = sign_in_as(client, db_url, "admin-1")
            ward = Ward.open(api_call_through(client, admin), "Team E")
            patient = ward.patient("MRN-E1")
            ward.device("BP-E1", "blood_pressure_cuff", patient)
            ward.device("SC-E1", "weight_scale", patient)
            yield Feed(client, db_url, admin, patient)
    finally:
        broker.stop()
    assert fatal == []


def _add_endpoint(feed: Feed, base_url: str, token: str | None = TOKEN, **more: Any) -> int:
    body = {"name": "clinic-ehr", "base_url": base_url, "patient_identifier_system": MRN_SYSTEM}
    if token:
        body["bearer_token"] = token
    response = feed.client.post("/api/v1/ehr/endpoints", json=body | more, headers=feed.admin)
    assert response.status_code == 201, response.text
    assert "bearer_token" not in response.json()
    return int(response.json()["id"])


def _measure(feed: Feed, minutes_ago: int, systolic: int = 128) -> None:
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    payload = {"kind": "blood_pressure", "measured_at": at.isoformat(), "systolic": systolic,
               "diastolic": 82, "pulse": 71, "unit": "mmHg"}  # fmt: skip
    receive(feed.client, "rpm/v1/devices/BP-E1/readings", json.dumps(payload).encode(), at)


def _weigh(feed: Feed, minutes_ago: int) -> None:
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    payload = {"kind": "body_weight", "measured_at": at.isoformat(), "weight": 181.4, "unit": "lb"}
    receive(feed.client, "rpm/v1/devices/SC-E1/readings", json.dumps(payload).encode(), at)


def _pushes(feed: Feed, **params: Any) -> list[dict[str, Any]]:
    response = feed.client.get("/api/v1/ehr/pushes", params=params, headers=feed.admin)
    assert response.status_code == 200, response.text
    return list(response.json())


def _until(condition: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _due_now(feed: Feed) -> None:
    """Pending rows due now (instead of waiting their backoff out), the pusher woken."""
    with psycopg.connect(feed.db_url) as conn:
        conn.execute("UPDATE ehr_push SET next_attempt_at = now() WHERE status = 'pending'")
    feed.client.app.state.ehr_pusher.wake()  # type: ignore[attr-defined]


def _observations(server: FhirServerProcess) -> list[dict[str, Any]]:
    bundle = server.get("Observation", _count="1000")
    return [entry["resource"] for entry in bundle.get("entry", [])]


@pytest.fixture
def ehr() -> Iterator[FhirServerProcess]:
    server = FhirServerProcess(TOKEN)
    server.start()
    yield server
    server.stop()


def test_readings_reach_the_ehr_once_as_its_observations(
    feed: Feed, ehr: FhirServerProcess
) -> None:
    _add_endpoint(feed, ehr.base_url)
    _measure(feed, 30)
    _weigh(feed, 20)
    _until(lambda: [p["status"] for p in _pushes(feed)] == ["sent", "sent"])

    stored = _observations(ehr)
    # The cuff's panel and its pulse, and the weight in kg.
    assert sorted(o["code"]["coding"][0]["code"] for o in stored) == [
        "29463-7",
        "85354-9",
        "8867-4",
    ]
    subject = f"Patient?identifier={MRN_SYSTEM}|MRN-E1"
    assert {o["subject"]["reference"] for o in stored} == {subject}
    assert {o["device"]["identifier"]["value"] for o in stored} == {"BP-E1", "SC-E1"}
    weight = next(o for o in stored if o["code"]["coding"][0]["code"] == "29463-7")
    assert weight["valueQuantity"]["value"] == 82.3
    # The same Observation ids as rpm's own FHIR API gives.
    ours = feed.client.get(
        "/fhir/Observation", params={"patient": feed.patient}, headers=feed.admin
    ).json()
    assert {o["identifier"][0]["value"] for o in stored} == {
        entry["resource"]["identifier"][0]["value"] for entry in ours["entry"]
    }

    # A second delivery (a pusher that died after sending, before recording) doubles
    # nothing: the server finds each Observation by its identifier.
    with psycopg.connect(feed.db_url) as conn:
        conn.execute("UPDATE ehr_push SET status = 'pending', sent_at = NULL")
    _due_now(feed)
    _until(lambda: [p["status"] for p in _pushes(feed)] == ["sent", "sent"])
    assert len(_observations(ehr)) == 3

    (endpoint,) = feed.client.get("/api/v1/ehr/endpoints", headers=feed.admin).json()
    assert (endpoint["sent"], endpoint["pending"], endpoint["dead"]) == (2, 0, 0)
    assert endpoint["has_bearer_token"] is True


def test_an_ehr_that_is_away_gets_the_readings_when_it_is_back(feed: Feed) -> None:
    server = FhirServerProcess(TOKEN, port=free_port())
    _add_endpoint(feed, server.base_url)
    _measure(feed, 10)
    _until(lambda: _pushes(feed)[0]["attempts"] >= 1 and _pushes(feed)[0]["last_error"])
    (push,) = _pushes(feed)
    assert push["status"] == "pending"
    assert push["last_error"].startswith("no answer from the EHR")
    # Backing off: due again seconds from now, not at once.
    assert datetime.fromisoformat(push["next_attempt_at"]) > datetime.now(UTC)

    server.start()
    try:
        _due_now(feed)
        _until(lambda: _pushes(feed)[0]["status"] == "sent")
        assert len(_observations(server)) == 2
    finally:
        server.stop()


def test_refused_credentials_end_in_the_dead_end_until_an_admin_fixes_them(
    feed: Feed, ehr: FhirServerProcess
) -> None:
    endpoint_id = _add_endpoint(feed, ehr.base_url, token="a-wrong-token")
    _measure(feed, 10)
    for _ in range(3):  # push_max_attempts
        _until(lambda: _pushes(feed)[0]["last_error"] is not None)
        _due_now(feed)
    _until(lambda: _pushes(feed)[0]["status"] == "dead")
    (dead,) = _pushes(feed, status="dead", endpoint_id=endpoint_id)
    assert dead["attempts"] == 3
    assert dead["last_error"] == (
        "gave up after 3 attempts: HTTP 401: login: a valid bearer token is required"
    )
    assert _observations(ehr) == []

    add_user(feed.db_url, "nurse-e", "nurse", TEST_PASSWORD)
    nurse = bearer(feed.client, "nurse-e", TEST_PASSWORD)
    refused = feed.client.get("/api/v1/ehr/pushes", headers=nurse)
    assert refused.status_code == 403
    assert "manage the feeds of readings into EHRs" in refused.json()["detail"]

    renewed = feed.client.patch(
        f"/api/v1/ehr/endpoints/{endpoint_id}", json={"bearer_token": TOKEN}, headers=feed.admin
    )
    assert renewed.status_code == 200, renewed.text
    retried = feed.client.post(
        "/api/v1/ehr/pushes/retry", json={"endpoint_id": endpoint_id}, headers=feed.admin
    )
    assert retried.json() == {"ids": [dead["id"]]}
    feed.client.app.state.ehr_pusher.wake()  # type: ignore[attr-defined]
    _until(lambda: _pushes(feed)[0]["status"] == "sent")
    assert len(_observations(ehr)) == 2

    with psycopg.connect(feed.db_url) as conn:
        audited = conn.execute(
            "SELECT action, resource, details FROM audit_event"
            " WHERE resource LIKE 'ehr%%' ORDER BY id"
        ).fetchall()
    assert [(a, r) for a, r, _ in audited] == [
        ("create", "ehr_endpoint"),
        ("update", "ehr_endpoint"),
        ("retry", "ehr_pushes"),
    ]
    assert TOKEN not in json.dumps([d for _, _, d in audited])


def test_a_paused_feed_keeps_queueing_and_a_new_feed_can_take_the_past(
    feed: Feed, ehr: FhirServerProcess
) -> None:
    _measure(feed, 50)  # before any feed: not queued
    endpoint_id = _add_endpoint(feed, ehr.base_url)
    paused = feed.client.patch(
        f"/api/v1/ehr/endpoints/{endpoint_id}", json={"active": False}, headers=feed.admin
    )
    assert paused.json()["active"] is False
    # Paused: nothing is queued for it any more, nothing is sent.
    _measure(feed, 40)
    time.sleep(0.5)
    assert _pushes(feed) == []

    backfilled = feed.client.post(
        "/api/v1/ehr/endpoints",
        json={"name": "second-ehr", "base_url": ehr.base_url + "/", "bearer_token": TOKEN,
              "patient_identifier_system": MRN_SYSTEM,
              "backfill_since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
        headers=feed.admin,
    )  # fmt: skip
    assert backfilled.status_code == 201, backfilled.text
    assert backfilled.json()["queued"] == 2
    assert backfilled.json()["base_url"] == ehr.base_url
    _until(lambda: [p["status"] for p in _pushes(feed)] == ["sent", "sent"])
    assert len(_observations(ehr)) == 4


@pytest.mark.parametrize(
    ("base_url", "says"),
    [
        ("http://ehr.example.org/fhir/R4", "must be https"),
        ("ftp://ehr.example.org/fhir", "must be an https URL"),
        ("https://ehr.example.org/fhir?x=1", "without a query"),
    ],
)
def test_an_ehr_endpoint_must_be_https_and_a_base_url(feed: Feed, base_url: str, says: str) -> None:
    body = {"name": "x", "base_url": base_url, "patient_identifier_system": MRN_SYSTEM}
    response = feed.client.post("/api/v1/ehr/endpoints", json=body, headers=feed.admin)
    assert response.status_code == 422
    assert says in response.json()["detail"]
