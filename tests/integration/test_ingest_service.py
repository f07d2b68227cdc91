"""The ingest service against the real PostgreSQL: stored once, dead-lettered with reasons."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from rpm.devices import registry
from rpm.devices.checks import TimeLimits
from rpm.devices.model import DeviceKind
from rpm.ingest.pipeline import Envelope, ReadingRow, Transport
from rpm.ingest.service import IngestService

Conn = psycopg.AsyncConnection[TupleRow]
NOW = datetime.now(UTC).replace(microsecond=0)


def _bp(at: datetime, systolic: float = 128) -> dict[str, object]:
    return {
        "kind": "blood_pressure",
        "measured_at": at.isoformat(),
        "systolic": systolic,
        "diastolic": 82,
        "pulse": 71,
        "unit": "mmHg",
    }


def _message(serial: str, document: object, channel: str = "readings") -> Envelope:
    return Envelope(
        Transport.MQTT,
        f"rpm/v1/devices/{serial}/{channel}",
        json.dumps(document).encode(),
        datetime.now(UTC),
    )


async def _patient(conn: Conn, ref: str) -> int:
    cursor = await conn.execute(
        "INSERT INTO patient (external_ref, given_name, family_name) VALUES (%s, 'Test', 'Patient')"
        " RETURNING id",
        [ref],
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(db_url, min_size=1, max_size=2, open=False) as pool:
        yield pool


@pytest.fixture
def handed_off() -> list[ReadingRow]:
    return []


@pytest.fixture
def service(pool: AsyncConnectionPool, handed_off: list[ReadingRow]) -> IngestService:
    async def handoff(conn: object, rows: Sequence[ReadingRow]) -> None:
        handed_off.extend(rows)

    return IngestService(pool, TimeLimits(), handoff)


async def _count(conn: Conn, sql: str, *params: object) -> int:
    cursor = await conn.execute(sql, list(params))
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_readings_are_stored_once_and_handed_to_the_rules(
    conn: Conn, service: IngestService, handed_off: list[ReadingRow]
) -> None:
    patient = await _patient(conn, "P-1")
    await registry.register(conn, "BP-1", DeviceKind.BLOOD_PRESSURE_CUFF, "A&D UA-651")
    await registry.assign(conn, "BP-1", patient, NOW - timedelta(days=30))

    backlog = [_bp(NOW - timedelta(hours=h)) for h in (3, 2, 1)]
    first = await service.ingest([_message("BP-1", backlog)])
    again = await service.ingest([_message("BP-1", backlog), _message("BP-1", backlog[0])])

    assert (first.stored, first.duplicates, first.rejected_messages) == (3, 0, 0)
    assert (again.stored, again.duplicates) == (0, 4)
    assert await _count(conn, "SELECT count(*) FROM reading WHERE patient_id = %s", patient) == 3
    assert len(handed_off) == 3
    device = await registry.get(conn, "BP-1")
    assert device.last_seen_at is not None


async def test_new_and_repeated_readings_in_one_batch_are_each_stored_once(
    conn: Conn, service: IngestService, handed_off: list[ReadingRow]
) -> None:
    """The direct COPY fails on the repeat; the batch is stored the careful way instead."""
    patient = await _patient(conn, "P-1")
    await registry.register(conn, "BP-1", DeviceKind.BLOOD_PRESSURE_CUFF, "A&D UA-651")
    await registry.assign(conn, "BP-1", patient, NOW - timedelta(days=30))
    stored_before = _bp(NOW - timedelta(hours=5))
    await service.ingest([_message("BP-1", stored_before)])
    fresh = [_bp(NOW - timedelta(hours=h), systolic=120 + h) for h in (3, 2, 1)]

    result = await service.ingest(
        [_message("BP-1", fresh), _message("BP-1", [fresh[1], stored_before])]
    )

    assert (result.stored, result.duplicates, result.rejected_messages) == (3, 2, 0)
    assert await _count(conn, "SELECT count(*) FROM reading WHERE patient_id = %s", patient) == 4
    assert [row.reading.systolic_mmhg for row in handed_off] == [128, 123, 122, 121]


async def test_a_reading_belongs_to_whoever_had_the_device_when_it_was_measured(
    conn: Conn, service: IngestService
) -> None:
    first, second = await _patient(conn, "P-1"), await _patient(conn, "P-2")
    await registry.register(conn, "SC-1", DeviceKind.WEIGHT_SCALE)
    await registry.assign(conn, "SC-1", first, NOW - timedelta(days=10))
    await registry.assign(conn, "SC-1", second, NOW - timedelta(days=2))
    weights = [
        {"kind": "body_weight", "measured_at": (NOW - timedelta(days=d)).isoformat(),
         "weight": 80 + d, "unit": "kg"}
        for d in (5, 1)
    ]  # fmt: skip
    result = await service.ingest([_message("SC-1", weights)])
    assert result.stored == 2
    cursor = await conn.execute("SELECT patient_id FROM reading ORDER BY measured_at")
    assert [row[0] for row in await cursor.fetchall()] == [first, second]


async def test_what_cannot_be_stored_is_dead_lettered_with_its_bytes_and_reason(
    conn: Conn, service: IngestService
) -> None:
    patient = await _patient(conn, "P-1")
    await registry.register(conn, "BP-1", DeviceKind.BLOOD_PRESSURE_CUFF)
    await registry.register(conn, "GL-1", DeviceKind.GLUCOMETER)
    await registry.assign(conn, "BP-1", patient, NOW - timedelta(days=1))
    messages = [
        _message("BP-9", _bp(NOW)),  # unknown device
        _message("GL-1", {"kind": "blood_glucose", "measured_at": NOW.isoformat(),
                          "glucose": 90, "unit": "mg/dL"}),  # not assigned
        _message("BP-1", {"kind": "body_weight", "measured_at": NOW.isoformat(),
                          "weight": 80, "unit": "kg"}),  # a cuff cannot weigh
        _message("BP-1", [_bp(NOW - timedelta(minutes=5)), _bp(NOW, systolic=500)]),
        Envelope(Transport.MQTT, "rpm/v1/devices/BP-1/readings", b"{oops", NOW),
    ]  # fmt: skip
    result = await service.ingest(messages)
    assert (result.stored, result.rejected_messages) == (1, 5)
    cursor = await conn.execute(
        "SELECT device_serial, reason, detail, payload FROM rejected_message ORDER BY id"
    )
    rows = await cursor.fetchall()
    assert [(serial, reason) for serial, reason, _, _ in rows] == [
        ("BP-9", "unknown_device"),
        ("GL-1", "unassigned_device"),
        ("BP-1", "kind_mismatch"),
        ("BP-1", "implausible_value"),
        ("BP-1", "malformed_json"),
    ]
    assert "assign it, then replay this message" in rows[1][2]
    assert rows[3][2].startswith("reading [1]: implausible_value: systolic 500 mmHg")
    assert "other 1 reading(s) were stored" in rows[3][2]
    assert bytes(rows[4][3]) == b"{oops"


async def test_status_messages_update_the_device(conn: Conn, service: IngestService) -> None:
    await registry.register(conn, "BP-1", DeviceKind.BLOOD_PRESSURE_CUFF)
    status = {"battery": 18, "signal_dbm": -97, "firmware": "2.4.1"}
    result = await service.ingest([_message("BP-1", status, channel="status")])
    assert result.rejected_messages == 0
    device = await registry.get(conn, "BP-1")
    assert (device.battery_percent, device.signal_dbm, device.firmware) == (18, -97, "2.4.1")
    assert device.last_seen_at is not None


async def test_a_deactivated_device_is_dead_lettered(conn: Conn, service: IngestService) -> None:
    patient = await _patient(conn, "P-1")
    await registry.register(conn, "BP-1", DeviceKind.BLOOD_PRESSURE_CUFF)
    await registry.assign(conn, "BP-1", patient, NOW - timedelta(days=1))
    await registry.deactivate(conn, "BP-1")
    result = await service.ingest([_message("BP-1", _bp(NOW))])
    assert (result.stored, result.rejected_messages) == (0, 1)


async def test_a_redelivered_rejected_message_is_kept_once(
    conn: Conn, service: IngestService
) -> None:
    message = Envelope(Transport.MQTT, "rpm/v1/devices/BP-1/readings", b"{oops", NOW)
    await service.ingest([message])
    await service.ingest([message, message])
    assert await _count(conn, "SELECT count(*) FROM rejected_message") == 1
