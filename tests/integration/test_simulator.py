"""rpm-sim against the real service: every reading a scenario sends is stored, once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress
from simulators.scenario import Simulation, generate, load
from simulators.transport import Pace, Target, send, wall_schedule
from tests.support import MosquittoProcess, wait_until_ready, wiring

BROKER_CONFIG = "allow_anonymous true\nmax_inflight_messages 0\npersistence false\n"


def _provision(db_url: str, simulation: Simulation) -> None:
    """Each simulated patient with their devices, straight into the store: this test is
    about storage (tests/e2e/test_scenarios.py provisions through the API)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for patient in simulation.patients:
            row = conn.execute(
                "INSERT INTO patient (external_ref, given_name, family_name, time_zone)"
                " VALUES (%s, 'Sim', %s, %s) RETURNING id",
                [patient.ref, patient.ref, patient.time_zone],
            ).fetchone()
            assert row is not None
            for device in patient.devices:
                conn.execute(
                    "WITH d AS (INSERT INTO device (serial, kind) VALUES (%s, %s) RETURNING id)"
                    " INSERT INTO device_assignment (device_id, patient_id, assigned_at)"
                    " SELECT d.id, %s, %s FROM d",
                    [
                        device.serial,
                        device.kind.value,
                        row[0],
                        simulation.start - timedelta(days=1),
                    ],
                )


def _count_settles(db_url: str, expected: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(db_url) as conn:
            found = conn.execute("SELECT count(*) FROM reading").fetchone()
        assert found is not None
        if found[0] >= expected or time.monotonic() > deadline:
            return int(found[0])
        time.sleep(0.2)


def test_a_demo_run_is_stored_exactly_once(db_url: str, tmp_path: Path) -> None:
    scenario = load("demo")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=scenario.days)
    simulation = generate(scenario, start)
    _provision(db_url, simulation)
    broker = MosquittoProcess(BROKER_CONFIG, tmp_path)
    broker.start()
    fatal: list[str] = []
    try:
        address = BrokerAddress("127.0.0.1", broker.port)
        with TestClient(create_app(wiring(db_url, address, fatal))) as client:
            wait_until_ready(client)
            messages = simulation.messages
            offsets = wall_schedule(messages, Pace.ACCELERATED, 2.0, rate=0)
            summary = asyncio.run(
                send(messages, offsets, Target(f"mqtt://127.0.0.1:{broker.port}"))
            )
            assert summary.errors == {}
            stored = _count_settles(db_url, simulation.readings)
    finally:
        broker.stop()
    assert fatal == []
    assert stored == simulation.readings
    with psycopg.connect(db_url) as conn:
        letters = conn.execute(
            "SELECT reason, count(*) FROM rejected_message GROUP BY 1"
        ).fetchall()
        batteries = conn.execute(
            "SELECT count(*) FROM device WHERE battery_percent IS NOT NULL"
        ).fetchone()
    assert letters == []
    assert batteries == (sum(len(p.devices) for p in simulation.patients),)
    assert summary.sent["duplicate"] == sum(1 for m in messages if m.note == "duplicate")


def test_rpm_sim_reports_what_it_sent(tmp_path: Path) -> None:
    broker = MosquittoProcess(BROKER_CONFIG, tmp_path)
    broker.start()
    try:
        completed = subprocess.run(
            [str(Path(sys.executable).with_name("rpm-sim")), "run", "hypertensive-crisis",
             "--mqtt-url", f"mqtt://127.0.0.1:{broker.port}", "--pace", "load",
             "--rate", "2000", "--duration", "0.1", "--seed", "4"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        broker.stop()
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("sent 200 messages (")
    assert "messages/s" in completed.stdout

    refused = subprocess.run(
        [str(Path(sys.executable).with_name("rpm-sim")), "run", "nope"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "no scenario 'nope'" in refused.stderr
