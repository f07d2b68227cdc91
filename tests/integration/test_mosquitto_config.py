"""deploy/mosquitto/ run by the real Mosquitto with its dynamic security plugin: the
entrypoint makes the service's accounts on the first start, the configuration loads, and
topic access holds for the service and for a device rpm gave an identity.

The broker is our own (own port and data directory); only the paths that
docker-compose.yml mounts are rewritten to this test's directory (`deploy_broker`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from rpm.certs import make_certificates
from rpm.config import BrokerAddress, BrokerTls
from rpm.devices.broker_identities import BrokerIdentities
from tests.support import MosquittoProcess, deploy_broker

INGEST_PW = "ingest-test-pw"
ADMIN_PW = "admin-test-pw"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    broker = deploy_broker(tmp_path, INGEST_PW, ADMIN_PW)
    broker.start()
    yield broker
    broker.stop()


def _client(
    port: int, user: str | None, password: str | None = None, tls: BrokerTls | None = None
) -> aiomqtt.Client:
    """A client as devices and rpm connect: over TLS by the name the certificate has."""
    return aiomqtt.Client(
        "localhost" if tls else "127.0.0.1",
        port,
        username=user,
        password=password,
        identifier=user or f"anonymous-{port}",
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=tls.context() if tls else None,
    )


def _admin(port: int) -> BrokerIdentities:
    return BrokerIdentities(BrokerAddress("127.0.0.1", port, "rpm-admin", ADMIN_PW))


@pytest.fixture
async def ingest(broker: MosquittoProcess) -> AsyncIterator[aiomqtt.Client]:
    async with _client(broker.port, "rpm-ingest", INGEST_PW) as client:
        granted = await client.subscribe("$share/rpm/rpm/v1/devices/+/readings", qos=1)
        assert [code.value for code in granted] == [1]
        yield client


async def _next_topic(client: aiomqtt.Client, within_s: float) -> str | None:
    try:
        async with asyncio.timeout(within_s):
            message = await anext(aiter(client.messages))
    except TimeoutError:
        return None
    return str(message.topic)


async def test_anonymous_clients_are_refused(broker: MosquittoProcess) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with _client(broker.port, None):
            pass


async def test_the_ingest_service_reads_every_device_and_the_broker_version(
    broker: MosquittoProcess,
) -> None:
    async with _client(broker.port, "rpm-ingest", INGEST_PW) as client:
        filters = [
            "rpm/v1/devices/+/readings",
            "rpm/v1/devices/+/status",
            "$share/rpm/rpm/v1/devices/+/status",
            "$SYS/broker/version",
            "$SYS/broker/uptime",
        ]
        for topic_filter in filters:
            granted = await client.subscribe(topic_filter, qos=1)
            assert granted[0].value < 0x80, topic_filter
        # Not what it needs: refused.
        assert (await client.subscribe("#", qos=1))[0].value >= 0x80
        assert (await client.subscribe("$CONTROL/dynamic-security/#"))[0].value >= 0x80


async def test_a_device_publishes_only_to_its_own_topics(
    broker: MosquittoProcess, ingest: aiomqtt.Client
) -> None:
    secret = await _admin(broker.port).create("BP-0001")
    async with _client(broker.port, "BP-0001", secret) as device:
        assert (await device.subscribe("rpm/v1/devices/+/readings"))[0].value >= 0x80
        await device.publish("rpm/v1/devices/BP-0002/readings", b"{}", qos=1)
        await device.publish("rpm/v1/devices/BP-0001/readings", b"{}", qos=1)
    assert await _next_topic(ingest, within_s=5) == "rpm/v1/devices/BP-0001/readings"
    assert await _next_topic(ingest, within_s=0.5) is None


async def test_a_device_must_use_its_serial_as_client_id(broker: MosquittoProcess) -> None:
    """Else it could take over another client's session (the ingest service's)."""
    secret = await _admin(broker.port).create("BP-0003")
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, username="BP-0003", password=secret, identifier="rpm-1"
        ):
            pass


async def test_accounts_outlive_a_restart_and_are_made_once(broker: MosquittoProcess) -> None:
    secret = await _admin(broker.port).create("BP-0004")
    broker.stop()
    broker.start()  # the file exists: the entrypoint leaves it be
    async with _client(broker.port, "BP-0004", secret):
        pass
    async with _client(broker.port, "rpm-ingest", INGEST_PW):
        pass


async def test_the_compose_stack_broker_serves_devices_and_rpm_over_tls(tmp_path: Path) -> None:
    """The whole of what compose runs: the plugin's accounts and tls.conf's listener, with
    certificates from `rpm tls make-certs`; rpm verifies the broker with ca.crt alone."""
    certs = make_certificates(tmp_path / "certs", ["localhost"])
    broker = deploy_broker(tmp_path, INGEST_PW, ADMIN_PW, certs=certs.directory)
    broker.start()
    try:
        assert broker.tls_port is not None
        tls = BrokerTls(ca_file=certs.ca_cert)
        # rpm's admin makes the device's identity over TLS, as compose's RPM_MQTT_DYNSEC_URL.
        admin = BrokerAddress("localhost", broker.tls_port, "rpm-admin", ADMIN_PW, tls=tls)
        secret = await BrokerIdentities(admin).create("BP-0005")
        async with _client(broker.tls_port, "rpm-ingest", INGEST_PW, tls) as ingest:
            await ingest.subscribe("$share/rpm/rpm/v1/devices/+/readings", qos=1)
            async with _client(broker.tls_port, "BP-0005", secret, tls) as device:
                await device.publish("rpm/v1/devices/BP-0005/readings", b"{}", qos=1)
            assert await _next_topic(ingest, within_s=5) == "rpm/v1/devices/BP-0005/readings"
    finally:
        broker.stop()
