"""rpm behind the TLS terminator that docker-compose.yml puts in front of it: a real Caddy
with deploy/caddy/Caddyfile (only its certificate, ports and upstream set for the test),
in front of a real `rpm up`.

Through it: the session cookie is Secure, the links rpm writes are https, the audit trail
has the client's address (the one Caddy saw, not one the client made up), and the
worklist's live stream is not held back by the proxy.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import psycopg
import pytest

from rpm.certs import make_certificates
from tests.conftest import DatabaseFactory
from tests.support import TEST_PASSWORD, MosquittoProcess, RpmProcess, add_user, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# A client address nobody has (TEST-NET-3), sent as if a proxy had written it.
FORGED = "203.0.113.9"


def _this_machines_address() -> str:
    """An address of this machine's other than loopback, so that the client Caddy sees is
    not the proxy rpm sees (both would be 127.0.0.1); loopback when it has no other."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: UDP, and only routed
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


@dataclass
class Proxied:
    client: httpx2.Client
    base: str
    address: str
    database_url: str


def _wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"caddy exited with {process.returncode}:\n{output}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("caddy did not start listening")
            time.sleep(0.05)
        else:
            return


@pytest.fixture(scope="module")
def proxied(
    database_factory: DatabaseFactory,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proxied]:
    if shutil.which("caddy") is None:
        pytest.skip("Caddy is not installed (Debian package caddy)")
    db_url = database_factory.create(template=template_database)
    workdir = tmp_path_factory.mktemp("https")
    broker = MosquittoProcess("allow_anonymous true\npersistence false\n", workdir)
    broker.start()
    rpm = RpmProcess(
        workdir,
        "rpm-behind-caddy",
        RPM_DATABASE_URL=db_url,
        RPM_MQTT_URL=f"mqtt://127.0.0.1:{broker.port}",
    )
    address = _this_machines_address()
    # The TLS listener's own certificate maker (rpm tls make-certs) serves the proxy too.
    made = make_certificates(workdir / "certs", [address])
    port = free_port()
    # The deployed file, with a certificate of the test's (instead of ACME) and neither
    # Caddy's admin endpoint nor its port-80 redirect, which would clash with other tests.
    site = "{$RPM_PUBLIC_HOST} {\n"
    caddyfile = (ROOT / "deploy/caddy/Caddyfile").read_text()
    assert site in caddyfile
    config = workdir / "Caddyfile"
    config.write_text(
        "{\n\tadmin off\n\tauto_https disable_redirects\n}\n\n"
        + caddyfile.replace(site, f"{site}\ttls {made.server_cert} {made.server_key}\n")
    )
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "XDG_DATA_HOME": str(workdir / "caddy-data"),
        "XDG_CONFIG_HOME": str(workdir / "caddy-config"),
        "RPM_PUBLIC_HOST": f"https://{address}:{port}",
        "RPM_UPSTREAM": f"127.0.0.1:{rpm.http_port}",
    }
    caddy = subprocess.Popen(
        ["caddy", "run", "--config", str(config), "--adapter", "caddyfile"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        rpm.start()
        rpm.wait_ready()
        _wait_listening(port, caddy)
        add_user(db_url, "nurse-https", "nurse", TEST_PASSWORD)
        base = f"https://{address}:{port}"
        trust = ssl.create_default_context(cafile=str(made.ca_cert))
        with httpx2.Client(base_url=base, verify=trust, timeout=10) as client:
            yield Proxied(client, base, address, db_url)
    finally:
        caddy.terminate()
        caddy.communicate(timeout=10)
        rpm.close()
        broker.stop()
        database_factory.drop(db_url)


def _sign_in(proxied: Proxied) -> httpx2.Response:
    return proxied.client.post(
        "/ui/login",
        data={"username": "nurse-https", "password": TEST_PASSWORD},
        headers={"X-Forwarded-For": FORGED},
    )


def test_the_session_cookie_is_secure_and_the_sign_in_has_the_clients_address(
    proxied: Proxied,
) -> None:
    response = _sign_in(proxied)
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("rpm_session=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"secure", "httponly"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert response.headers["strict-transport-security"] == "max-age=31536000"

    with psycopg.connect(proxied.database_url) as conn:
        row = conn.execute(
            "SELECT host(client_ip) FROM audit_event WHERE username = 'nurse-https'"
            " AND path = '/ui/login' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    # The address Caddy saw (rpm's peer is Caddy, on 127.0.0.1), never the forged one.
    assert row == (proxied.address,)


def test_the_links_rpm_writes_are_https(proxied: Proxied) -> None:
    statement = proxied.client.get("/fhir/metadata").json()
    assert statement["implementation"]["url"] == f"{proxied.base}/fhir"
    smart = proxied.client.get("/fhir/.well-known/smart-configuration").json()
    assert smart["token_endpoint"].startswith(f"{proxied.base}/fhir/")


def test_the_worklist_stream_comes_through_at_once(proxied: Proxied) -> None:
    response = _sign_in(proxied)
    token = response.cookies["rpm_session"]
    started = time.monotonic()
    with proxied.client.stream(
        "GET", "/ui/worklist/events", cookies={"rpm_session": token}
    ) as stream:
        assert stream.status_code == 200
        first = next(stream.iter_lines())
    assert first == "retry: 5000"
    # A proxy that buffered the stream would hold this until the first heartbeat or more.
    assert time.monotonic() - started < 5


def test_plain_http_to_the_proxy_gets_nothing_from_rpm(proxied: Proxied) -> None:
    plain = proxied.base.replace("https://", "http://")
    response = httpx2.get(f"{plain}/fhir/metadata", timeout=10)
    assert response.status_code == 400
    assert "resourceType" not in response.text
