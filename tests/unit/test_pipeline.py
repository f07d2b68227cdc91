"""The pure ingest pipeline: attribution to devices and patients."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from rpm.devices.checks import TimeLimits
from rpm.devices.model import DeviceKind, Reason
from rpm.ingest.pipeline import (
    Assignment,
    Envelope,
    KnownDevice,
    Transport,
    decode,
    resolve,
    serials,
)

NOW = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
CUFF = KnownDevice(
    1,
    "BP-1",
    DeviceKind.BLOOD_PRESSURE_CUFF,
    True,
    (
        Assignment(10, NOW - timedelta(days=30), NOW - timedelta(days=3)),
        Assignment(11, NOW - timedelta(days=3), None),
    ),
)


def _bp(days_ago: float) -> dict[str, object]:
    at = NOW - timedelta(days=days_ago)
    return {"kind": "blood_pressure", "measured_at": at.isoformat(), "systolic": 120,
            "diastolic": 80, "unit": "mmHg"}  # fmt: skip


def _envelope(topic: str, document: object) -> Envelope:
    return Envelope(Transport.MQTT, topic, json.dumps(document).encode(), NOW)


def _plan(*envelopes: Envelope, devices: dict[str, KnownDevice] | None = None):  # type: ignore[no-untyped-def]
    decoded = [decode(e, TimeLimits()) for e in envelopes]
    return resolve(decoded, devices if devices is not None else {"BP-1": CUFF})


def test_each_reading_goes_to_the_patient_who_had_the_device_then() -> None:
    plan = _plan(_envelope("rpm/v1/devices/BP-1/readings", [_bp(10), _bp(1)]))
    assert [row.patient_id for row in plan.rows] == [10, 11]
    assert plan.dead_letters == []
    assert plan.last_seen == {1: NOW}


def test_readings_before_any_assignment_are_dead_lettered_by_position() -> None:
    plan = _plan(_envelope("rpm/v1/devices/BP-1/readings", [_bp(1), _bp(40)]))
    assert len(plan.rows) == 1
    [letter] = plan.dead_letters
    assert letter.reason is Reason.UNASSIGNED_DEVICE
    assert letter.detail.startswith("reading [1]: unassigned_device: device BP-1 was not")
    assert letter.device_serial == "BP-1"


def test_topics_name_the_devices_to_look_up() -> None:
    decoded = [
        decode(_envelope("rpm/v1/devices/BP-1/readings", _bp(1)), TimeLimits()),
        decode(_envelope("rpm/v1/devices/SC-2/status", {"battery": 50}), TimeLimits()),
        decode(_envelope("rpm/v1/other", {}), TimeLimits()),
    ]
    assert serials(decoded) == {"BP-1", "SC-2"}
    plan = resolve(decoded, {"BP-1": CUFF})
    assert [d.reason for d in plan.dead_letters] == [Reason.UNKNOWN_DEVICE, Reason.BAD_TOPIC]


def test_a_device_measures_only_its_own_kinds() -> None:
    weight = {"kind": "body_weight", "measured_at": NOW.isoformat(), "weight": 80, "unit": "kg"}
    plan = _plan(_envelope("rpm/v1/devices/BP-1/readings", weight))
    [letter] = plan.dead_letters
    assert letter.reason is Reason.KIND_MISMATCH
    assert "blood pressure cuff; it cannot send body weight" in letter.detail
