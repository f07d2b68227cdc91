"""Payload codecs: the bytes a device sent become normalized readings or rejections. Pure.

One message carries one reading or an array of them (a device that was offline uploads
its backlog at once); each item is decoded on its own, so one bad item does not cost
the good ones. Formats, told apart by their shape:

- native JSON: `{"kind": "blood_pressure", "measured_at": ..., "systolic": ...}`
  (docs/device-contract.md);
- Open mHealth: a data point (`header` + `body`) or a bare body of blood-pressure 4.0,
  body-weight 3.0, blood-glucose 4.0 or heart-rate 2.0.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired

import pydantic_core
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# pydantic reads TypedDicts from typing_extensions only, before Python 3.12.
from typing_extensions import TypedDict

from rpm.devices.checks import (
    KG_PER_MASS_UNIT,
    MG_DL_PER_GLUCOSE_UNIT,
    TimeLimits,
    check_plausible,
    check_time,
    parse_timestamp,
)
from rpm.devices.model import (
    Decoded,
    DeviceStatus,
    MealContext,
    Reading,
    ReadingKind,
    Reason,
    Rejection,
    Source,
)

MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_READINGS_PER_MESSAGE = 10_000

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# --- native -------------------------------------------------------------------------


# TypedDicts, not models: pydantic-core checks them by the same rules and with the same
# errors, but returns a plain dict, half the cost of a model instance (docs/benchmarks.md).
# Absent optional keys stay absent: read them with `.get`.
class _NativeBase(TypedDict):
    measured_at: str
    id: NotRequired[Annotated[str, Field(min_length=1, max_length=128)] | None]


class NativeBloodPressure(_NativeBase):
    kind: Literal["blood_pressure"]
    systolic: Number
    diastolic: Number
    pulse: NotRequired[Number | None]
    unit: Literal["mmHg"]


class NativeBodyWeight(_NativeBase):
    kind: Literal["body_weight"]
    weight: Number
    unit: Literal["kg", "lb"]


class NativeBloodGlucose(_NativeBase):
    kind: Literal["blood_glucose"]
    glucose: Number
    unit: Literal["mg/dL", "mmol/L"]
    meal: NotRequired[MealContext | None]


NativeReading = NativeBloodPressure | NativeBodyWeight | NativeBloodGlucose
# The adapter's validator itself: `TypeAdapter.validate_python` adds a call and eight
# keyword arguments to every reading.
_validate_native: Callable[[object], NativeReading] = TypeAdapter(
    Annotated[NativeReading, Field(discriminator="kind")]
).validator.validate_python


def _from_native(item: dict[str, Any]) -> Reading | Rejection:
    native = _validate_native(item)
    measured_at = parse_timestamp(native["measured_at"], "measured_at")
    if isinstance(measured_at, Rejection):
        return measured_at
    # The fields every reading has go positionally, not as a shared `**dict`: unpacking
    # one per reading cost about 0.4 µs of the ingest hot path.
    if native["kind"] == "blood_pressure":
        return Reading(
            ReadingKind.BLOOD_PRESSURE,
            measured_at,
            Source.NATIVE,
            item,
            systolic_mmhg=native["systolic"],
            diastolic_mmhg=native["diastolic"],
            pulse_bpm=native.get("pulse"),
            device_reading_id=native.get("id"),
        )
    if native["kind"] == "body_weight":
        return Reading(
            ReadingKind.BODY_WEIGHT,
            measured_at,
            Source.NATIVE,
            item,
            weight_kg=native["weight"] * KG_PER_MASS_UNIT[native["unit"]],
            device_reading_id=native.get("id"),
        )
    return Reading(
        ReadingKind.BLOOD_GLUCOSE,
        measured_at,
        Source.NATIVE,
        item,
        glucose_mg_dl=native["glucose"] * MG_DL_PER_GLUCOSE_UNIT[native["unit"]],
        meal_context=native.get("meal"),
        device_reading_id=native.get("id"),
    )


# --- Open mHealth ---------------------------------------------------------------------


class UnitValue(_Strict):
    value: Number
    unit: str


class TimeInterval(_Strict):
    start_date_time: str | None = None
    end_date_time: str | None = None
    duration: UnitValue | None = None
    date: str | None = None
    part_of_day: str | None = None


class TimeFrame(_Strict):
    date_time: str | None = None
    time_interval: TimeInterval | None = None


def _vocabulary(*values: str) -> AfterValidator:
    """A check for a string from an Open mHealth value set, giving its canonical spelling.
    Published
    schemas spell values with spaces ("at rest"), IEEE 1752.1 and the conformance data
    without ("atrest"): both are accepted."""
    known = {v.replace(" ", "").lower(): v for v in values}

    def check(value: str) -> str:
        canonical = known.get(value.replace(" ", "").lower())
        if canonical is None:
            raise ValueError(f"{value!r} is not one of: {', '.join(values)}")
        return canonical

    return AfterValidator(check)


_STATISTIC = _vocabulary(
    "average", "maximum", "minimum", "standard deviation", "variance", "sum", "median"
)
_POSTURE = _vocabulary("sitting", "lying down", "standing", "semi-recumbent")
_LOCATION = _vocabulary(
    "left ankle", "right ankle", "left hip", "right hip", "left thigh", "right thigh",
    "left thorax", "middle left thorax", "left upper arm", "right upper arm",
    "left wrist", "right wrist",
)  # fmt: skip
_ACTIVITY = _vocabulary("at rest", "active", "before exercise", "after exercise", "during exercise")
_SLEEP = _vocabulary("before sleeping", "during sleep", "on waking")
_SPECIMEN = _vocabulary(
    "interstitial fluid", "capillary blood", "plasma", "serum", "tears", "whole blood"
)
_MEAL = _vocabulary(
    "fasting", "not fasting", "before meal", "after meal", "before breakfast", "after breakfast",
    "before lunch", "after lunch", "before dinner", "after dinner", "2 hours postprandial",
)  # fmt: skip
# Open mHealth's meal relationships, folded into the five the care plans distinguish.
_MEAL_CONTEXT = {
    "fasting": MealContext.FASTING,
    "not fasting": MealContext.RANDOM,
    "2 hours postprandial": MealContext.AFTER_MEAL,
} | {
    f"{when} {meal}": MealContext.BEFORE_MEAL if when == "before" else MealContext.AFTER_MEAL
    for when in ("before", "after")
    for meal in ("meal", "breakfast", "lunch", "dinner")
}

_SECONDS_PER_DURATION_UNIT = {"sec": 1, "min": 60, "h": 3600, "d": 86400, "wk": 604800}


class _OmhBody(_Strict):
    effective_time_frame: TimeFrame
    descriptive_statistic: Annotated[str, _STATISTIC] | None = None


def _unit(*allowed: str) -> AfterValidator:
    """A check that a unit-value's unit is one of `allowed`."""

    def check(value: UnitValue) -> UnitValue:
        if value.unit not in allowed:
            raise ValueError(f"unit {value.unit!r} is not one of: {', '.join(allowed)}")
        return value

    return AfterValidator(check)


class OmhBloodPressure(_OmhBody):
    systolic_blood_pressure: Annotated[UnitValue, _unit("mmHg")]
    diastolic_blood_pressure: Annotated[UnitValue, _unit("mmHg")]
    body_posture: Annotated[str, _POSTURE] | None = None
    measurement_location: Annotated[str, _LOCATION] | None = None
    temporal_relationship_to_physical_activity: Annotated[str, _ACTIVITY] | None = None


class OmhBodyWeight(_OmhBody):
    body_weight: Annotated[UnitValue, _unit(*KG_PER_MASS_UNIT)]


class OmhBloodGlucose(_OmhBody):
    blood_glucose: Annotated[UnitValue, _unit(*MG_DL_PER_GLUCOSE_UNIT)]
    specimen_source: Annotated[str, _SPECIMEN] | None = None
    temporal_relationship_to_meal: Annotated[str, _MEAL] | None = None
    temporal_relationship_to_sleep: Annotated[str, _SLEEP] | None = None


class OmhHeartRate(_OmhBody):
    heart_rate: Annotated[UnitValue, _unit("beats/min")]
    temporal_relationship_to_physical_activity: Annotated[str, _ACTIVITY] | None = None
    temporal_relationship_to_sleep: Annotated[str, _SLEEP] | None = None


# Schema name -> (model, major version we accept, the body key that identifies a bare body)
_OMH_SCHEMAS: dict[str, tuple[type[_OmhBody], int, str]] = {
    "blood-pressure": (OmhBloodPressure, 4, "systolic_blood_pressure"),
    "body-weight": (OmhBodyWeight, 3, "body_weight"),
    "blood-glucose": (OmhBloodGlucose, 4, "blood_glucose"),
    "heart-rate": (OmhHeartRate, 2, "heart_rate"),
}


class OmhHeader(_Strict):
    id: Annotated[str, Field(min_length=1, max_length=128)]
    creation_date_time: str
    schema_id: dict[str, str]


def _from_omh(item: dict[str, Any]) -> Reading | Rejection:
    header: OmhHeader | None = None
    body: object = item
    if "header" in item or "body" in item:
        header = OmhHeader.model_validate(item.get("header"))
        body = item.get("body")
        name = header.schema_id.get("name", "")
        version = header.schema_id.get("version", "")
        if name not in _OMH_SCHEMAS:
            return Rejection(
                Reason.UNKNOWN_FORMAT,
                f"Open mHealth schema {name!r} is not one rpm reads "
                f"(it reads {', '.join(_OMH_SCHEMAS)})",
            )
        model, major, _ = _OMH_SCHEMAS[name]
        if version.split(".")[0] != str(major):
            return Rejection(
                Reason.UNKNOWN_FORMAT,
                f"Open mHealth {name} version {version!r} is not supported (expected {major}.x)",
            )
    else:
        model = next(m for m, _, key in _OMH_SCHEMAS.values() if key in item)
    parsed = model.model_validate(body)
    when = _effective_time(parsed.effective_time_frame)
    if isinstance(when, Rejection):
        return when
    common: dict[str, Any] = {
        "measured_at": when,
        "source": Source.OMH,
        "original": item,
        "statistic": parsed.descriptive_statistic,
        "device_reading_id": header.id if header else None,
    }
    match parsed:
        case OmhBloodPressure():
            return Reading(
                ReadingKind.BLOOD_PRESSURE,
                systolic_mmhg=parsed.systolic_blood_pressure.value,
                diastolic_mmhg=parsed.diastolic_blood_pressure.value,
                **common,
            )
        case OmhBodyWeight():
            weight = parsed.body_weight
            return Reading(
                ReadingKind.BODY_WEIGHT,
                weight_kg=weight.value * KG_PER_MASS_UNIT[weight.unit],
                **common,
            )
        case OmhBloodGlucose():
            glucose = parsed.blood_glucose
            meal = _MEAL_CONTEXT.get(parsed.temporal_relationship_to_meal or "")
            if meal is None and parsed.temporal_relationship_to_sleep == "before sleeping":
                meal = MealContext.BEDTIME
            return Reading(
                ReadingKind.BLOOD_GLUCOSE,
                glucose_mg_dl=glucose.value * MG_DL_PER_GLUCOSE_UNIT[glucose.unit],
                meal_context=meal,
                **common,
            )
        case OmhHeartRate():
            return Reading(ReadingKind.HEART_RATE, pulse_bpm=parsed.heart_rate.value, **common)
    raise AssertionError(f"unhandled Open mHealth model {model.__name__}")


def _effective_time(frame: TimeFrame) -> datetime | Rejection:
    """The moment a reading stands for: its time, or the end of its interval."""
    if (frame.date_time is None) == (frame.time_interval is None):
        return Rejection(
            Reason.SCHEMA,
            "effective_time_frame needs exactly one of date_time and time_interval",
        )
    if frame.date_time is not None:
        return parse_timestamp(frame.date_time, "effective_time_frame.date_time")
    interval = frame.time_interval
    assert interval is not None
    field = "effective_time_frame.time_interval"
    if interval.end_date_time is not None and (
        interval.start_date_time is not None or interval.duration is not None
    ):
        end = parse_timestamp(interval.end_date_time, f"{field}.end_date_time")
        if isinstance(end, Rejection) or interval.start_date_time is None:
            return end
        start = parse_timestamp(interval.start_date_time, f"{field}.start_date_time")
        if isinstance(start, Rejection):
            return start
        if start > end:
            return Rejection(Reason.BAD_TIMESTAMP, f"{field} ends before it starts")
        return end
    if interval.start_date_time is not None and interval.duration is not None:
        start = parse_timestamp(interval.start_date_time, f"{field}.start_date_time")
        seconds = _SECONDS_PER_DURATION_UNIT.get(interval.duration.unit)
        if isinstance(start, Rejection):
            return start
        if seconds is None:
            return Rejection(
                Reason.UNIT,
                f"{field}.duration unit {interval.duration.unit!r} is not one of: "
                + ", ".join(_SECONDS_PER_DURATION_UNIT),
            )
        return start + timedelta(seconds=interval.duration.value * seconds)
    if interval.date is not None:
        return Rejection(
            Reason.BAD_TIMESTAMP,
            f"{field} given as a date and part of day names no moment precise enough to store",
        )
    return Rejection(
        Reason.SCHEMA,
        f"{field} needs start_date_time and end_date_time, or one of them and a duration",
    )


# --- dispatch ---------------------------------------------------------------------------


def parse_items(payload: bytes) -> tuple[list[object], bool] | Rejection:
    """The items of a message: one JSON object, or an array of them (then True).

    Shared by every format, so that size limits and JSON errors read the same everywhere.
    """
    if not payload.strip():
        return Rejection(Reason.EMPTY_PAYLOAD, "the message is empty")
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection(
            Reason.PAYLOAD_TOO_LARGE,
            f"{len(payload)} bytes; a message may carry at most {MAX_PAYLOAD_BYTES}",
        )
    try:
        document = pydantic_core.from_json(payload)
    except ValueError as exc:
        return Rejection(Reason.MALFORMED_JSON, f"not valid JSON: {exc}")
    if not isinstance(document, list):
        return [document], False
    if not document:
        return Rejection(Reason.EMPTY_PAYLOAD, "the array holds no readings")
    if len(document) > MAX_READINGS_PER_MESSAGE:
        return Rejection(
            Reason.PAYLOAD_TOO_LARGE,
            f"{len(document)} readings; a message may carry at most {MAX_READINGS_PER_MESSAGE}",
        )
    return document, True


def decode_readings(
    payload: bytes, *, received_at: datetime, limits: TimeLimits | None = None
) -> list[Decoded]:
    """Every item of a readings message, decoded and checked, in order."""
    limits = limits or TimeLimits()
    parsed = parse_items(payload)
    if isinstance(parsed, Rejection):
        return [parsed]
    items, is_array = parsed
    return [
        _decode_item(item, i if is_array else None, received_at, limits)
        for i, item in enumerate(items)
    ]


def _decode_item(
    item: object, index: int | None, received_at: datetime, limits: TimeLimits
) -> Decoded:
    outcome = _decode_format(item)
    if isinstance(outcome, Reading):
        outcome = check_time(outcome.measured_at, received_at, limits) or (
            check_plausible(outcome) or outcome
        )
    if isinstance(outcome, Rejection) and index is not None:
        return Rejection(outcome.reason, outcome.detail, index)
    return outcome


def _decode_format(item: object) -> Reading | Rejection:
    if not isinstance(item, dict):
        return Rejection(
            Reason.UNKNOWN_FORMAT,
            f"a reading must be a JSON object, not {type(item).__name__}",
        )
    try:
        if "kind" in item:
            return _from_native(item)
        if (
            "header" in item
            or "body" in item
            or any(key in item for _, _, key in _OMH_SCHEMAS.values())
        ):
            return _from_omh(item)
    except ValidationError as exc:
        return schema_rejection(exc)
    return Rejection(
        Reason.UNKNOWN_FORMAT,
        'neither a native reading (with "kind") nor an Open mHealth blood-pressure, '
        "body-weight, blood-glucose or heart-rate document",
    )


def schema_rejection(exc: ValidationError) -> Rejection:
    problems = []
    reason = Reason.SCHEMA
    for error in exc.errors(include_url=False)[:5]:
        location = ".".join(str(part) for part in error["loc"]) or "document"
        if error["type"] == "union_tag_invalid":
            location = "kind"
        message = error["msg"].removeprefix("Value error, ")
        if location.endswith("unit") or message.startswith("unit "):
            reason = Reason.UNIT
        problems.append(f"{location}: {message}")
    return Rejection(reason, "; ".join(problems))


# --- device status ----------------------------------------------------------------------


class StatusPayload(_Strict):
    """`rpm/v1/devices/{serial}/status`: what a device says of itself."""

    battery: Annotated[int, Field(strict=True, ge=0, le=100)] | None = None
    signal_dbm: Annotated[int, Field(strict=True, ge=-150, le=0)] | None = None
    firmware: Annotated[str, Field(max_length=64)] | None = None
    reported_at: str | None = None


def decode_status(payload: bytes) -> DeviceStatus | Rejection:
    try:
        status = StatusPayload.model_validate_json(payload)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            return Rejection(Reason.MALFORMED_JSON, "a status message must be a JSON object")
        return schema_rejection(exc)
    reported_at = None
    if status.reported_at is not None:
        parsed = parse_timestamp(status.reported_at, "reported_at")
        if isinstance(parsed, Rejection):
            return parsed
        reported_at = parsed
    return DeviceStatus(reported_at, status.battery, status.signal_dbm, status.firmware)
