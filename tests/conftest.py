"""Shared fixtures: a real PostgreSQL and a real MQTT broker.

PostgreSQL: `RPM_TEST_DATABASE_URL` names the server (it must be reachable, and its user
must be allowed to create databases); unset, the local 127.0.0.1:5432 is used if it
answers, else an embedded PostgreSQL is started for the session. One template database
is migrated per session and cloned for each test that asks for `db_url`.

MQTT: `RPM_TEST_MQTT_URL`, else 127.0.0.1:1883; a test that needs a broker is skipped,
saying why, when there is none. With `RPM_TEST_NO_SKIPS=1` (CI) a skip is a failure.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg.rows import TupleRow

from rpm.config import BrokerAddress, DatabaseSettings
from rpm.db.embedded import EmbeddedPostgres
from rpm.db.store import prepare_schema

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
NO_SKIPS = os.environ.get("RPM_TEST_NO_SKIPS") == "1"

# What the run's summary says beyond pass and fail, kept where it reaches this process
# when the suite runs on several cores (pytest-xdist loads only this conftest in the
# process that prints the summary): the labelled scenarios' lines travel as their
# reports' user properties (tests/e2e/conftest.py), and the browser tests' screenshots
# are the files written since the run began.
SCENARIO_LINE = "labelled scenario"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
_STARTED = time.time()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = [
        value
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "when", None) == "call"
        for name, value in report.user_properties
        if name == SCENARIO_LINE
    ]
    if lines:
        terminalreporter.section("labelled scenarios: recall and precision")
        for line in lines:
            terminalreporter.write_line(line)
    taken = [p for p in SCREENSHOTS.glob("*.png") if p.stat().st_mtime >= _STARTED]
    if taken:
        terminalreporter.write_line(f"browser screenshots ({len(taken)}): {SCREENSHOTS}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: pytest.TestReport = yield  # type: ignore[misc]
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, and RPM_TEST_NO_SKIPS=1 forbids skips: {reason}"
    return report  # type: ignore[return-value]


def database_url(server_url: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    configured = os.environ.get("RPM_TEST_DATABASE_URL")
    if configured:
        if not _answers(configured):
            pytest.fail(f"RPM_TEST_DATABASE_URL does not answer: {urlsplit(configured).hostname}")
        yield configured
        return
    if _answers(DEFAULT_DATABASE_URL):
        yield DEFAULT_DATABASE_URL
        return
    # No server here: an embedded one, in a directory its (possibly unprivileged) user can reach.
    data_dir = Path(tempfile.mkdtemp(prefix="rpm-test-pg-"))
    data_dir.chmod(0o755)
    server = EmbeddedPostgres(data_dir)
    url = server.start()
    yield database_url(url, "postgres")
    server.stop()


class DatabaseFactory:
    """Creates and drops throwaway databases on the test server."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._created: list[str] = []

    def _admin(self) -> psycopg.Connection[TupleRow]:
        return psycopg.connect(self.server_url, autocommit=True)

    def create(self, template: str | None = None) -> str:
        name = f"rpm_test_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            if template is None:
                conn.execute(f'CREATE DATABASE "{name}"')
            else:
                # TimescaleDB's job scheduler may hold a connection to the template.
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    [template],
                )
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self._created.append(name)
        return database_url(self.server_url, name)

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with self._admin() as conn:
            conn.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE false')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.remove(name)

    def drop_all(self) -> None:
        for name in list(self._created):
            self.drop(database_url(self.server_url, name))


@pytest.fixture(scope="session")
def database_factory(pg_server_url: str) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(pg_server_url)
    yield factory
    factory.drop_all()


@pytest.fixture(scope="session")
def template_database(database_factory: DatabaseFactory) -> str:
    """A database with every migration applied, to clone per test."""
    url = database_factory.create()
    asyncio.run(prepare_schema(url, DatabaseSettings()))
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(database_factory.server_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE true')
    return name


@pytest.fixture
def empty_db_url(database_factory: DatabaseFactory) -> Iterator[str]:
    """A database with nothing in it."""
    url = database_factory.create()
    yield url
    database_factory.drop(url)


@pytest.fixture
def db_url(database_factory: DatabaseFactory, template_database: str) -> Iterator[str]:
    """A migrated database of this test's own."""
    url = database_factory.create(template=template_database)
    yield url
    database_factory.drop(url)


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="session")
def mqtt_broker() -> BrokerAddress:
    address = BrokerAddress.from_url(os.environ.get("RPM_TEST_MQTT_URL", DEFAULT_MQTT_URL))
    try:
        socket.create_connection((address.host, address.port), timeout=3).close()
    except OSError as exc:
        pytest.skip(f"no MQTT broker at {address} ({exc}); set RPM_TEST_MQTT_URL")
    return address
