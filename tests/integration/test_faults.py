"""Fault tests: kill and restart the consumer, the broker and the database mid-stream.

Each test runs its own Mosquitto (persistence on, its own port and data directory) and
`rpm up` in child processes (so that they can be killed), against a throwaway PostgreSQL
cluster of this module's own (so that it can be stopped and crashed). A fleet of devices
publishes a few thousand readings at QoS 1 while the fault happens. Afterwards every
reading is stored, none twice (counted by its natural key), none is dead-lettered, and
the rule engine's entry point received each at most once: exactly once where neither the
database nor the consumer died between a commit and its hand-off.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

import aiomqtt
import paho.mqtt.client as paho
import psycopg
import pytest

from rpm.config import DatabaseSettings
from rpm.db.store import prepare_schema
from tests.support import MosquittoProcess, PostgresCluster, RpmProcess

pytestmark = pytest.mark.faults

MESSAGES = 3000
ARRAY_EVERY = 7  # every 7th message is an offline backlog: an array of 3 readings
DEVICES = 4
CHUNK = 100  # messages the fleet has in flight at once
HANDED_OFF = "rpm_rules_readings_queued_total"
BROKER_CONFIG = """allow_anonymous true
persistence true
persistence_location {data}/
max_inflight_messages 1000
max_queued_messages 1000000
"""

Messages = list[tuple[str, bytes]]


def fleet_messages() -> tuple[Messages, int]:
    """Native JSON readings from `DEVICES` cuffs, each with its own `measured_at`."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    messages: Messages = []
    readings = 0
    for i in range(MESSAGES):
        items = [
            {
                "kind": "blood_pressure",
                "measured_at": (start + timedelta(seconds=readings + k)).isoformat(),
                "systolic": 110 + (readings + k) % 40,
                "diastolic": 75,
                "pulse": 70,
                "unit": "mmHg",
            }
            for k in range(3 if i % ARRAY_EVERY == 0 else 1)
        ]
        readings += len(items)
        payload = items if len(items) > 1 else items[0]
        messages.append((f"rpm/v1/devices/BP-{i % DEVICES}/readings", json.dumps(payload).encode()))
    return messages, readings


class Fleet:
    """Publishes the messages at QoS 1 from a thread, like devices: what the broker did not
    acknowledge is sent again (across a broker restart). Stops at `pause_at` until
    `resume`, so that a fault can be injected with the stream half-way."""

    def __init__(self, port: int, messages: Messages, pause_at: int | None = None) -> None:
        self._port = port
        self._messages = messages
        self._pause_at = pause_at
        self._resume = threading.Event()
        self.paused = threading.Event()  # set on reaching `pause_at`
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Fleet:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._resume.set()
        self._thread.join(timeout=60)

    def resume(self) -> None:
        self._resume.set()

    def wait_done(self, timeout: float = 60) -> None:
        self._resume.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the fleet did not finish publishing"
        assert self.error is None, f"the fleet failed: {self.error!r}"

    def _run(self) -> None:
        try:
            asyncio.run(self._publish())
        except BaseException as exc:  # reported by wait_done, in the test's thread
            self.error = exc

    async def _publish(self) -> None:
        sent = 0
        deadline = time.monotonic() + 60
        while sent < len(self._messages):
            try:
                # A publish unacknowledged for 2 s (the broker went away) fails and is resent.
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self._port,
                    identifier=f"fleet-{uuid.uuid4().hex[:8]}",
                    timeout=2,
                    max_inflight_messages=CHUNK,
                ) as client:
                    client.pending_calls_threshold = CHUNK  # aiomqtt warns above it
                    while sent < len(self._messages):
                        if sent == self._pause_at:
                            self.paused.set()
                            await asyncio.to_thread(self._resume.wait)
                        chunk = self._messages[sent : sent + CHUNK]
                        await asyncio.gather(*(client.publish(t, p, qos=1) for t, p in chunk))
                        sent += len(chunk)
            except aiomqtt.MqttError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)  # the broker is restarting: connect again


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def stored(db: str) -> int:
    """Readings stored so far; -1 while the database does not answer."""
    try:
        with psycopg.connect(db, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM reading").fetchone()
    except psycopg.OperationalError:
        return -1
    assert row is not None
    return int(row[0])


def assert_each_stored_once(db: str, readings: int) -> None:
    wait_until(lambda: stored(db) >= readings, f"{readings} readings stored", timeout=60)
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, kind, measured_at)),"
            " (SELECT count(*) FROM rejected_message) FROM reading"
        ).fetchone()
    assert row == (readings, readings, 0)


def settled_after_kill(db: str) -> int:
    """Readings stored once the killed consumer's connections are gone.

    A transaction whose COMMIT the consumer sent just before it died may still be
    finishing; only when its backend has exited is the count final.
    """
    with psycopg.connect(db, autocommit=True) as conn:

        def alone() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()
            return row is not None and row[0] == 0

        wait_until(alone, "the killed consumer's connections to close")
        row = conn.execute("SELECT count(*) FROM reading").fetchone()
    assert row is not None
    return int(row[0])


def session_present(port: int, client_id: str) -> bool:
    """Whether the broker still holds a session for `client_id` (CONNACK's flag)."""
    flags: list[bool] = []
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
    )
    client.on_connect = lambda _c, _u, connect_flags, _rc, _p: flags.append(
        connect_flags.session_present
    )
    client.connect("127.0.0.1", port, clean_start=False)
    deadline = time.monotonic() + 10
    while not flags and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    client.disconnect()
    assert flags, "no CONNACK"
    return flags[0]


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    server = PostgresCluster()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def db(cluster: PostgresCluster) -> Iterator[str]:
    """A migrated database in the throwaway cluster, with the fleet registered and assigned."""
    name = f"faults_{uuid.uuid4().hex[:10]}"
    admin = cluster.database_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = cluster.database_url(name)
    asyncio.run(prepare_schema(url, DatabaseSettings()))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name) VALUES ('P-1', 'T', 'P')"
        )
        for i in range(DEVICES):
            conn.execute(
                "INSERT INTO device (serial, kind) VALUES (%s, 'blood_pressure_cuff')", [f"BP-{i}"]
            )
        conn.execute(
            "INSERT INTO device_assignment (device_id, patient_id, assigned_at)"
            " SELECT d.id, p.id, now() - interval '30 days' FROM device d, patient p"
        )
    yield url
    cluster.start()  # if the test left it stopped
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    data = tmp_path / "mosquitto"
    data.mkdir()
    # A fixed port across restarts, and queued messages kept on disk across them.
    process = MosquittoProcess(BROKER_CONFIG.format(data=data), tmp_path)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def consumer(
    tmp_path: Path, db: str, broker: MosquittoProcess
) -> Iterator[Callable[..., RpmProcess]]:
    """Starts `rpm up` against this test's database and broker; waits until it is ready."""
    started: list[RpmProcess] = []

    def start(name: str, **settings: str) -> RpmProcess:
        defaults = {
            "RPM_DATABASE_URL": db,
            "RPM_DATABASE_CONNECT_TIMEOUT_S": "2",
            "RPM_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}",
            "RPM_INGEST_BATCH_SIZE": "200",
        }
        process = RpmProcess(tmp_path, name, **(defaults | settings))
        started.append(process)
        process.start()
        process.wait_ready()
        return process

    yield start
    for process in started:
        process.close()
        print(f"----- {process.name}\n{process.log()}")  # shown when the test failed


@pytest.mark.parametrize("members", [1, 2], ids=["alone", "shared"])
def test_a_consumer_killed_mid_stream_loses_nothing_and_stores_nothing_twice(
    db: str, broker: MosquittoProcess, consumer: Callable[..., RpmProcess], members: int
) -> None:
    messages, readings = fleet_messages()
    group = {"RPM_MQTT_SHARED_GROUP": "rpm"} if members == 2 else {}
    victim = consumer("rpm-a", **group)
    others = [consumer("rpm-b", **group)] if members == 2 else []
    with Fleet(broker.port, messages, pause_at=len(messages) // 2 // CHUNK * CHUNK) as fleet:
        wait_until(lambda: stored(db) >= readings // 4, "a quarter stored")
        victim.kill()
        at_kill = settled_after_kill(db) if not others else 0
        # The rest is published while the victim is dead: the broker queues its share in
        # its session (all of it when alone), and delivers it when the victim is back.
        fleet.wait_done()
        victim.start()
        victim.wait_ready()
    assert_each_stored_once(db, readings)
    if not others:
        # Nothing the dead consumer had committed was handed off again.
        wait_until(
            lambda: victim.metric(HANDED_OFF) == readings - at_kill,
            f"{readings - at_kill} readings handed off after the restart",
        )
    else:
        # Shared: which member stored what before the kill is unknown; none handed twice.
        assert sum(p.metric(HANDED_OFF) for p in [victim, *others]) <= readings


def test_a_broker_restart_mid_stream_loses_nothing_and_stores_nothing_twice(
    db: str, broker: MosquittoProcess, consumer: Callable[..., RpmProcess]
) -> None:
    messages, readings = fleet_messages()
    rpm = consumer("rpm-a")
    with Fleet(broker.port, messages, pause_at=len(messages) // 2 // CHUNK * CHUNK) as fleet:
        wait_until(lambda: stored(db) >= readings // 4, "a quarter stored")
        # Frozen mid-stream, the consumer holds a batch it has not acknowledged, and the
        # broker queues the rest of the first half for its session.
        rpm.send_signal(signal.SIGSTOP)
        wait_until(fleet.paused.is_set, "the first half published")
        broker.stop()  # SIGTERM: Mosquitto saves sessions and queued messages to disk
        broker.start()
        rpm.send_signal(signal.SIGCONT)
        # No waiting for the consumer to subscribe again: its plain subscription came back
        # with its session, so the broker queues the rest for it meanwhile.
        fleet.wait_done()
    assert_each_stored_once(db, readings)
    wait_until(lambda: rpm.metric(HANDED_OFF) == readings, f"{readings} readings handed off")
    assert "broker not available" in rpm.log()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_database_restart_mid_stream_loses_nothing_and_stores_nothing_twice(
    db: str,
    cluster: PostgresCluster,
    broker: MosquittoProcess,
    consumer: Callable[..., RpmProcess],
    mode: str,
) -> None:
    messages, readings = fleet_messages()
    rpm = consumer("rpm-a")
    with Fleet(broker.port, messages, pause_at=len(messages) // 2 // CHUNK * CHUNK) as fleet:
        wait_until(lambda: stored(db) >= readings // 4, "a quarter stored")
        cluster.shut_down(mode)
        try:
            fleet.resume()
            # The outage overlaps the stream: a batch arrived and could not be stored.
            wait_until(lambda: "could not store a batch" in rpm.log(), "a failed commit")
        finally:
            cluster.start()
        fleet.wait_done()
    assert_each_stored_once(db, readings)
    if mode == "fast":
        # Backends finish the command in hand before they exit: every commit is answered.
        wait_until(lambda: rpm.metric(HANDED_OFF) == readings, f"{readings} handed off")
    else:
        # A crash can take a commit's answer with it: that batch is stored, and its retry
        # finds it stored, so its hand-off is missed, never doubled.
        assert rpm.metric(HANDED_OFF) <= readings


def test_two_consumers_share_the_stream(
    db: str, broker: MosquittoProcess, consumer: Callable[..., RpmProcess]
) -> None:
    messages, readings = fleet_messages()
    members = [consumer(name, RPM_MQTT_SHARED_GROUP="rpm") for name in ("rpm-a", "rpm-b")]
    with Fleet(broker.port, messages) as fleet:
        fleet.wait_done()
    assert_each_stored_once(db, readings)
    wait_until(
        lambda: sum(p.metric(HANDED_OFF) for p in members) == readings,
        f"{readings} readings handed off between the two",
    )
    assert all(p.metric(HANDED_OFF) > 0 for p in members)


def test_a_consumer_scaled_down_drains_its_share_and_ends_its_session(
    db: str, broker: MosquittoProcess, consumer: Callable[..., RpmProcess]
) -> None:
    messages, readings = fleet_messages()
    staying = consumer("rpm-a", RPM_MQTT_SHARED_GROUP="rpm")
    # Small batches, so a small Receive Maximum: most of what is routed to it while it is
    # frozen waits at the broker rather than in its socket.
    leaving = consumer(
        "rpm-b",
        RPM_MQTT_SHARED_GROUP="rpm",
        RPM_MQTT_LEAVE_ON_STOP="true",
        RPM_INGEST_BATCH_SIZE="20",
    )
    with Fleet(broker.port, messages) as fleet:
        wait_until(lambda: leaving.metric(HANDED_OFF) > 0, "the leaving member to take some")
        # Frozen, it stays subscribed: the broker keeps routing it a share of the stream,
        # beyond its Receive Maximum, that only it can acknowledge.
        leaving.send_signal(signal.SIGSTOP)
        fleet.wait_done()
        # SIGTERM is delivered as it wakes: it stops before it can work off its share.
        leaving.send_signal(signal.SIGTERM)
        leaving.send_signal(signal.SIGCONT)
        assert leaving.wait() == 0
    log = leaving.log()
    drained = re.search(r"left the shared group rpm: stored and acknowledged (\d+) more", log)
    assert drained is not None, log
    assert int(drained[1]) > 0
    # Everything arrives with the leaving member gone for good.
    assert_each_stored_once(db, readings)
    assert not session_present(broker.port, "rpm-b"), "the broker kept the leaver's session"
    assert 0 < staying.metric(HANDED_OFF) < readings


class Devices:
    """Devices publishing through a broker restart, as a fleet of cuffs does: each its own
    paho client at QoS 1, reconnecting and resending on its own. Only a reading whose
    PUBACK came back counts as sent: that is the broker's promise to the device."""

    def __init__(self, port: int, per_device: int, interval_s: float) -> None:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        self._interval_s = interval_s
        self._clients = []
        self._readings = []
        # Per device: the reading each packet id carried, and the packet ids acknowledged
        # (appended by paho's thread: list.append and dict stores are atomic).
        self._by_mid: list[dict[int, tuple[str, datetime]]] = []
        self._acked: list[list[int]] = []
        for device in range(DEVICES):
            client = paho.Client(
                paho.CallbackAPIVersion.VERSION2, client_id=f"BP-{device}", clean_session=False
            )
            acked: list[int] = []
            client.on_publish = lambda _c, _u, mid, _rc, _p, acked=acked: acked.append(mid)
            client.reconnect_delay_set(min_delay=0.05, max_delay=0.05)  # type: ignore[arg-type]
            client.connect_async("127.0.0.1", port)
            self._clients.append(client)
            self._acked.append(acked)
            self._by_mid.append({})
            self._readings.append(
                [start + timedelta(seconds=device * per_device + i) for i in range(per_device)]
            )
        self._threads = [
            threading.Thread(target=self._publish, args=(d,), daemon=True) for d in range(DEVICES)
        ]

    def start(self) -> None:
        for client in self._clients:
            client.loop_start()
        for thread in self._threads:
            thread.start()

    def _publish(self, device: int) -> None:
        client = self._clients[device]
        for at in self._readings[device]:
            payload = json.dumps(
                {
                    "kind": "blood_pressure",
                    "measured_at": at.isoformat(),
                    "systolic": 120,
                    "diastolic": 75,
                    "pulse": 70,
                    "unit": "mmHg",
                }
            )
            # While disconnected paho keeps the message and sends it on reconnecting.
            info = client.publish(f"rpm/v1/devices/BP-{device}/readings", payload, qos=1)
            self._by_mid[device][info.mid] = (f"BP-{device}", at)
            time.sleep(self._interval_s)

    def finish(self, timeout: float = 30) -> set[tuple[str, datetime]]:
        """Wait for the devices to be done; the readings the broker acknowledged."""
        for thread in self._threads:
            thread.join(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            len(set(acked)) < len(by_mid)
            for acked, by_mid in zip(self._acked, self._by_mid, strict=True)
        ):
            time.sleep(0.05)
        for client in self._clients:
            client.disconnect()
            client.loop_stop()
        return {
            by_mid[mid]
            for acked, by_mid in zip(self._acked, self._by_mid, strict=True)
            for mid in acked
        }


def stored_readings(db: str) -> list[tuple[str, datetime]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT d.serial, r.measured_at FROM reading r JOIN device d ON d.id = r.device_id"
        ).fetchall()
    return [(serial, at) for serial, at in rows]


def test_a_broker_restart_loses_no_reading_the_broker_acknowledged_to_a_device(
    db: str, broker: MosquittoProcess, consumer: Callable[..., RpmProcess]
) -> None:
    """Devices keep publishing while the broker restarts: what it acknowledged in the
    moment it was back, before the consumer had reconnected, is stored too (the default
    plain subscription is restored with the consumer's session)."""
    rpm = consumer("rpm-a")
    devices = Devices(broker.port, per_device=750, interval_s=0.004)
    devices.start()
    wait_until(lambda: stored(db) > 1000, "a thousand readings stored")
    broker.stop()  # SIGTERM: Mosquitto saves sessions and queued messages to disk
    broker.start()
    acknowledged = devices.finish()
    wait_until(lambda: rpm.log().count("subscribed to ") == 2, "the consumer to subscribe again")
    try:
        wait_until(lambda: set(stored_readings(db)) >= acknowledged, "every reading stored")
    except pytest.fail.Exception:
        lost = len(acknowledged - set(stored_readings(db)))
        pytest.fail(f"{lost} of {len(acknowledged)} acknowledged readings never stored")
    readings = stored_readings(db)
    assert len(readings) == len(set(readings)), "a reading was stored twice"
    assert len(acknowledged) > DEVICES * 700, "the devices barely published"
    assert "broker not available" in rpm.log()


def test_a_shared_subscription_on_a_broker_that_loses_them_is_warned_about(
    broker: MosquittoProcess, consumer: Callable[..., RpmProcess]
) -> None:
    rpm = consumer("rpm-a", RPM_MQTT_SHARED_GROUP="rpm")
    wait_until(lambda: "READINGS WILL BE LOST" in rpm.log(), "the warning")
    assert "mosquitto version 2.0.11" in rpm.log()
