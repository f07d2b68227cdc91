"""rpm-sim against the real service: every reading a scenario sends is stored, once; and
provisioning signs in, and puts the patients in the care team asked for, by id or by
name (made if new, so that it works against a fresh deployment)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress
from simulators import provision as sim_provision
from simulators.provision import Credentials, ProvisionError
from simulators.scenario import Simulation, generate, load
from simulators.transport import Pace, Target, send, wall_schedule
from tests.support import (
    TEST_PASSWORD,
    MosquittoProcess,
    RpmProcess,
    add_user,
    wait_until_ready,
    wiring,
)

BROKER_CONFIG = "allow_anonymous true\nmax_inflight_messages 0\npersistence false\n"
RPM_SIM = str(Path(sys.executable).with_name("rpm-sim"))


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
            [RPM_SIM, "run", "hypertensive-crisis",
             "--mqtt-url", f"mqtt://127.0.0.1:{broker.port}", "--pace", "load",
             "--rate", "2000", "--duration", "0.1", "--seed", "4"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        # A webhook cohort with nowhere to post.
        failed = subprocess.run(
            [RPM_SIM, "run", "nonadherent",
             "--mqtt-url", f"mqtt://127.0.0.1:{broker.port}", "--pace", "load",
             "--rate", "200", "--duration", "0.1"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        broker.stop()
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("sent 200 messages (")
    assert "messages/s" in completed.stdout
    # The progress bar, on stderr, so that the summary can be piped.
    assert "sending" in completed.stderr
    # Errors are counted in the summary, and the exit status says so.
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.startswith("sent 0 messages"), failed.stdout
    assert "errors: WebhookError: this scenario posts to the webhook" in failed.stdout
    assert failed.stdout.rstrip().endswith(" x20"), failed.stdout

    refused = subprocess.run(
        [RPM_SIM, "run", "nope"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "no scenario 'nope'" in refused.stderr


@pytest.fixture
def api_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """`rpm up` on this test's database, in a process of its own (provisioning is HTTP)."""
    broker = MosquittoProcess(BROKER_CONFIG, tmp_path)
    broker.start()
    process = RpmProcess(
        tmp_path, "rpm", RPM_DATABASE_URL=db_url, RPM_MQTT_URL=f"mqtt://127.0.0.1:{broker.port}"
    )
    process.start()
    try:
        process.wait_ready()
        yield f"http://127.0.0.1:{process.http_port}"
    finally:
        process.close()
        broker.stop()


def _rpm_sim_provision(api_url: str, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`rpm-sim provision hypertensive-crisis`, with these RPM_SIM_* variables only."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RPM_SIM_")}
    return subprocess.run(
        [RPM_SIM, "provision", "hypertensive-crisis", "--api-url", api_url, *options],
        capture_output=True, text=True, timeout=60, check=False, env=clean | env,
    )  # fmt: skip


def test_provisioning_signs_in_and_puts_the_patients_in_the_care_team(
    db_url: str, api_url: str
) -> None:
    add_user(db_url, "sim-admin", "admin", TEST_PASSWORD)
    patients = generate(load("hypertensive-crisis"), datetime.now(UTC)).patients
    refs = [p.ref for p in patients]
    with psycopg.connect(db_url, autocommit=True) as conn:
        team = conn.execute("INSERT INTO care_team (name) VALUES ('Sim team') RETURNING id")
        row = team.fetchone()
        assert row is not None
        team_id = row[0]
        # Enrolled before, in no team: provisioning puts it in the team too.
        conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name, time_zone)"
            " VALUES (%s, 'Sim', %s, 'UTC')",
            [refs[0], refs[0]],
        )

    credentials = {"RPM_SIM_USERNAME": "sim-admin", "RPM_SIM_PASSWORD": TEST_PASSWORD}
    done = _rpm_sim_provision(api_url, "--care-team", str(team_id), **credentials)
    assert done.returncode == 0, done.stderr
    assert f"provisioned {len(refs)} patients ({len(refs) - 1} new)" in done.stderr
    # Again: nothing new, and the team given through the environment.
    again = _rpm_sim_provision(api_url, RPM_SIM_CARE_TEAM=str(team_id), **credentials)
    assert again.returncode == 0, again.stderr
    assert f"provisioned {len(refs)} patients (0 new) and their devices (0 new)" in again.stderr

    with psycopg.connect(db_url) as conn:
        teams = dict(conn.execute("SELECT external_ref, care_team_id FROM patient").fetchall())
        assigned = conn.execute(
            "SELECT count(*) FROM device_assignment WHERE unassigned_at IS NULL"
        ).fetchone()
    assert teams == dict.fromkeys(refs, team_id)
    assert assigned == (sum(len(p.devices) for p in patients),)
    with psycopg.connect(db_url) as conn:
        plans = conn.execute(
            "SELECT p.external_ref, v.templates FROM care_plan c"
            " JOIN care_plan_version v USING (patient_id, version)"
            " JOIN patient p ON p.id = c.patient_id"
        ).fetchall()
    # Each enrolled patient's care plan, made from the templates of their conditions; the
    # one enrolled beforehand (without a plan) is reused as it is.
    assert dict(plans) == {ref: ["hypertension"] for ref in refs[1:]}


def test_provisioning_without_a_login_or_with_a_wrong_one_stops_saying_why(
    db_url: str, api_url: str
) -> None:
    add_user(db_url, "sim-admin", "admin", TEST_PASSWORD)
    nothing = _rpm_sim_provision(api_url)
    assert nothing.returncode == 1
    assert "set --username (or RPM_SIM_USERNAME) and RPM_SIM_PASSWORD" in nothing.stderr

    # The password is never an option: it would show in `ps`.
    no_password = _rpm_sim_provision(api_url, "--username", "sim-admin")
    assert no_password.returncode == 1
    assert "set RPM_SIM_PASSWORD" in no_password.stderr

    wrong = _rpm_sim_provision(
        api_url, RPM_SIM_USERNAME="sim-admin", RPM_SIM_PASSWORD="not the password at all"
    )
    assert wrong.returncode == 1
    assert "rpm refused the sign-in of 'sim-admin'" in wrong.stderr
    assert "not the password" not in wrong.stderr + wrong.stdout

    # A nurse may not enrol patients: rpm's reason is passed on.
    add_user(db_url, "sim-nurse", "nurse", TEST_PASSWORD)
    nurse = _rpm_sim_provision(
        api_url, RPM_SIM_USERNAME="sim-nurse", RPM_SIM_PASSWORD=TEST_PASSWORD
    )
    assert nurse.returncode == 1
    assert "enrolling HTN-001: HTTP 403" in nurse.stderr, nurse.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM patient").fetchone() == (0,)


def test_provisioning_makes_a_care_team_named_once_and_finds_it_after(
    db_url: str, api_url: str
) -> None:
    add_user(db_url, "sim-admin", "admin", TEST_PASSWORD)
    patients = generate(load("hypertensive-crisis"), datetime.now(UTC)).patients
    refs, devices = [p.ref for p in patients], sum(len(p.devices) for p in patients)
    credentials = {"RPM_SIM_USERNAME": "sim-admin", "RPM_SIM_PASSWORD": TEST_PASSWORD}

    # A fresh deployment: no team yet, so the name makes one.
    made = _rpm_sim_provision(api_url, "--care-team", "Sim ward", **credentials)
    assert made.returncode == 0, made.stderr
    with psycopg.connect(db_url) as conn:
        teams = conn.execute("SELECT id, name FROM care_team").fetchall()
    assert [name for _, name in teams] == ["Sim ward"]
    team_id = teams[0][0]
    assert f"devices ({devices} new), in care team {team_id} (new)" in made.stderr

    # Again, the name through the environment: found, nothing made.
    again = _rpm_sim_provision(api_url, RPM_SIM_CARE_TEAM="Sim ward", **credentials)
    assert again.returncode == 0, again.stderr
    assert f"(0 new) and their devices (0 new), in care team {team_id}\n" in again.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM care_team").fetchone() == (1,)
        placed = dict(conn.execute("SELECT external_ref, care_team_id FROM patient").fetchall())
    assert placed == dict.fromkeys(refs, team_id)

    # An id that is no team's stops it, before any patient is touched, saying so.
    unknown = _rpm_sim_provision(api_url, "--care-team", str(team_id + 100), **credentials)
    assert unknown.returncode == 1
    assert f"care team {team_id + 100}: HTTP 404" in unknown.stderr, unknown.stderr

    # A nurse may not make a team: rpm's reason is passed on.
    add_user(db_url, "sim-nurse", "nurse", TEST_PASSWORD)
    nurse = _rpm_sim_provision(
        api_url,
        "--care-team",
        "Another ward",
        RPM_SIM_USERNAME="sim-nurse",
        RPM_SIM_PASSWORD=TEST_PASSWORD,
    )
    assert nurse.returncode == 1
    assert "creating care team 'Another ward': HTTP 403" in nurse.stderr, nurse.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM care_team").fetchone() == (1,)


def test_a_care_team_is_found_by_name_on_a_later_page(
    db_url: str, api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_user(db_url, "sim-admin", "admin", TEST_PASSWORD)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name in ("Ward A", "Ward B", "Ward C", "Ward D", "Ward E"):
            conn.execute("INSERT INTO care_team (name) VALUES (%s)", [name])
        row = conn.execute("SELECT id FROM care_team WHERE name = 'Ward E'").fetchone()
    assert row is not None
    # Two teams a page: Ward E is on the third.
    monkeypatch.setattr(sim_provision, "TEAMS_PAGE", 2)
    simulation = generate(load("hypertensive-crisis"), datetime.now(UTC))
    login = Credentials("sim-admin", TEST_PASSWORD)
    done = sim_provision.provision(simulation, api_url, simulation.start, login, care_team="Ward E")
    assert done.care_team == sim_provision.CareTeam(row[0], created=False)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM care_team").fetchone() == (5,)

    with pytest.raises(ProvisionError, match="give a care team's name or id"):
        sim_provision.provision(simulation, api_url, simulation.start, login, care_team="")
