"""The real `rpm up` command with nothing configured: embedded PostgreSQL and broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

pytestmark = pytest.mark.e2e

RPM = str(Path(sys.executable).with_name("rpm"))


def _unconfigured_environment(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPM_")}
    env.update(overrides)
    return env


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Under /tmp and world-traversable: run as root, the embedded PostgreSQL runs as nobody.
    path = Path(tempfile.mkdtemp(prefix="rpm-e2e-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _readyz(port: int) -> tuple[int, dict[str, bool]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _run_until_ready(workdir: Path, port: int, *options: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [RPM, "up", *options],
        cwd=workdir,
        env=_unconfigured_environment(
            RPM_HTTP_PORT=str(port), RPM_MQTT_EMBEDDED_PORT=str(free_port())
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"rpm up exited with {process.returncode}:\n{process.stdout.read()}")  # type: ignore[union-attr]
        try:
            status, body = _readyz(port)
        except OSError:
            status, body = 0, {}
        if status == 200 and body["ready"]:
            return process
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"rpm up did not become ready:\n{process.communicate()[0]}")


def _stop(process: subprocess.Popen[str], signum: int) -> str:
    process.send_signal(signum)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


def test_rpm_up_starts_embedded_services_and_stops_cleanly(workdir: Path) -> None:
    port = free_port()
    first = _stop(_run_until_ready(workdir, port), signal.SIGTERM)
    assert "initialised an embedded PostgreSQL cluster" in first
    assert "applied migration 0001_foundation" in first
    assert "embedded MQTT broker on mqtt://127.0.0.1:" in first
    assert "development default" in first
    assert f"http://127.0.0.1:{port}/docs" in first
    assert "embedded PostgreSQL stopped" in first

    # The data directory is kept: the second start finds the cluster and the schema.
    second = _stop(_run_until_ready(workdir, port), signal.SIGINT)
    assert "initialised an embedded PostgreSQL cluster" not in second
    assert "database schema ready (up to date" in second
    assert "embedded PostgreSQL stopped" in second
    assert "Traceback" not in first + second


def test_rpm_up_with_a_bad_setting_says_which_and_exits(workdir: Path) -> None:
    result = subprocess.run(
        [RPM, "up"],
        cwd=workdir,
        env=_unconfigured_environment(RPM_HTTP_PORT="eighty"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "RPM_HTTP_PORT='eighty': Input should be a valid integer" in result.stderr


def test_rpm_up_demo_enrols_patients_and_raises_their_alerts_once(workdir: Path) -> None:
    port = free_port()
    process = _run_until_ready(workdir, port, "--demo", "--demo-seconds", "5")
    # The demo's four labelled conditions, each as its alert.
    expected = {"bp_crisis", "weight_gain_week", "glucose_low", "missed_readings"}
    deadline = time.monotonic() + 90
    rules: set[str] = set()
    while time.monotonic() < deadline and not expected <= rules:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=5) as reply:
            rules = {alert["rule_id"] for alert in json.load(reply)["alerts"]}
        time.sleep(0.5)
    output = _stop(process, signal.SIGTERM)
    assert expected <= rules, output
    assert "demo: enrolling the demo patients" in output
    assert f"Open alerts, most severe first: http://127.0.0.1:{port}/api/v1/alerts" in output

    restarted = _run_until_ready(workdir, port, "--demo")
    time.sleep(1)  # the demo looks for its patients as soon as the service is ready
    again = _stop(restarted, signal.SIGTERM)
    assert "demo: its patients are already here" in again
    assert "Traceback" not in output + again
