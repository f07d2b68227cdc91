"""Device credentials from the registry, against the real Mosquitto with its dynamic
security plugin, as deploy/mosquitto/ runs it: a device registered through the API
connects with the secret it was shown once and its reading is stored; a deactivated one
is disconnected within a second and refused; a device can neither publish as another nor
read readings; a rotation or a move to another patient ends the old secret at once; a
broker that is away or refuses leaves the registry as it was.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress
from rpm.devices.broker_identities import BrokerIdentities
from tests.support import (
    TEST_PASSWORD,
    MosquittoProcess,
    add_user,
    browser_csrf,
    browser_sign_in,
    deploy_broker,
    signed_in,
    wait_until_ready,
    wiring,
)

RPM = str(Path(sys.executable).with_name("rpm"))
INGEST_PW = "ingest-test-pw"
ADMIN_PW = "admin-test-pw"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    broker = deploy_broker(tmp_path, INGEST_PW, ADMIN_PW)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def service(db_url: str, broker: MosquittoProcess) -> Iterator[TestClient]:
    """The whole app on that broker: consuming as rpm-ingest, managing identities as
    rpm-admin (RPM_MQTT_DYNSEC_URL)."""
    fatal: list[str] = []
    base = wiring(db_url, BrokerAddress("127.0.0.1", broker.port, "rpm-ingest", INGEST_PW), fatal)
    mqtt = base.settings.mqtt.model_copy(
        update={
            "url": f"mqtt://rpm-ingest:{INGEST_PW}@127.0.0.1:{broker.port}",
            "dynsec_url": f"mqtt://rpm-admin:{ADMIN_PW}@127.0.0.1:{broker.port}",
        }
    )
    settings = base.settings.model_copy(update={"mqtt": mqtt})
    with TestClient(create_app(dataclasses.replace(base, settings=settings))) as client:
        wait_until_ready(client)
        yield client
    assert fatal == []


@pytest.fixture
def admin(service: TestClient, db_url: str) -> TestClient:
    return signed_in(service, db_url, "admin-1")


def _patient(db_url: str, ref: str = "P-1") -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name)"
            " VALUES (%s, 'Test', 'Patient') RETURNING id",
            [ref],
        ).fetchone()
    assert row is not None
    return int(row[0])


def _register(admin: TestClient, serial: str) -> str:
    created = admin.post("/api/v1/devices", json={"serial": serial, "kind": "weight_scale"})
    assert created.status_code == 201, created.text
    secret = created.json()["mqtt_password"]
    assert isinstance(secret, str)
    assert len(secret) >= 32
    return secret


def _device(port: int, serial: str, secret: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=serial,
        password=secret,
        identifier=serial,
        protocol=aiomqtt.ProtocolVersion.V5,
    )


def _weight() -> bytes:
    now = datetime.now(UTC).isoformat()
    return json.dumps(
        {"kind": "body_weight", "measured_at": now, "weight": 80, "unit": "kg"}
    ).encode()


def _readings(db_url: str, serial: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM reading r JOIN device d ON d.id = r.device_id"
            " WHERE d.serial = %s",
            [serial],
        ).fetchone()
    assert row is not None
    return int(row[0])


def _admin(port: int) -> BrokerIdentities:
    return BrokerIdentities(BrokerAddress("127.0.0.1", port, "rpm-admin", ADMIN_PW))


async def _refused(port: int, serial: str, secret: str) -> bool:
    try:
        async with _device(port, serial, secret):
            return False
    except aiomqtt.MqttError:
        return True


async def _seconds_until_disconnected(device: aiomqtt.Client, started: float) -> float:
    while True:
        try:
            await device.publish(f"rpm/v1/devices/{device.identifier}/status", b"{}", qos=1)
        except aiomqtt.MqttError:
            return time.monotonic() - started
        await asyncio.sleep(0.01)


async def test_a_registered_device_connects_and_its_reading_is_stored(
    admin: TestClient, broker: MosquittoProcess, db_url: str
) -> None:
    secret = _register(admin, "SC-1")
    # Shown once: never again, and kept nowhere in rpm.
    shown = admin.get("/api/v1/devices/SC-1")
    assert "mqtt_password" not in shown.json()
    assert secret not in shown.text
    with psycopg.connect(db_url) as conn:
        dumped = conn.execute("SELECT string_agg(a::text, '') FROM audit_event a").fetchone()
        details = conn.execute(
            "SELECT details FROM audit_event WHERE action = 'register'"
        ).fetchone()
    assert dumped is not None
    assert secret not in str(dumped[0])
    assert details == ({"secret_issued": True},)
    first = admin.post("/api/v1/devices/SC-1/assign", json={"patient_id": _patient(db_url)})
    # A first assignment keeps the secret the device was registered with.
    assert first.status_code == 200
    assert first.json()["mqtt_password"] is None

    async with _device(broker.port, "SC-1", secret) as device:
        await device.publish("rpm/v1/devices/SC-1/readings", _weight(), qos=1)
    deadline = time.monotonic() + 10
    while _readings(db_url, "SC-1") == 0:
        assert time.monotonic() < deadline, "the reading was not stored"
        await asyncio.sleep(0.05)


async def test_a_deactivated_device_is_disconnected_within_a_second_and_refused(
    admin: TestClient, broker: MosquittoProcess
) -> None:
    secret = _register(admin, "SC-2")
    async with _device(broker.port, "SC-2", secret) as device:
        started = time.monotonic()
        retired = await asyncio.to_thread(admin.post, "/api/v1/devices/SC-2/deactivate")
        assert retired.status_code == 200, retired.text
        assert await _seconds_until_disconnected(device, started) < 1.0
    assert await _refused(broker.port, "SC-2", secret)


async def test_a_device_cannot_publish_as_another_nor_read_readings(
    admin: TestClient, broker: MosquittoProcess
) -> None:
    secret_a = _register(admin, "SC-A")
    _register(admin, "SC-B")
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username="rpm-ingest",
        password=INGEST_PW,
        identifier="ingest-watcher",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as watcher:
        await watcher.subscribe("rpm/v1/devices/+/readings", qos=1)
        async with _device(broker.port, "SC-A", secret_a) as device:
            for topic_filter in ("rpm/v1/devices/+/readings", "rpm/v1/devices/SC-B/readings", "#"):
                assert (await device.subscribe(topic_filter, qos=1))[0].value >= 0x80
            await device.publish("rpm/v1/devices/SC-B/readings", b"forged", qos=1)
            await device.publish("rpm/v1/devices/SC-A/readings", b"own", qos=1)
        # In order on one connection: once its own arrived, the forged one never will.
        async with asyncio.timeout(5):
            message = await anext(aiter(watcher.messages))
        assert (str(message.topic), message.payload) == ("rpm/v1/devices/SC-A/readings", b"own")


async def test_rotation_and_a_move_to_another_patient_end_the_old_secret_at_once(
    admin: TestClient, broker: MosquittoProcess, db_url: str
) -> None:
    old = _register(admin, "SC-3")
    async with _device(broker.port, "SC-3", old) as device:
        started = time.monotonic()
        rotated = await asyncio.to_thread(admin.post, "/api/v1/devices/SC-3/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["mqtt_password"]
        assert await _seconds_until_disconnected(device, started) < 1.0
    assert new != old
    assert await _refused(broker.port, "SC-3", old)
    assert not await _refused(broker.port, "SC-3", new)

    first, second = _patient(db_url, "P-1"), _patient(db_url, "P-2")
    assert admin.post("/api/v1/devices/SC-3/assign", json={"patient_id": first}).status_code == 200
    moved = admin.post("/api/v1/devices/SC-3/assign", json={"patient_id": second})
    assert moved.status_code == 200, moved.text
    newest = moved.json()["mqtt_password"]
    assert newest not in (None, new)
    assert await _refused(broker.port, "SC-3", new)
    assert not await _refused(broker.port, "SC-3", newest)


def test_a_broker_that_is_away_or_refuses_leaves_the_registry_as_it_was(
    admin: TestClient, broker: MosquittoProcess
) -> None:
    # The service's own broker client is no device's.
    ours = admin.post("/api/v1/devices", json={"serial": "rpm-ingest", "kind": "glucometer"})
    assert ours.status_code == 409, ours.text
    assert admin.get("/api/v1/devices/rpm-ingest").status_code == 404
    # A client of that name that rpm does not know of: the broker refuses to make another.
    asyncio.run(_admin(broker.port).create("SC-X"))
    refused = admin.post("/api/v1/devices", json={"serial": "SC-X", "kind": "glucometer"})
    assert refused.status_code == 502, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "Client already exists" in refused.json()["detail"]
    assert "nothing was changed" in refused.json()["detail"]
    assert admin.get("/api/v1/devices/SC-X").status_code == 404

    _register(admin, "SC-4")
    broker.stop()
    away = admin.post("/api/v1/devices", json={"serial": "SC-5", "kind": "glucometer"})
    assert away.status_code == 503, away.text
    assert "did not confirm" in away.json()["detail"]
    assert away.headers["Retry-After"]
    assert admin.get("/api/v1/devices/SC-5").status_code == 404
    kept = admin.post("/api/v1/devices/SC-4/deactivate")
    assert kept.status_code == 503
    assert admin.get("/api/v1/devices/SC-4").json()["status"] == "active"


def test_the_devices_page_shows_a_new_secret_once(
    service: TestClient, broker: MosquittoProcess, db_url: str
) -> None:
    service.base_url = "https://testserver"  # type: ignore[assignment]
    add_user(db_url, "admin-ui", "admin", TEST_PASSWORD)
    browser_sign_in(service, "admin-ui")
    htmx = {"HX-Request": "true", "X-CSRF-Token": browser_csrf(db_url, "admin-ui")}
    form = {"serial": "SC-UI", "kind": "weight_scale"}
    registered = service.post("/ui/devices", data=form, headers=htmx)
    assert registered.status_code == 201, registered.text
    assert registered.headers["Cache-Control"] == "no-store"
    secret = registered.text.split('<code id="device-secret">')[1].split("</code>")[0]
    # htmx swaps the form alone: the list comes out of band, holding the new device.
    listing = registered.text.split('<div id="device-list" hx-swap-oob="true">')[1]
    assert 'href="/ui/devices/SC-UI"' in listing
    assert "No devices are registered yet" not in registered.text
    assert not asyncio.run(_refused(broker.port, "SC-UI", secret))
    page = service.get("/ui/devices/SC-UI")
    assert secret not in page.text
    assert "New MQTT password" in page.text

    rotated = service.post("/ui/devices/SC-UI/rotate-secret", headers=htmx)
    assert rotated.status_code == 200, rotated.text
    new = rotated.text.split('<code id="device-secret">')[1].split("</code>")[0]
    assert new != secret
    assert asyncio.run(_refused(broker.port, "SC-UI", secret))


def test_the_cli_prints_a_new_secret_once_and_revokes(
    broker: MosquittoProcess, db_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPM_")}
    env |= {
        "RPM_DATABASE_URL": db_url,
        "RPM_MQTT_URL": f"mqtt://rpm-ingest:{INGEST_PW}@127.0.0.1:{broker.port}",
        "RPM_MQTT_DYNSEC_URL": f"mqtt://rpm-admin:{ADMIN_PW}@127.0.0.1:{broker.port}",
    }

    def rpm(*args: str) -> dict[str, object]:
        done = subprocess.run(
            [RPM, "devices", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result: dict[str, object] = json.loads(done.stdout)
        logged.append(done.stderr)
        return result

    logged: list[str] = []

    secret = rpm("register", "SC-CLI", "--kind", "glucometer")["mqtt_password"]
    assert isinstance(secret, str)
    assert not asyncio.run(_refused(broker.port, "SC-CLI", secret))
    rotated = rpm("rotate-secret", "SC-CLI")["mqtt_password"]
    assert isinstance(rotated, str)
    assert asyncio.run(_refused(broker.port, "SC-CLI", secret))
    assert rpm("deactivate", "SC-CLI")["status"] == "inactive"
    assert asyncio.run(_refused(broker.port, "SC-CLI", rotated))
    # The log says what was done, never a secret.
    assert "action=revoke device_serial=SC-CLI" in logged[-1]
    assert secret not in "".join(logged)
    assert rotated not in "".join(logged)


def test_without_javascript_a_secret_is_shown_on_the_page_that_answers(
    service: TestClient, broker: MosquittoProcess, db_url: str
) -> None:
    """A redirect would lose it: the answer to the post is the device's page, with it."""
    service.base_url = "https://testserver"  # type: ignore[assignment]
    add_user(db_url, "admin-ui", "admin", TEST_PASSWORD)
    browser_sign_in(service, "admin-ui")
    csrf = {"csrf_token": browser_csrf(db_url, "admin-ui")}
    registered = service.post(
        "/ui/devices", data=csrf | {"serial": "SC-NOJS", "kind": "weight_scale"}
    )
    assert registered.status_code == 201, registered.text
    assert "<h1>Device SC-NOJS</h1>" in registered.text
    assert registered.headers["Cache-Control"] == "no-store"
    secret = registered.text.split('<code id="device-secret">')[1].split("</code>")[0]

    # Given to a first patient from the patient's page, then to a second: a new secret.
    first, second = _patient(db_url, "P-1"), _patient(db_url, "P-2")
    given = service.post(
        f"/ui/patients/{first}/devices", data=csrf | {"serial": "SC-NOJS"}, follow_redirects=False
    )
    assert given.status_code == 303
    service.post("/ui/devices/SC-NOJS/unassign", data=csrf)
    moved = service.post(f"/ui/patients/{second}/devices", data=csrf | {"serial": "SC-NOJS"})
    assert moved.status_code == 200, moved.text
    assert "with a new MQTT password" in moved.text
    assert moved.headers["Cache-Control"] == "no-store"
    new = moved.text.split('<code id="device-secret">')[1].split("</code>")[0]
    assert new != secret
    assert asyncio.run(_refused(broker.port, "SC-NOJS", secret))
    assert not asyncio.run(_refused(broker.port, "SC-NOJS", new))
