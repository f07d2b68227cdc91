"""MQTT over TLS against a real Mosquitto with deploy/mosquitto/tls.conf as its listener.

The certificates are made here by `rpm tls make-certs`'s own code; only the listener's
port and the certificate paths (mounted at /mosquitto/certs/ in the compose stack) are
rewritten. Clients sign in with a username and password over TLS, as devices do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import psycopg
import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.certs import MadeCertificates, make_certificates
from rpm.config import BrokerAddress, BrokerTls, MqttSettings, SettingsError
from rpm.health import Health
from rpm.ingest.consumer import ConsumerOptions, MqttConsumer
from simulators.devices import Message
from simulators.transport import Target, send
from tests.support import MosquittoProcess, free_port, wait_until_ready, wiring

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"rpm-ingest": "ingest-test-pw", "BP-1": "device-1-pw"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> MadeCertificates:
    # Named for "localhost" only: 127.0.0.1 is then a host the certificate does not name.
    return make_certificates(tmp_path_factory.mktemp("certs"), ["localhost"])


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> MadeCertificates:
    return make_certificates(tmp_path_factory.mktemp("other-ca"), ["localhost"])


class TlsBroker:
    def __init__(self, process: MosquittoProcess, tls_port: int) -> None:
        self.process = process
        self.plain_port = process.port
        self.tls_port = tls_port


@pytest.fixture
def broker(tmp_path: Path, certs: MadeCertificates) -> Iterator[TlsBroker]:
    started = _start_broker(tmp_path, certs.directory)
    yield started
    started.process.stop()


def _start_broker(tmp_path: Path, certs: Path) -> TlsBroker:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("Mosquitto is not installed (Debian package mosquitto)")
    passwd = tmp_path / "passwd"
    passwd.touch(mode=0o600)
    for user, password in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    tls_port = free_port()
    listener = (ROOT / "deploy/mosquitto/tls.conf").read_text()
    assert "listener 8883\n" in listener
    listener = listener.replace("listener 8883\n", f"listener {tls_port} 127.0.0.1\n").replace(
        "/mosquitto/certs/", f"{certs}/"
    )
    # Included as the compose stack includes it: a directory of its own.
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "tls.conf").write_text(listener)
    config = (
        f"allow_anonymous false\npassword_file {passwd}\npersistence false\n"
        f"include_dir {tmp_path / 'conf.d'}\n"
    )
    # MosquittoProcess adds a plain listener of its own first: the internal network's.
    process = MosquittoProcess(config, tmp_path)
    process.start()
    return TlsBroker(process, tls_port)


def _device_message(measured_at: datetime) -> Message:
    payload = {
        "kind": "blood_pressure",
        "measured_at": measured_at.isoformat(),
        "systolic": 128,
        "diastolic": 82,
        "unit": "mmHg",
    }
    return Message(
        measured_at, "rpm/v1/devices/BP-1/readings", json.dumps(payload).encode(), "BP-1", 1
    )


def _readings(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM reading").fetchone()
    assert row is not None
    return int(row[0])


def test_a_device_publishing_over_tls_has_its_reading_stored(
    db_url: str, broker: TlsBroker, certs: MadeCertificates
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name) VALUES ('P-1', 'T', 'P')"
        )
        conn.execute("INSERT INTO device (serial, kind) VALUES ('BP-1', 'blood_pressure_cuff')")
        conn.execute(
            "INSERT INTO device_assignment (device_id, patient_id, assigned_at)"
            " SELECT d.id, p.id, now() - interval '30 days' FROM device d, patient p"
        )
    # As `rpm up` reads RPM_MQTT_URL and RPM_MQTT_CA_FILE.
    mqtt = MqttSettings(
        url=f"mqtts://rpm-ingest:{PASSWORDS['rpm-ingest']}@localhost:{broker.tls_port}",
        ca_file=certs.ca_cert,
    )
    assert mqtt.tls_problems() == []
    fatal: list[str] = []
    with TestClient(create_app(wiring(db_url, mqtt.broker(), fatal))) as client:
        wait_until_ready(client)
        # The device is the simulator, given the CA as a device vendor is.
        device = Target(
            f"mqtts://BP-1:{PASSWORDS['BP-1']}@localhost:{broker.tls_port}",
            mqtt_ca=certs.ca_cert,
        )
        summary = asyncio.run(
            send([_device_message(datetime.now(UTC) - timedelta(minutes=5))], [0.0], device)
        )
        assert summary.errors == {}
        deadline = time.monotonic() + 20
        while _readings(db_url) < 1:
            assert time.monotonic() < deadline, "the reading sent over TLS was not stored"
            time.sleep(0.1)
    assert fatal == []
    assert _readings(db_url) == 1


def _options() -> ConsumerOptions:
    return ConsumerOptions(
        client_id=f"tls-test-{free_port()}",
        keepalive_s=30,
        shared_group=None,
        protocol=aiomqtt.ProtocolVersion.V5,
    )


class _NothingArrives:
    """Stands in for `IngestService` where no connection is ever made."""

    def decode(self, envelope: object) -> None:
        raise AssertionError("connected to a broker that should have been refused")


async def _refusal(address: BrokerAddress, caplog: pytest.LogCaptureFixture) -> str:
    """What the consumer logs when it cannot connect: the broker's readiness detail."""
    consumer = MqttConsumer(address, _options(), _NothingArrives(), Health())  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING, logger="rpm.health")
    started = time.monotonic()
    running = asyncio.create_task(consumer.run())

    def broker_lines() -> list[str]:
        lines = [r.getMessage() for r in caplog.records if r.name == "rpm.health"]
        return [line for line in lines if line.startswith("broker not available")]

    try:
        async with asyncio.timeout(5):
            # The log line is what is under test, and it has no event to wait on.
            while not (said := broker_lines()):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        consumer.stop()
        await running
    # At once, not after a connection timeout.
    assert time.monotonic() - started < 3
    [message] = said
    return message.removeprefix("broker not available: ")


def _tls_address(port: int, ca: Path, host: str = "localhost") -> BrokerAddress:
    return BrokerAddress(host, port, "rpm-ingest", PASSWORDS["rpm-ingest"], BrokerTls(ca))


async def test_a_broker_certificate_from_another_ca_is_refused(
    broker: TlsBroker, other_ca: MadeCertificates, caplog: pytest.LogCaptureFixture
) -> None:
    said = await _refusal(_tls_address(broker.tls_port, other_ca.ca_cert), caplog)
    assert said == (
        f"the broker's certificate did not verify for host localhost"
        f" (mqtts://localhost:{broker.tls_port}): self-signed certificate in certificate chain."
        f" It must be signed by a CA in RPM_MQTT_CA_FILE ({other_ca.ca_cert}) and name"
        " localhost (docs/tls.md)"
    )


async def test_a_host_the_certificate_does_not_name_is_refused(
    broker: TlsBroker, certs: MadeCertificates, caplog: pytest.LogCaptureFixture
) -> None:
    said = await _refusal(_tls_address(broker.tls_port, certs.ca_cert, "127.0.0.1"), caplog)
    assert said.startswith(
        "the broker's certificate did not verify for host 127.0.0.1"
        f" (mqtts://127.0.0.1:{broker.tls_port}): IP address mismatch, certificate is not"
        " valid for '127.0.0.1'."
    )


async def test_the_system_trust_store_does_not_trust_a_private_ca(
    broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    said = await _refusal(BrokerAddress.from_url(f"mqtts://localhost:{broker.tls_port}"), caplog)
    assert said.startswith("the broker's certificate did not verify for host localhost")
    assert "the system's trust store (RPM_MQTT_CA_FILE is unset)" in said


async def test_plain_mqtt_to_the_tls_port_says_to_use_mqtts(
    broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    address = BrokerAddress("localhost", broker.tls_port, "rpm-ingest", PASSWORDS["rpm-ingest"])
    said = await _refusal(address, caplog)
    assert said == (
        f"mqtt://localhost:{broker.tls_port}: the broker closed the connection before"
        f" accepting it; if port {broker.tls_port} is a TLS listener (8883, say), use an"
        " mqtts:// URL"
    )


async def test_tls_to_the_plain_port_asks_whether_it_is_the_tls_listener(
    broker: TlsBroker, certs: MadeCertificates, caplog: pytest.LogCaptureFixture
) -> None:
    said = await _refusal(_tls_address(broker.plain_port, certs.ca_cert), caplog)
    assert said.startswith(f"mqtts://localhost:{broker.plain_port}: no TLS connection (")
    assert said.endswith(f"is port {broker.plain_port} the broker's TLS listener?")


async def test_a_ca_file_gone_by_a_reconnection_stops_the_consumer_naming_it(
    tmp_path: Path,
) -> None:
    gone = tmp_path / "ca.crt"  # read at every connection: here, never there
    address = BrokerAddress("localhost", free_port(), tls=BrokerTls(gone))
    consumer = MqttConsumer(address, _options(), _NothingArrives(), Health())  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=f"^RPM_MQTT_CA_FILE: {gone} holds no PEM CA"):
        await consumer.run()


async def test_the_plain_listener_still_serves_the_internal_network(broker: TlsBroker) -> None:
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.plain_port,
        username="rpm-ingest",
        password=PASSWORDS["rpm-ingest"],
    ) as client:
        await client.publish("rpm/v1/consumer-check", b"", qos=1)


def _served_certificate(port: int, ca: Path) -> x509.Certificate:
    """The certificate a new connection is given, once verified as a device verifies it."""
    context = ssl.create_default_context(cafile=ca)
    with (
        socket.create_connection(("localhost", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        served = tls.getpeercert(binary_form=True)
    assert served is not None
    return x509.load_der_x509_certificate(served)


def test_a_renewed_server_certificate_is_served_after_a_sighup(
    tmp_path: Path, certs: MadeCertificates
) -> None:
    own = tmp_path / "certs"
    shutil.copytree(certs.directory, own)
    broker = _start_broker(tmp_path, own)
    try:
        before = _served_certificate(broker.tls_port, own / "ca.crt")
        renewed = make_certificates(own, ["localhost"])
        assert renewed.ca_kept
        broker.process.reload()
        deadline = time.monotonic() + 10
        while (served := _served_certificate(broker.tls_port, own / "ca.crt")) == before:
            assert time.monotonic() < deadline, "the renewed certificate was not served"
            time.sleep(0.1)
        assert served == x509.load_pem_x509_certificate(renewed.server_cert.read_bytes())
    finally:
        broker.process.stop()
