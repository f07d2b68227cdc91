"""The wired service for API tests: real PostgreSQL, and a Mosquitto of its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress
from tests.support import (
    TEST_PASSWORD,
    MosquittoProcess,
    Ward,
    add_user,
    api_call_through,
    sign_in_as,
    wait_until_ready,
    wiring,
)


@pytest.fixture
def service(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The whole app, started and ready; fails the test on any fatal error."""
    broker = MosquittoProcess("allow_anonymous true\npersistence false\n", tmp_path)
    broker.start()
    fatal: list[str] = []
    try:
        with TestClient(
            create_app(wiring(db_url, BrokerAddress("127.0.0.1", broker.port), fatal))
        ) as client:
            wait_until_ready(client)
            yield client
    finally:
        broker.stop()
    assert fatal == []


@pytest.fixture
def ui_client(service: TestClient) -> TestClient:
    """The service as a browser reaches it: over https, as the Secure session cookie needs
    (httpx, like a browser away from loopback, keeps a Secure cookie from plain http)."""
    service.base_url = "https://testserver"  # type: ignore[assignment]
    return service


@dataclass(frozen=True)
class Clinic:
    """Two care teams; nurse-1 (Nurse One) works in the first, beside Nurse Two."""

    first: Ward
    second: Ward
    nurse: int
    teammate: int
    outsider: int


@pytest.fixture
def clinic(ui_client: TestClient, db_url: str) -> Clinic:
    admin = api_call_through(ui_client, sign_in_as(ui_client, db_url, "admin-1"))
    first, second = Ward.open(admin, "Team A"), Ward.open(admin, "Team B")
    nurse = first.staff("nurse-1", "Nurse One")
    teammate = first.staff("nurse-2", "Nurse Two")
    outsider = second.staff("nurse-9", "Nurse Nine")
    add_user(db_url, "nurse-1", "nurse", TEST_PASSWORD, nurse)
    return Clinic(first, second, nurse, teammate, outsider)
