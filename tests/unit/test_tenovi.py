"""Tenovi's measurement webhook format. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from rpm.devices.checks import KG_PER_LB
from rpm.devices.model import DeviceStatus, MealContext, Reading, ReadingKind, Reason, Rejection
from rpm.devices.tenovi import decode_tenovi

NOW = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def _measurement(**fields: object) -> dict[str, object]:
    return {
        "metric": "blood_pressure",
        "device_name": "Tenovi BPM - L",
        "hwi_device_id": "e9c24a26-7d69-490f-9546-93c5a31486aa",
        "value_1": "128.00",
        "value_2": "82.00",
        "created": "2026-11-24T12:30:28.109806Z",
        "timestamp": "2026-11-24T12:30:00.000000Z",
        "timezone_offset": -5,
        "estimated_timestamp": False,
        "filter_params": {"measurement_index": 587},
        **fields,
    }


def _decode(document: object) -> list[tuple[str | None, object]]:
    return decode_tenovi(json.dumps(document).encode(), received_at=NOW)  # type: ignore[return-value]


def test_blood_pressure_keeps_the_device_offset() -> None:
    [(serial, reading)] = _decode(_measurement())
    assert serial == "e9c24a26-7d69-490f-9546-93c5a31486aa"
    assert isinstance(reading, Reading)
    assert (reading.systolic_mmhg, reading.diastolic_mmhg) == (128, 82)
    assert reading.measured_at == datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
    assert reading.utc_offset_min == -300
    assert reading.original["estimated_timestamp"] is False


def test_an_array_of_simultaneous_measurements() -> None:
    decoded = _decode(
        [
            _measurement(),
            _measurement(metric="pulse", value_1="71.00", value_2="0.00"),
            _measurement(metric="weight", value_1="181.4", value_2=None),
            _measurement(
                metric="glucose", value_1=97, filter_params={"meal_context": "pre-prandial"}
            ),
            _measurement(metric="battery_percentage", value_1="64"),
        ]
    )
    kinds = [o.kind if isinstance(o, Reading) else type(o).__name__ for _, o in decoded]
    assert kinds == [
        ReadingKind.BLOOD_PRESSURE,
        ReadingKind.HEART_RATE,
        ReadingKind.BODY_WEIGHT,
        ReadingKind.BLOOD_GLUCOSE,
        "DeviceStatus",
    ]
    weight, glucose, battery = decoded[2][1], decoded[3][1], decoded[4][1]
    assert isinstance(weight, Reading)
    assert weight.weight_kg == pytest.approx(181.4 * KG_PER_LB)
    assert isinstance(glucose, Reading)
    assert glucose.meal_context is MealContext.BEFORE_MEAL
    assert isinstance(battery, DeviceStatus)
    assert battery.battery_percent == 64


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"metric": "spO2", "value_1": "97"}, Reason.UNKNOWN_FORMAT),
        ({"value_1": "abc"}, Reason.SCHEMA),
        ({"timestamp": "2026-11-24T12:30:00"}, Reason.BAD_TIMESTAMP),
        ({"value_2": None}, Reason.SCHEMA),
        ({"value_1": "400"}, Reason.IMPLAUSIBLE_VALUE),
        ({"hwi_device_id": ""}, Reason.SCHEMA),
    ],
)
def test_what_is_not_stored_says_why(fields: dict[str, object], reason: Reason) -> None:
    [(_, outcome)] = _decode(_measurement(**fields))
    assert isinstance(outcome, Rejection)
    assert outcome.reason is reason
