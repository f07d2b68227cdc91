"""The real `rpm up` command with nothing configured: embedded PostgreSQL and broker."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    assert f"web UI http://127.0.0.1:{port}/ui/" in first
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


def _demo_logins(workdir: Path) -> dict[str, str]:
    """The demo's username-password pairs, from the file `rpm up --demo` writes."""
    text = (workdir / ".rpm" / "demo-logins.txt").read_text()
    rows = (line.split() for line in text.splitlines() if line and not line.startswith("#"))
    return {row[0]: row[1] for row in rows}


def _signed_in(port: int, username: str, password: str) -> dict[str, str]:
    """Sign in over the API; the header that carries the token."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return {"Authorization": f"Bearer {json.load(reply)['access_token']}"}


def _worklist(port: int, headers: dict[str, str]) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/alerts", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as reply:
        alerts: list[dict[str, Any]] = json.load(reply)["alerts"]
        return alerts


def _api(port: int, path: str, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.load(reply)


def _worklist_rules(port: int, headers: dict[str, str]) -> set[str]:
    return {alert["rule_id"] for alert in _worklist(port, headers)}


def _worklist_ids(port: int, headers: dict[str, str]) -> set[str]:
    return {str(alert["id"]) for alert in _worklist(port, headers)}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_no_redirects = urllib.request.build_opener(_NoRedirects)


def _ui(port: int, path: str, cookie: str = "", form: dict[str, str] | None = None) -> Any:
    """A web UI page as a browser asks for it, redirects not followed (the cookie by hand:
    urllib's jar keeps a Secure cookie from https only, browsers from http on loopback too)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if form is None else urllib.parse.urlencode(form).encode(),
        headers={"Cookie": cookie, "Sec-Fetch-Site": "same-origin"} if cookie else {},
    )
    try:
        return _no_redirects.open(request, timeout=10)
    except urllib.error.HTTPError as reply:
        return reply


def _worklist_page_shows(port: int, username: str, password: str) -> str:
    """Where the demo's log points: /ui/worklist asks for the sign-in, which leads back to
    the worklist; its page, as the user sees it."""
    with _ui(port, "/ui/worklist") as asked:
        assert (asked.status, asked.headers["Location"]) == (303, "/ui/login?next=%2Fui%2Fworklist")
    form = {"username": username, "password": password, "next": "/ui/worklist"}
    with _ui(port, "/ui/login", form=form) as signed:
        assert signed.status == 303, signed.read()
        cookie = signed.headers["Set-Cookie"].split(";")[0]
    with _ui(port, signed.headers["Location"], cookie) as home:
        assert (home.status, home.headers["Location"]) == (303, "/ui/worklist")
    with _ui(port, "/ui/worklist", cookie) as page:
        assert page.status == 200
        return str(page.read().decode())


def test_rpm_up_demo_enrols_patients_and_raises_their_alerts_once(workdir: Path) -> None:
    port = free_port()
    process = _run_until_ready(workdir, port, "--demo", "--demo-seconds", "5")
    try:
        # The demo's four labelled conditions, each as its alert, in the demo nurse's
        # worklist: the demo patients are in her care team.
        expected = {"bp_crisis", "weight_gain_week", "glucose_low", "missed_readings"}
        deadline = time.monotonic() + 90
        logins_file = workdir / ".rpm" / "demo-logins.txt"
        while not logins_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        logins = _demo_logins(workdir)
        assert set(logins) == {"demo-admin", "demo-nurse", "demo-care-manager"}
        assert logins_file.stat().st_mode & 0o777 == 0o600
        nurse = _signed_in(port, "demo-nurse", logins["demo-nurse"])
        rules: set[str] = set()
        while time.monotonic() < deadline and not expected <= rules:
            rules = _worklist_rules(port, nurse)
            time.sleep(0.5)
        # The same alerts in the web UI's worklist, where the log sends the newcomer.
        page = _worklist_page_shows(port, "demo-nurse", logins["demo-nurse"])
        assert _worklist_ids(port, nurse) <= set(re.findall(r'<tr id="alert-(\d+)"', page))
        # The care manager is in the team too; nobody signed in sees nothing.
        manager = _signed_in(port, "demo-care-manager", logins["demo-care-manager"])
        assert expected <= _worklist_rules(port, manager)
        with pytest.raises(urllib.error.HTTPError) as refused:
            _worklist_rules(port, {})
        assert refused.value.code == 401
        refused.value.close()
        # Enrolled before their two weeks of readings: the program's figures have them.
        patient_id = _worklist(port, nurse)[0]["patient_id"]
        adherence = _api(port, f"/api/v1/patients/{patient_id}/adherence", nurse)
        assert adherence["overall"]["days_with_readings"] >= 7, adherence
    finally:
        output = _stop(process, signal.SIGTERM)
    assert expected <= rules, output
    # The log says where to look (the web UI's worklist) and where the logins are.
    worklist = f"http://127.0.0.1:{port}/ui/worklist"
    assert f"demo: open {worklist} and sign in as demo-nurse" in output
    assert f"with a password from {logins_file}" in output
    assert f"their alerts appear in {worklist} as they are raised" in output
    assert f"Open alerts, most severe first, in the worklist: {worklist}" in output
    assert f"passwords are in {logins_file}" in output
    assert not any(password in output for password in logins.values())

    first_file = logins_file.read_text()
    restarted = _run_until_ready(workdir, port, "--demo")
    try:
        time.sleep(2)  # the demo looks for its logins and patients once the service is ready
        # The same logins: still valid, their file unchanged.
        assert logins_file.read_text() == first_file
        nurse = _signed_in(port, "demo-nurse", logins["demo-nurse"])
        assert expected <= _worklist_rules(port, nurse)
    finally:
        again = _stop(restarted, signal.SIGTERM)
    assert f"demo: its patients are already here; their alerts are in {worklist}" in again
    assert "new passwords" not in again
    assert not any(password in again for password in logins.values())
    assert "Traceback" not in output + again
