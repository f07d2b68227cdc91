"""The wired service (FastAPI lifespan) against the real PostgreSQL and Mosquitto."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress
from tests.support import MosquittoProcess, free_port, wiring


def _wait_for(
    client: TestClient, expected: dict[str, bool], timeout: float = 20
) -> dict[str, bool]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, bool] = client.get("/readyz").json()
        if all(body[key] == value for key, value in expected.items()):
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"/readyz stayed {body}, expected {expected}")
        time.sleep(0.1)


@pytest.fixture
def fatal() -> list[str]:
    return []


def test_ready_when_database_and_broker_are_connected(
    db_url: str, mqtt_broker: BrokerAddress, fatal: list[str]
) -> None:
    with TestClient(create_app(wiring(db_url, mqtt_broker, fatal))) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        _wait_for(client, {"database": True, "broker": True})
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {"ready": True, "database": True, "broker": True}
    assert fatal == []


def test_a_missing_broker_is_retried_logged_and_not_ready(
    db_url: str, caplog: pytest.LogCaptureFixture, fatal: list[str]
) -> None:
    nowhere = BrokerAddress("127.0.0.1", free_port())
    with (
        caplog.at_level(logging.INFO),
        TestClient(create_app(wiring(db_url, nowhere, fatal))) as client,
    ):
        _wait_for(client, {"database": True})
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"ready": False, "database": True, "broker": False}
        assert client.get("/healthz").status_code == 200
    assert any("broker not available" in r.getMessage() for r in caplog.records)
    assert fatal == []


def test_a_missing_database_is_retried_logged_and_not_ready(
    mqtt_broker: BrokerAddress, caplog: pytest.LogCaptureFixture, fatal: list[str]
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/rpm"
    with (
        caplog.at_level(logging.INFO),
        TestClient(create_app(wiring(nowhere, mqtt_broker, fatal))) as client,
    ):
        deadline = time.monotonic() + 10
        while not any("database not available" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the database outage was not logged"
            time.sleep(0.1)
        # Nothing is consumed from the broker until the store can take it.
        assert client.get("/readyz").json() == {"ready": False, "database": False, "broker": False}
    assert fatal == []


def test_a_database_ahead_of_the_code_stops_the_service(
    db_url: str, mqtt_broker: BrokerAddress, fatal: list[str]
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO schema_migration (version, name, checksum) VALUES (999, 'future', '')"
        )
    with TestClient(create_app(wiring(db_url, mqtt_broker, fatal))) as client:
        deadline = time.monotonic() + 10
        while not fatal:
            assert time.monotonic() < deadline, "the service did not give up"
            time.sleep(0.05)
        assert client.get("/readyz").status_code == 503
    assert "has migration 0999" in fatal[0]


def test_readiness_follows_a_broker_that_goes_away_and_comes_back(
    db_url: str, tmp_path: Path, fatal: list[str]
) -> None:
    broker = MosquittoProcess("allow_anonymous true", tmp_path)
    broker.start()
    address = BrokerAddress("127.0.0.1", broker.port)
    with TestClient(create_app(wiring(db_url, address, fatal))) as client:
        _wait_for(client, {"database": True, "broker": True})
        broker.stop()
        _wait_for(client, {"broker": False})
        broker.start()
        _wait_for(client, {"broker": True}, timeout=40)
    broker.stop()
    assert fatal == []
