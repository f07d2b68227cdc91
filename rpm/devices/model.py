"""Device and reading value objects shared by the codecs, the pipeline and the store.

Pure: standard library only. Values are in canonical units, named in the field
(`weight_kg`, `glucose_mg_dl`); `original` keeps what the device sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class DeviceKind(StrEnum):
    BLOOD_PRESSURE_CUFF = "blood_pressure_cuff"
    WEIGHT_SCALE = "weight_scale"
    GLUCOMETER = "glucometer"


class ReadingKind(StrEnum):
    BLOOD_PRESSURE = "blood_pressure"
    BODY_WEIGHT = "body_weight"
    BLOOD_GLUCOSE = "blood_glucose"
    HEART_RATE = "heart_rate"


# What each kind of device can measure: anything else on its topic is a mismatch.
MEASURES: dict[DeviceKind, frozenset[ReadingKind]] = {
    DeviceKind.BLOOD_PRESSURE_CUFF: frozenset({ReadingKind.BLOOD_PRESSURE, ReadingKind.HEART_RATE}),
    DeviceKind.WEIGHT_SCALE: frozenset({ReadingKind.BODY_WEIGHT}),
    DeviceKind.GLUCOMETER: frozenset({ReadingKind.BLOOD_GLUCOSE}),
}


class MealContext(StrEnum):
    FASTING = "fasting"
    BEFORE_MEAL = "before_meal"
    AFTER_MEAL = "after_meal"
    BEDTIME = "bedtime"
    RANDOM = "random"


class Source(StrEnum):
    NATIVE = "native"
    OMH = "omh"
    TENOVI = "tenovi"


class Reason(StrEnum):
    """Why a message, or one reading in it, was not stored: the dead letter's reason code."""

    EMPTY_PAYLOAD = "empty_payload"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    MALFORMED_JSON = "malformed_json"
    UNKNOWN_FORMAT = "unknown_format"
    SCHEMA = "schema"
    UNIT = "unit"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    IMPLAUSIBLE_VALUE = "implausible_value"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_DEVICE = "unknown_device"
    INACTIVE_DEVICE = "inactive_device"
    UNASSIGNED_DEVICE = "unassigned_device"
    KIND_MISMATCH = "kind_mismatch"


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str
    # Position in an array payload (a device's uploaded backlog); None for the whole message.
    index: int | None = None

    def describe(self) -> str:
        where = f"reading [{self.index}]: " if self.index is not None else ""
        return f"{where}{self.reason.value}: {self.detail}"


_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement event, normalized, not yet tied to a device or a patient."""

    kind: ReadingKind
    measured_at: datetime  # timezone-aware, as the device stamped it
    source: Source
    original: dict[str, object] = field(compare=False)
    systolic_mmhg: float | None = None
    diastolic_mmhg: float | None = None
    pulse_bpm: float | None = None
    weight_kg: float | None = None
    glucose_mg_dl: float | None = None
    meal_context: MealContext | None = None
    # None for a single measurement; an Open mHealth descriptive statistic for a summary.
    statistic: str | None = None
    device_reading_id: str | None = None

    @property
    def utc_offset_min(self) -> int:
        offset = self.measured_at.utcoffset()
        return 0 if offset is None else offset // _MINUTE


Decoded = Reading | Rejection


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device's report of itself on its status topic."""

    reported_at: datetime | None
    battery_percent: int | None
    signal_dbm: int | None
    firmware: str | None
