"""Readings as FHIR Observations: every kind, from every unit a device may send, each
Observation valid to fhir.resources' R4B model and to the vital-signs shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpm.devices.codecs import decode_readings
from rpm.devices.model import Reading, ReadingKind
from rpm.fhir.observations import (
    Measurement,
    ObservationKey,
    Position,
    observation_id,
    observation_key,
    observations,
    observations_after,
)
from tests.fhir_checks import FHIR_ID, check_observation

RECEIVED = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def _measurement(reading: Reading, serial: str = "DEV-1") -> Measurement:
    """The reading as the store gives it back for an export (patient 7, device 3)."""
    return Measurement(
        patient_id=7,
        device_id=3,
        device_serial=serial,
        kind=reading.kind.value,
        measured_at=reading.measured_at,
        measured_utc_offset_min=reading.utc_offset_min,
        received_at=RECEIVED,
        systolic_mmhg=reading.systolic_mmhg,
        diastolic_mmhg=reading.diastolic_mmhg,
        pulse_bpm=reading.pulse_bpm,
        weight_kg=reading.weight_kg,
        glucose_mg_dl=reading.glucose_mg_dl,
        meal_context=None if reading.meal_context is None else reading.meal_context.value,
    )


def _decoded(payload: dict[str, Any]) -> Measurement:
    """What the device sent, through the real codec (units converted there)."""
    (reading,) = decode_readings(json.dumps(payload).encode(), received_at=RECEIVED)
    assert isinstance(reading, Reading), reading
    return _measurement(reading)


def _loinc(observation: dict[str, Any]) -> str:
    return str(observation["code"]["coding"][0]["code"])


def _value(observation: dict[str, Any]) -> tuple[float, str]:
    quantity = observation["valueQuantity"]
    return quantity["value"], quantity["code"]


AT = "2026-11-24T07:30:00-05:00"

# (what the device sent, [(LOINC code, value, UCUM unit) of each Observation]).
CASES = {
    "blood pressure with a pulse": (
        {"kind": "blood_pressure", "measured_at": AT, "systolic": 128, "diastolic": 82,
         "pulse": 71, "unit": "mmHg"},
        [("85354-9", (128, 82), "mm[Hg]"), ("8867-4", 71, "/min")],
    ),
    "blood pressure without a pulse": (
        {"kind": "blood_pressure", "measured_at": AT, "systolic": 151.0, "diastolic": 96.0,
         "unit": "mmHg"},
        [("85354-9", (151, 96), "mm[Hg]")],
    ),
    "Open mHealth blood pressure": (
        {"systolic_blood_pressure": {"value": 115, "unit": "mmHg"},
         "diastolic_blood_pressure": {"value": 60, "unit": "mmHg"},
         "effective_time_frame": {"date_time": AT}},
        [("85354-9", (115, 60), "mm[Hg]")],
    ),
    "heart rate": (
        {"heart_rate": {"value": 64, "unit": "beats/min"},
         "effective_time_frame": {"date_time": AT}},
        [("8867-4", 64, "/min")],
    ),
    "weight in kg": (
        {"kind": "body_weight", "measured_at": AT, "weight": 82.3, "unit": "kg"},
        [("29463-7", 82.3, "kg")],
    ),
    "weight in lb": (
        # 181.4 lb = 82.2817 kg: to the scale's tenth.
        {"kind": "body_weight", "measured_at": AT, "weight": 181.4, "unit": "lb"},
        [("29463-7", 82.3, "kg")],
    ),
    "Open mHealth weight in lb": (
        {"body_weight": {"value": 200, "unit": "lb"}, "effective_time_frame": {"date_time": AT}},
        [("29463-7", 90.7, "kg")],
    ),
    "glucose in mg/dL": (
        {"kind": "blood_glucose", "measured_at": AT, "glucose": 97, "unit": "mg/dL",
         "meal": "fasting"},
        [("41653-7", 97, "mg/dL")],
    ),
    "glucose in mmol/L": (
        # 5.4 mmol/L x 18.0156 = 97.28 mg/dL: always mg/dL for 41653-7, to the unit.
        {"kind": "blood_glucose", "measured_at": AT, "glucose": 5.4, "unit": "mmol/L"},
        [("41653-7", 97, "mg/dL")],
    ),
    "Open mHealth glucose in mmol/L": (
        {"blood_glucose": {"value": 11.1, "unit": "mmol/L"},
         "effective_time_frame": {"date_time": AT}},
        [("41653-7", 200, "mg/dL")],
    ),
}  # fmt: skip


@pytest.mark.parametrize(("payload", "expected"), CASES.values(), ids=CASES.keys())
def test_each_kind_and_unit_becomes_valid_observations(
    payload: dict[str, Any], expected: list[tuple[str, Any, str]]
) -> None:
    found = observations(_decoded(payload))
    assert [_loinc(o) for o in found] == [code for code, _, _ in expected]
    for observation, (code, value, unit) in zip(found, expected, strict=True):
        check_observation(observation)
        assert observation["subject"] == {"reference": "Patient/7"}
        assert observation["device"] == {"reference": "Device/3", "display": "DEV-1"}
        assert observation["effectiveDateTime"] == AT
        assert observation["issued"] == "2026-11-24T13:00:00+00:00"
        if code == "85354-9":
            values = [c["valueQuantity"]["value"] for c in observation["component"]]
            assert tuple(values) == value
        else:
            assert _value(observation) == (value, unit)


def test_a_pulse_is_a_heart_rate_observation_of_its_own() -> None:
    panel, pulse = observations(_decoded(CASES["blood pressure with a pulse"][0]))
    assert panel["id"] != pulse["id"]
    assert "valueQuantity" not in panel
    assert pulse["code"]["coding"] == [
        {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}
    ]
    assert pulse["valueQuantity"] == {
        "value": 71,
        "unit": "beats/minute",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    for key in ("subject", "device", "effectiveDateTime", "issued"):
        assert pulse[key] == panel[key]


def test_float4_noise_is_not_exported_as_precision() -> None:
    """The store keeps glucose and blood pressure as float4."""
    reading = _decoded(CASES["glucose in mmol/L"][0])
    noisy = Measurement(**{**vars(reading), "glucose_mg_dl": 97.28424072265625})
    (observation,) = observations(noisy)
    assert observation["valueQuantity"]["value"] == 97


@pytest.mark.parametrize(
    ("offset_min", "effective"),
    [
        (-300, "2026-11-24T07:30:00-05:00"),
        (345, "2026-11-24T18:15:00+05:45"),  # Nepal
        (0, "2026-11-24T12:30:00+00:00"),
        (14 * 60, "2026-11-25T02:30:00+14:00"),  # Kiribati: FHIR's last offset
        (None, "2026-11-24T12:30:00+00:00"),  # not known: UTC
        (15 * 60, "2026-11-24T12:30:00+00:00"),  # a clock FHIR cannot write: UTC
    ],
)
def test_the_time_is_on_the_device_clock_where_fhir_can_say_it(
    offset_min: int | None, effective: str
) -> None:
    reading = _decoded(CASES["weight in kg"][0])
    moved = Measurement(**{**vars(reading), "measured_utc_offset_min": offset_min})
    (observation,) = observations(moved)
    check_observation(observation)
    assert observation["effectiveDateTime"] == effective
    assert datetime.fromisoformat(effective) == reading.measured_at


def test_fractions_of_a_second_are_kept() -> None:
    reading = _decoded({**CASES["weight in kg"][0], "measured_at": "2026-11-24T07:30:00.25-05:00"})
    (observation,) = observations(reading)
    check_observation(observation)
    assert observation["effectiveDateTime"] == "2026-11-24T07:30:00.250000-05:00"


def _identifiers(reading: Measurement) -> list[str]:
    return [o["identifier"][0]["value"] for o in observations(reading)]


def test_identifiers_are_the_readings_identity_whatever_the_export() -> None:
    """Same reading, same identifier (and id), whichever patient view or clock wrote it;
    another device serial, kind or instant, another identifier."""
    reading = _decoded(CASES["blood pressure with a pulse"][0])
    identifiers, ids = _identifiers(reading), [o["id"] for o in observations(reading)]
    assert _identifiers(reading) == identifiers
    in_utc = Measurement(
        **{**vars(reading), "measured_at": reading.measured_at.astimezone(UTC),
           "measured_utc_offset_min": 0, "received_at": RECEIVED + timedelta(hours=1)}
    )  # fmt: skip
    assert _identifiers(in_utc) == identifiers
    assert [o["id"] for o in observations(in_utc)] == ids
    others = [
        Measurement(**{**vars(reading), "device_serial": "DEV-2"}),
        Measurement(**{**vars(reading), "measured_at": reading.measured_at + timedelta(seconds=1)}),
        Measurement(**{**vars(reading), "kind": "heart_rate"}),
    ]
    for other in others:
        assert set(_identifiers(other)).isdisjoint(identifiers)


def test_an_id_names_its_readings_key_and_part() -> None:
    """The id is the reading's primary key (device, kind, instant) and the part: a read
    finds the reading from it; anything else names nothing."""
    reading = _decoded(CASES["blood pressure with a pulse"][0])
    panel, pulse = observations(reading)
    assert panel["id"] == "bp-3-1795523400000000"
    assert pulse["id"] == "bp-pulse-3-1795523400000000"
    assert observation_key(panel["id"]) == ObservationKey(
        3, "blood_pressure", reading.measured_at, 0
    )
    assert observation_key(pulse["id"]) == ObservationKey(
        3, "blood_pressure", reading.measured_at, 1
    )
    early = datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert observation_id(9, "body_weight", early, 0) == "wt-9--1"
    assert observation_key("wt-9--1") == ObservationKey(9, "body_weight", early, 0)
    for text in ("bp-0-1", "xx-3-1", "bp-3-", "bp-3-1.5", "42", "bp-3-99999999999999999999"[:24],
                 "wt-3-9" * 3):  # fmt: skip
        assert observation_key(text) is None, text


@given(
    device_id=st.integers(1, 2**63 - 1),
    kind=st.sampled_from([k.value for k in ReadingKind]),
    measured_at=st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
)
def test_every_id_names_its_key_again(device_id: int, kind: str, measured_at: datetime) -> None:
    for part in (0, 1) if kind == "blood_pressure" else (0,):
        text = observation_id(device_id, kind, measured_at, part)
        assert FHIR_ID.fullmatch(text), text
        assert observation_key(text) == ObservationKey(device_id, kind, measured_at, part)


def test_a_glucose_readings_meal_context_is_a_component_coded_as_the_phd_ig_has_it() -> None:
    payload = {"kind": "blood_glucose", "measured_at": AT, "glucose": 97, "unit": "mg/dL"}
    expected = {"fasting": "8417876", "before_meal": "8417868", "after_meal": "8417872",
                "bedtime": "8417908", "random": "8417880"}  # fmt: skip
    for meal, code in expected.items():
        reading = Measurement(**{**vars(_decoded(payload)), "meal_context": meal})
        (observation,) = observations(reading)
        check_observation(observation)
        (component,) = observation["component"]
        assert component["code"]["coding"][0]["code"] == "8417864"
        assert component["valueCodeableConcept"]["coding"][0]["code"] == code
    (without,) = observations(_decoded(payload))
    assert "component" not in without


def test_a_kind_without_an_observation_is_refused() -> None:
    reading = _decoded(CASES["weight in kg"][0])
    with pytest.raises(ValueError, match="temperature"):
        observations(Measurement(**{**vars(reading), "kind": "temperature"}))


def test_observations_after_a_position_leave_out_what_was_sent() -> None:
    """A page may end between a blood-pressure panel and its pulse: the next starts at the
    pulse; one that ended on a reading's last Observation starts at the next reading."""
    bp = _decoded(CASES["blood pressure with a pulse"][0])
    weight = Measurement(
        **{**vars(_decoded(CASES["weight in kg"][0])), "device_id": 4,
           "measured_at": bp.measured_at + timedelta(minutes=1)}
    )  # fmt: skip
    key = (bp.patient_id, bp.measured_at, bp.device_id, bp.kind)

    def codes(after: Position | None) -> list[str]:
        return [_loinc(o) for _, o in observations_after([bp, weight], after)]

    assert codes(None) == ["85354-9", "8867-4", "29463-7"]
    assert codes(Position(*key, 0)) == ["8867-4", "29463-7"]
    assert codes(Position(*key, 1)) == ["29463-7"]
    positions = [p for p, _ in observations_after([bp, weight], None)]
    assert positions == [Position(*key, 0), Position(*key, 1), Position(7, weight.measured_at, 4,
                         "body_weight", 0)]  # fmt: skip


# Any reading the store can hold: a kind with its values in the human ranges the codecs
# let through, measured at any time of 1970-2100 on any clock a device may have.
_KIND_VALUES: dict[ReadingKind, st.SearchStrategy[dict[str, float | None]]] = {
    ReadingKind.BLOOD_PRESSURE: st.fixed_dictionaries(
        {"systolic_mmhg": st.floats(40, 300), "diastolic_mmhg": st.floats(20, 200),
         "pulse_bpm": st.none() | st.floats(20, 300)}
    ),
    ReadingKind.HEART_RATE: st.fixed_dictionaries({"pulse_bpm": st.floats(20, 300)}),
    ReadingKind.BODY_WEIGHT: st.fixed_dictionaries({"weight_kg": st.floats(2, 500)}),
    ReadingKind.BLOOD_GLUCOSE: st.fixed_dictionaries({"glucose_mg_dl": st.floats(10, 1000)}),
}  # fmt: skip
_EMPTY = dict.fromkeys(
    ("systolic_mmhg", "diastolic_mmhg", "pulse_bpm", "weight_kg", "glucose_mg_dl")
)


@st.composite
def measurements(draw: st.DrawFn) -> Measurement:
    kind = draw(st.sampled_from(list(_KIND_VALUES)))
    measured_at = draw(
        st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))
    )
    return Measurement(
        patient_id=draw(st.integers(1, 2**63 - 1)),
        device_id=draw(st.integers(1, 2**63 - 1)),
        device_serial=draw(st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)),
        kind=kind.value,
        measured_at=measured_at,
        measured_utc_offset_min=draw(st.none() | st.integers(-16 * 60, 16 * 60)),
        received_at=measured_at + draw(st.timedeltas(timedelta(0), timedelta(days=30))),
        **{**_EMPTY, **draw(_KIND_VALUES[kind])},
    )


@given(measurements())
def test_any_stored_reading_exports_valid_observations(reading: Measurement) -> None:
    found = observations(reading)
    with_pulse = reading.kind == "blood_pressure" and reading.pulse_bpm is not None
    assert len(found) == (2 if with_pulse else 1)
    offset = reading.measured_utc_offset_min
    # The device's clock where FHIR can write it (-14:00 to +14:00), else UTC.
    shown = offset if offset is not None and abs(offset) <= 14 * 60 else 0
    for observation in found:
        check_observation(observation)
        effective = datetime.fromisoformat(observation["effectiveDateTime"])
        assert effective == reading.measured_at
        assert effective.utcoffset() == timedelta(minutes=shown)
    values = {"8867-4": reading.pulse_bpm, "29463-7": reading.weight_kg,
              "41653-7": reading.glucose_mg_dl}  # fmt: skip
    for observation in found:
        if (code := _loinc(observation)) in values:
            expected = values[code]
            assert expected is not None
            # Rounded to how finely the unit is measured: a tenth of a kg, else the unit.
            tolerance = 0.05 if code == "29463-7" else 0.5
            assert abs(observation["valueQuantity"]["value"] - expected) <= tolerance + 1e-9
