"""The MQTT consumer against a real Mosquitto (our own) and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.app import create_app
from rpm.config import BrokerAddress
from rpm.health import Health
from rpm.ingest.consumer import ConsumerOptions, MqttConsumer, _ManualAckClient
from rpm.ingest.pipeline import Envelope
from tests.support import MosquittoProcess, wait_until_ready, wiring

BROKER_CONFIG = "allow_anonymous true\nmax_inflight_messages 1000\npersistence false\n"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    process = MosquittoProcess(BROKER_CONFIG, tmp_path)
    process.start()
    yield process
    process.stop()


def _options(client_id: str) -> ConsumerOptions:
    return ConsumerOptions(
        client_id=client_id,
        keepalive_s=30,
        shared_group=None,
        protocol=aiomqtt.ProtocolVersion.V5,
        batch_size=50,
    )


async def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="test-device") as device:
        for topic, payload in messages:
            await device.publish(topic, payload, qos=1)


async def _drain(connection: _ManualAckClient, expected: int) -> list[aiomqtt.Message]:
    received: list[aiomqtt.Message] = []
    async with asyncio.timeout(10):
        while len(received) < expected:
            received += await connection.next_batch(100)
    return received


async def _nothing_within(connection: _ManualAckClient, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await connection.next_batch(100)
    except TimeoutError:
        return True
    return False


async def test_an_unacknowledged_message_is_delivered_again(broker: MosquittoProcess) -> None:
    address = BrokerAddress("127.0.0.1", broker.port)
    options = _options("ack-test")
    topics = ["rpm/v1/devices/+/readings"]

    # Subscribe once so that the broker keeps a session for this client id.
    first = _ManualAckClient(address, options)
    async with first.client as client:
        await client.subscribe(topics[0], qos=1)
    first.close()
    published = [(f"rpm/v1/devices/BP-{i}/readings", f"m{i}".encode()) for i in range(5)]
    await _publish(broker.port, published)

    unacked = _ManualAckClient(address, options)
    async with unacked.client:
        got = await _drain(unacked, 5)
        assert sorted(bytes(m.payload) for m in got) == [p for _, p in published]  # type: ignore[arg-type]
    unacked.close()  # gone without acknowledging anything

    again = _ManualAckClient(address, options)
    async with again.client:
        redelivered = await _drain(again, 5)
        assert sorted(bytes(m.payload) for m in redelivered) == [p for _, p in published]  # type: ignore[arg-type]
        for message in redelivered:
            again.ack(message)
        await again.flush()  # the acknowledgements have reached the broker
    again.close()

    settled = _ManualAckClient(address, options)
    async with settled.client:
        assert await _nothing_within(settled, 1.0)
    settled.close()


def _count(db_url: str, sql: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _wait_for_count(db_url: str, sql: str, expected: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (found := _count(db_url, sql)) != expected:
        assert time.monotonic() < deadline, f"{sql}: {found}, expected {expected}"
        time.sleep(0.1)


def test_published_readings_are_stored_once_and_bad_ones_dead_lettered(
    db_url: str, broker: MosquittoProcess
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
    start = datetime.now(UTC) - timedelta(days=1)
    readings = [
        (
            "rpm/v1/devices/BP-1/readings",
            json.dumps(
                {
                    "kind": "blood_pressure",
                    "measured_at": (start + timedelta(minutes=i)).isoformat(),
                    "systolic": 120 + i % 20,
                    "diastolic": 80,
                    "unit": "mmHg",
                }
            ).encode(),
        )
        for i in range(300)
    ]
    bad = [("rpm/v1/devices/XX-1/readings", b"{}"), ("rpm/v1/devices/BP-1/readings", b"nope")]
    fatal: list[str] = []
    with TestClient(
        create_app(wiring(db_url, BrokerAddress("127.0.0.1", broker.port), fatal))
    ) as client:
        wait_until_ready(client)
        asyncio.run(_publish(broker.port, readings + bad + readings[:50]))
        _wait_for_count(db_url, "SELECT count(*) FROM rejected_message", 2)
        _wait_for_count(db_url, "SELECT count(*) FROM reading", 300)
        # Every stored batch was queued for the rule engine and evaluated off the queue.
        _wait_for_count(db_url, "SELECT count(*) FROM rule_evaluation_queue", 0)
        metrics = client.get("/metrics").text
    assert fatal == []
    assert "rpm_ingest_readings_stored_total" in metrics
    assert _counter(metrics, "rpm_rules_evaluation_failures_total") == 0
    assert 'rpm_ingest_messages_rejected_total{reason="malformed_json"}' in metrics


def _counter(exposition: str, name: str) -> float:
    return sum(
        float(line.split()[-1]) for line in exposition.splitlines() if line.startswith(name + " ")
    )


class _HeldIngest:
    """Stands in for `IngestService`: records each stored batch, and holds the first store
    until released."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.first_arrived = asyncio.Event()
        self.release = asyncio.Event()

    def decode(self, envelope: Envelope) -> bytes:
        return envelope.payload

    async def plan(self, decoded: list[bytes]) -> list[bytes]:
        return decoded

    async def store(self, plan: list[bytes]) -> None:
        self.batches.append(plan)
        self.first_arrived.set()
        await self.release.wait()


async def test_a_clean_stop_finishes_the_batches_in_hand_and_takes_no_other(
    broker: MosquittoProcess,
) -> None:
    address = BrokerAddress("127.0.0.1", broker.port)
    options = ConsumerOptions(
        client_id="stop-test",
        keepalive_s=30,
        shared_group=None,
        protocol=aiomqtt.ProtocolVersion.V5,
        batch_size=10,
    )
    # A session that holds the stream before the consumer starts.
    first = _ManualAckClient(address, options)
    async with first.client as client:
        await client.subscribe("rpm/v1/devices/+/readings", qos=1)
    first.close()
    published = [(f"rpm/v1/devices/BP-{i}/readings", f"m{i}".encode()) for i in range(50)]
    await _publish(broker.port, published)

    ingest = _HeldIngest()
    consumer = MqttConsumer(address, options, ingest, Health())  # type: ignore[arg-type]
    running = asyncio.create_task(consumer.run())
    async with asyncio.timeout(10):
        await ingest.first_arrived.wait()
        consumer.stop()  # while the first batch is being stored
        ingest.release.set()
        await running
    # The one being written, and at most the one planned meanwhile and the one taken
    # while that waited.
    assert 1 <= len(ingest.batches) <= 3
    in_hand = {payload for batch in ingest.batches for payload in batch}

    # The batches in hand were acknowledged; everything else waits in the session.
    again = _ManualAckClient(address, options)
    async with again.client:
        rest = await _drain(again, len(published) - len(in_hand))
        for message in rest:
            again.ack(message)
        assert {bytes(m.payload) for m in rest} == {p for _, p in published} - in_hand  # type: ignore[arg-type]
        assert await _nothing_within(again, 0.5)
    again.close()
