"""Tenovi's measurement webhook (a cellular gateway that pushes over HTTPS). Pure.

One POST carries one measurement, or an array of simultaneous ones when the webhook is
configured with `post_as_array`. Each names its device by `hwi_device_id`, which is the
serial the device is registered under here. Values are decimal strings (or numbers):

- `blood_pressure`: value_1 systolic, value_2 diastolic, mmHg;
- `pulse`: value_1 beats/min (stored as a heart-rate reading);
- `weight`: value_1 in pounds;
- `glucose`: value_1 in mg/dL, `filter_params.meal_context` pre-prandial,
  post-prandial or fasting;
- `battery_percentage`: value_1 percent, a device status, not a reading.

`timestamp` is the device's time of measurement in UTC; `timezone_offset` the device's
offset in hours, kept so that "07:30 at home" stays 07:30. `estimated_timestamp` (Tenovi
estimated the time because the device clock could not be trusted) is kept in `original`.
Other metrics (spO2, temperature, ...) are not stored and go to the dead letter, saying so.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from rpm.devices.checks import (
    KG_PER_LB,
    TimeLimits,
    check_plausible,
    check_time,
    parse_timestamp,
)
from rpm.devices.codecs import parse_items, schema_rejection
from rpm.devices.model import (
    DeviceStatus,
    MealContext,
    Reading,
    ReadingKind,
    Reason,
    Rejection,
    Source,
)

TenoviItem = tuple[str | None, Reading | Rejection | DeviceStatus]


def _decimal(value: object) -> object:
    # Tenovi sends "128.00"; numbers are accepted too.
    return float(value) if isinstance(value, str) and value.strip() else value


Decimal = Annotated[float, BeforeValidator(_decimal), Field(allow_inf_nan=False)]

_MEAL = {
    "pre-prandial": MealContext.BEFORE_MEAL,
    "post-prandial": MealContext.AFTER_MEAL,
    "fasting": MealContext.FASTING,
}


class TenoviMeasurement(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    metric: str
    hwi_device_id: Annotated[str, Field(min_length=1, max_length=64)]
    value_1: Decimal
    value_2: Decimal | None = None
    timestamp: str
    timezone_offset: Annotated[float, Field(ge=-14, le=14)] | None = None
    estimated_timestamp: bool = False
    filter_params: dict[str, Any] | None = None


def decode_tenovi(
    payload: bytes, *, received_at: datetime, limits: TimeLimits | None = None
) -> list[TenoviItem]:
    limits = limits or TimeLimits()
    parsed = parse_items(payload)
    if isinstance(parsed, Rejection):
        return [(None, parsed)]
    items, _ = parsed
    return [_decode_item(item, received_at, limits) for item in items]


def _decode_item(item: object, received_at: datetime, limits: TimeLimits) -> TenoviItem:
    serial = item.get("hwi_device_id") if isinstance(item, dict) else None
    serial = serial if isinstance(serial, str) and serial else None
    try:
        measurement = TenoviMeasurement.model_validate(item)
    except ValidationError as exc:
        return serial, schema_rejection(exc)
    assert isinstance(item, dict)
    utc_time = parse_timestamp(measurement.timestamp, "timestamp")
    if isinstance(utc_time, Rejection):
        return serial, utc_time
    offset = timedelta(hours=measurement.timezone_offset or 0)
    measured_at = utc_time.astimezone(timezone(offset))
    if measurement.metric == "battery_percentage":
        battery = round(measurement.value_1)
        if not 0 <= battery <= 100:
            return serial, Rejection(Reason.SCHEMA, f"battery {battery}% is not 0 to 100")
        return serial, DeviceStatus(measured_at, battery, None, None)
    reading = _reading(measurement, measured_at, item)
    if isinstance(reading, Reading):
        reading = (
            check_time(measured_at, received_at, limits) or check_plausible(reading) or reading
        )
    return serial, reading


def _reading(
    measurement: TenoviMeasurement, measured_at: datetime, original: dict[str, Any]
) -> Reading | Rejection:
    common: dict[str, Any] = {
        "measured_at": measured_at,
        "source": Source.TENOVI,
        "original": original,
    }
    match measurement.metric:
        case "blood_pressure":
            if measurement.value_2 is None:
                return Rejection(Reason.SCHEMA, "blood_pressure needs value_2 (diastolic)")
            return Reading(
                ReadingKind.BLOOD_PRESSURE,
                systolic_mmhg=measurement.value_1,
                diastolic_mmhg=measurement.value_2,
                **common,
            )
        case "pulse":
            return Reading(ReadingKind.HEART_RATE, pulse_bpm=measurement.value_1, **common)
        case "weight":
            return Reading(
                ReadingKind.BODY_WEIGHT, weight_kg=measurement.value_1 * KG_PER_LB, **common
            )
        case "glucose" | "blood_glucose":
            meal = _MEAL.get(str((measurement.filter_params or {}).get("meal_context", "")))
            return Reading(
                ReadingKind.BLOOD_GLUCOSE,
                glucose_mg_dl=measurement.value_1,
                meal_context=meal,
                **common,
            )
    return Rejection(
        Reason.UNKNOWN_FORMAT,
        f"Tenovi metric {measurement.metric!r} is not one rpm stores (it stores "
        "blood_pressure, pulse, weight, glucose and battery_percentage)",
    )
