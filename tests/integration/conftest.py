"""The wired service for API tests: real PostgreSQL, and a Mosquitto of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress
from tests.support import MosquittoProcess, wait_until_ready, wiring


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
