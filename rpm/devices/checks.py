"""Checks every codec applies: units, timestamps, physiological plausibility. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rpm.devices.model import Reading, Reason, Rejection

# The international avoirdupois pound is defined as exactly 0.45359237 kg.
KG_PER_LB = 0.45359237
# Glucose, C6H12O6, has a molar mass of 180.156 g/mol: 1 mmol/L = 18.0156 mg/dL.
MG_DL_PER_MMOL_L = 18.0156

# Mass units of Open mHealth's mass-unit-value-1.0 (UCUM codes plus common names).
KG_PER_MASS_UNIT = {
    "fg": 1e-18,
    "pg": 1e-15,
    "ng": 1e-12,
    "ug": 1e-9,
    "mg": 1e-6,
    "g": 1e-3,
    "kg": 1.0,
    "Metric Ton": 1000.0,
    "gr": 6.479891e-5,  # grain
    "oz": KG_PER_LB / 16,
    "lb": KG_PER_LB,
    "Ton": KG_PER_LB * 2000,  # US short ton
}
MG_DL_PER_GLUCOSE_UNIT = {"mg/dL": 1.0, "mmol/L": MG_DL_PER_MMOL_L}


# Wide human limits: values outside them are device or transmission errors, not
# patients. Deliberately far beyond clinical alert thresholds (those belong to care plans):
# the highest blood pressures recorded in people are near 370/360 mmHg during maximal
# exertion; adult resting readings above 300 systolic are not credible from a home cuff.
@dataclass(frozen=True)
class HumanRange:
    label: str
    unit: str
    low: float
    high: float


LIMITS = {
    "systolic_mmhg": HumanRange("systolic", "mmHg", 40.0, 300.0),
    "diastolic_mmhg": HumanRange("diastolic", "mmHg", 20.0, 200.0),
    "pulse_bpm": HumanRange("pulse", "beats/min", 20.0, 300.0),
    "weight_kg": HumanRange("weight", "kg", 2.0, 500.0),
    # Home meters read about 20-600 mg/dL ("LO"/"HI" outside); a margin for lab-grade ones.
    "glucose_mg_dl": HumanRange("glucose", "mg/dL", 10.0, 1000.0),
}
# Summaries of spread or totals are not physiological values; limits do not apply to them.
_STATISTICS_WITHOUT_LIMITS = frozenset({"standard deviation", "variance", "sum"})


@dataclass(frozen=True)
class TimeLimits:
    """How far from the receive time a measurement time may be."""

    # Device clocks drift; a little future is tolerated, more is a wrong clock.
    max_future: timedelta = timedelta(minutes=5)
    # A device whose clock was reset (to 2000-01-01, say) must not file readings in the
    # distant past. None accepts any age (e.g. importing history).
    max_age: timedelta | None = timedelta(days=365)


def parse_timestamp(value: str, field: str) -> datetime | Rejection:
    """An RFC 3339 timestamp with its UTC offset; a time without one is ambiguous."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return Rejection(
            Reason.BAD_TIMESTAMP,
            f"{field} {value!r} is not an RFC 3339 time such as 2026-11-24T07:30:00-05:00",
        )
    if parsed.tzinfo is None:
        return Rejection(
            Reason.BAD_TIMESTAMP,
            f"{field} {value!r} has no UTC offset, so the moment it names is unknown",
        )
    return parsed


def check_time(
    measured_at: datetime, received_at: datetime, limits: TimeLimits
) -> Rejection | None:
    # One subtraction: between times of different UTC offsets it is the costly part.
    ahead = measured_at - received_at
    if ahead > limits.max_future:
        return Rejection(
            Reason.FUTURE_TIMESTAMP,
            f"measured at {measured_at.isoformat()}, {_ago(ahead)} "
            f"after it was received: is the device clock right?",
        )
    if limits.max_age is not None and -ahead > limits.max_age:
        return Rejection(
            Reason.STALE_TIMESTAMP,
            f"measured at {measured_at.isoformat()}, more than {limits.max_age.days} days "
            "before it was received: is the device clock right?",
        )
    return None


def check_plausible(reading: Reading) -> Rejection | None:
    if reading.statistic in _STATISTICS_WITHOUT_LIMITS:
        return None
    for name, limit in LIMITS.items():
        value = getattr(reading, name)
        if value is not None and not limit.low <= value <= limit.high:
            return Rejection(
                Reason.IMPLAUSIBLE_VALUE,
                f"{limit.label} {value:g} {limit.unit} is outside the human range "
                f"{limit.low:g} to {limit.high:g} {limit.unit}",
            )
    if (
        reading.systolic_mmhg is not None
        and reading.diastolic_mmhg is not None
        and reading.statistic is None
        and reading.systolic_mmhg <= reading.diastolic_mmhg
    ):
        return Rejection(
            Reason.IMPLAUSIBLE_VALUE,
            f"systolic {reading.systolic_mmhg:g} mmHg is not above diastolic "
            f"{reading.diastolic_mmhg:g} mmHg",
        )
    return None


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} minutes" if minutes < 120 else f"{minutes // 60} hours"
