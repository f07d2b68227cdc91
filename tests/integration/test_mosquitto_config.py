"""deploy/mosquitto/ run by the real Mosquitto: the configuration loads and the ACL holds.

The broker is our own (own port, data directory and password file); only the paths that
docker-compose.yml mounts are rewritten to this test's directory.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from tests.support import MosquittoProcess

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"rpm-ingest": "ingest-test-pw", "BP-0001": "device-1-pw", "BP-0002": "device-2-pw"}


@pytest.fixture
def broker_port(tmp_path: Path) -> Iterator[int]:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("Mosquitto is not installed (Debian package mosquitto)")
    passwd = tmp_path / "passwd"
    passwd.touch(mode=0o600)
    for user, password in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    (tmp_path / "data").mkdir()
    config = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    config = (
        config.replace("listener 1883\n", "")
        .replace("/mosquitto/data/passwd", str(passwd))
        .replace("/mosquitto/data/", f"{tmp_path / 'data'}/")
        .replace("/mosquitto/config/acl", str(ROOT / "deploy/mosquitto/acl"))
    )
    broker = MosquittoProcess(config, tmp_path)
    broker.start()
    yield broker.port
    broker.stop()


def _client(port: int, user: str | None) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=user,
        password=PASSWORDS.get(user or ""),
        identifier=f"{user or 'anonymous'}-{port}",
        protocol=aiomqtt.ProtocolVersion.V5,
    )


@pytest.fixture
async def ingest(broker_port: int) -> AsyncIterator[aiomqtt.Client]:
    async with _client(broker_port, "rpm-ingest") as client:
        await client.subscribe("$share/rpm/rpm/v1/devices/+/readings", qos=1)
        yield client


async def _next_topic(client: aiomqtt.Client, within_s: float) -> str | None:
    try:
        async with asyncio.timeout(within_s):
            message = await anext(aiter(client.messages))
    except TimeoutError:
        return None
    return str(message.topic)


async def test_anonymous_clients_are_refused(broker_port: int) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with _client(broker_port, None):
            pass


async def test_a_device_publishes_only_to_its_own_topic(
    broker_port: int, ingest: aiomqtt.Client
) -> None:
    async with _client(broker_port, "BP-0001") as device:
        await device.publish("rpm/v1/devices/BP-0002/readings", b"{}", qos=1)
        await device.publish("rpm/v1/devices/BP-0001/readings", b"{}", qos=1)
    assert await _next_topic(ingest, within_s=5) == "rpm/v1/devices/BP-0001/readings"
    assert await _next_topic(ingest, within_s=0.5) is None
