"""Native payloads: units, timestamps, plausibility, arrays. Pure, no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rpm.devices.checks import KG_PER_LB, MG_DL_PER_MMOL_L, TimeLimits
from rpm.devices.codecs import MAX_PAYLOAD_BYTES, decode_readings
from rpm.devices.model import MealContext, Reading, ReadingKind, Reason, Rejection, Source

NOW = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def _decode(document: object, **kwargs: object) -> list[Reading | Rejection]:
    return decode_readings(json.dumps(document).encode(), received_at=NOW, **kwargs)  # type: ignore[arg-type]


def _one(document: object) -> Reading | Rejection:
    [decoded] = _decode(document)
    return decoded


BP = {
    "kind": "blood_pressure",
    "measured_at": "2026-11-24T07:30:00-05:00",
    "systolic": 128,
    "diastolic": 82,
    "pulse": 71,
    "unit": "mmHg",
}


def test_blood_pressure_keeps_its_values_offset_and_original() -> None:
    reading = _one({**BP, "id": "r-17"})
    assert isinstance(reading, Reading)
    assert reading.kind is ReadingKind.BLOOD_PRESSURE
    assert (reading.systolic_mmhg, reading.diastolic_mmhg, reading.pulse_bpm) == (128, 82, 71)
    assert reading.measured_at == datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
    assert reading.utc_offset_min == -300
    assert reading.source is Source.NATIVE
    assert reading.device_reading_id == "r-17"
    assert reading.original == {**BP, "id": "r-17"}


@pytest.mark.parametrize(
    ("weight", "unit", "kg"),
    [(181.4, "lb", 181.4 * KG_PER_LB), (82.3, "kg", 82.3), (100, "lb", 45.359237)],
)
def test_weight_is_stored_in_kg_with_the_original_kept(weight: float, unit: str, kg: float) -> None:
    reading = _one(
        {"kind": "body_weight", "measured_at": "2026-11-24T07:00Z", "weight": weight, "unit": unit}
    )
    assert isinstance(reading, Reading)
    assert reading.weight_kg == pytest.approx(kg)
    assert reading.original["unit"] == unit
    assert reading.original["weight"] == weight


@pytest.mark.parametrize(
    ("glucose", "unit", "mg_dl"), [(5.4, "mmol/L", 5.4 * MG_DL_PER_MMOL_L), (97, "mg/dL", 97)]
)
def test_glucose_is_stored_in_mg_dl(glucose: float, unit: str, mg_dl: float) -> None:
    reading = _one(
        {
            "kind": "blood_glucose",
            "measured_at": "2026-11-24T07:00+01:00",
            "glucose": glucose,
            "unit": unit,
            "meal": "fasting",
        }
    )
    assert isinstance(reading, Reading)
    assert reading.glucose_mg_dl == pytest.approx(mg_dl)
    assert reading.meal_context is MealContext.FASTING


def test_an_array_is_a_backlog_and_each_item_stands_alone() -> None:
    good = {**BP, "measured_at": "2026-11-24T06:00:00Z"}
    bad = {**BP, "systolic": 400}
    decoded = _decode([good, bad, {**good, "measured_at": "2026-11-24T06:05:00Z"}])
    assert [type(d).__name__ for d in decoded] == ["Reading", "Rejection", "Reading"]
    rejection = decoded[1]
    assert isinstance(rejection, Rejection)
    assert rejection.index == 1
    assert rejection.reason is Reason.IMPLAUSIBLE_VALUE
    assert rejection.describe() == (
        "reading [1]: implausible_value: systolic 400 mmHg is outside the human range "
        "40 to 300 mmHg"
    )


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        ({"measured_at": "2026-11-24T07:30:00"}, Reason.BAD_TIMESTAMP, "has no UTC offset"),
        ({"measured_at": "yesterday"}, Reason.BAD_TIMESTAMP, "is not an RFC 3339 time"),
        ({"measured_at": 1732431000}, Reason.SCHEMA, "measured_at: Input should be a valid string"),
        ({"measured_at": "2026-11-24T13:06:00Z"}, Reason.FUTURE_TIMESTAMP, "6 minutes after"),
        ({"measured_at": "2000-01-01T00:00:00Z"}, Reason.STALE_TIMESTAMP, "more than 365 days"),
        ({"unit": "kPa"}, Reason.UNIT, "unit: Input should be 'mmHg'"),
        ({"unit": None}, Reason.UNIT, "unit"),
        ({"systolic": "128"}, Reason.SCHEMA, "systolic: Input should be a valid number"),
        ({"systolic": True}, Reason.SCHEMA, "systolic: Input should be a valid number"),
        ({"diastolic": 130}, Reason.IMPLAUSIBLE_VALUE, "is not above diastolic 130"),
        ({"pulse": 400}, Reason.IMPLAUSIBLE_VALUE, "pulse 400 beats/min is outside"),
        ({"kind": "temperature"}, Reason.SCHEMA, "kind: Input tag 'temperature'"),
    ],
)
def test_bad_readings_are_rejected_with_a_clear_reason(
    change: dict[str, object], reason: Reason, words: str
) -> None:
    rejection = _one({**BP, **change})
    assert isinstance(rejection, Rejection)
    assert rejection.reason is reason
    assert words in rejection.detail


def test_a_missing_unit_is_a_unit_problem() -> None:
    rejection = _one({k: v for k, v in BP.items() if k != "unit"})
    assert isinstance(rejection, Rejection)
    assert rejection.reason is Reason.UNIT


def test_a_little_future_is_tolerated_for_clock_drift() -> None:
    soon = (NOW + timedelta(minutes=4)).isoformat()
    assert isinstance(_one({**BP, "measured_at": soon}), Reading)


def test_any_age_is_accepted_when_the_limit_is_lifted() -> None:
    [decoded] = _decode(
        {**BP, "measured_at": "2013-02-05T07:25:00Z"}, limits=TimeLimits(max_age=None)
    )
    assert isinstance(decoded, Reading)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", Reason.EMPTY_PAYLOAD),
        (b"   ", Reason.EMPTY_PAYLOAD),
        (b"[]", Reason.EMPTY_PAYLOAD),
        (b"{not json", Reason.MALFORMED_JSON),
        (b"\xff\xfe", Reason.MALFORMED_JSON),
        (b"42", Reason.UNKNOWN_FORMAT),
        (b'{"hello": "world"}', Reason.UNKNOWN_FORMAT),
        (b" " * (MAX_PAYLOAD_BYTES + 1) + b"{}", Reason.PAYLOAD_TOO_LARGE),
    ],
)
def test_messages_that_are_not_readings(payload: bytes, reason: Reason) -> None:
    [rejection] = decode_readings(payload, received_at=NOW)
    assert isinstance(rejection, Rejection)
    assert rejection.reason is reason
    assert rejection.index is None


def test_summaries_are_marked_and_spread_statistics_skip_human_limits() -> None:
    document = {
        "heart_rate": {"value": 4.5, "unit": "beats/min"},
        "effective_time_frame": {
            "time_interval": {
                "start_date_time": "2026-11-23T00:00:00Z",
                "duration": {"value": 1, "unit": "d"},
            }
        },
        "descriptive_statistic": "standard deviation",
    }
    reading = _one(document)
    assert isinstance(reading, Reading)
    assert reading.statistic == "standard deviation"
    assert reading.measured_at == datetime(2026, 11, 24, tzinfo=UTC)
