"""Readings as FHIR R4 Observations: category vital-signs, LOINC codes, UCUM units. Pure.

A stored reading becomes one Observation; a blood-pressure reading that carries a pulse
becomes two, the blood-pressure panel and a heart-rate Observation of its own, so that
whoever looks for heart rates (8867-4) finds the cuff's pulse beside the heart-rate
readings. Summaries (an Open mHealth weekly average, say) are not measurements and are
not exported: `rpm.fhir.repository` leaves them out, as the rules and the charts do.

An Observation's id is a name-based UUID of the reading's identity (the device's serial,
the kind, the instant measured): the same reading has the same id in every export, from
any rpm, so that a receiver can import an export again without doubling anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from rpm.devices.model import ReadingKind
from rpm.rules.plan import rounded

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
# FHIR's way to say that an identifier's value is a URI (here a urn:uuid).
URI_IDENTIFIER = "urn:ietf:rfc:3986"
VITAL_SIGNS = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
            "display": "Vital Signs",
        }
    ],
    "text": "Vital Signs",
}
# The namespace of the Observations' name-based UUIDs. Fixed for good: changing it would
# give every reading a new id, and receivers would import each one again.
_ID_NAMESPACE = uuid.UUID("a2f07306-40d0-46e5-8a2c-79262386ac7b")
# FHIR's dateTime takes offsets from -14:00 to +14:00 only; a device clock set beyond
# them (PostgreSQL keeps up to 15:59) is written in UTC instead.
_MAX_OFFSET_MIN = 14 * 60


@dataclass(frozen=True)
class Code:
    """A LOINC code and its long common name."""

    loinc: str
    display: str

    def concept(self) -> dict[str, Any]:
        return {
            "coding": [{"system": LOINC, "code": self.loinc, "display": self.display}],
            "text": self.display,
        }


BLOOD_PRESSURE_PANEL = Code("85354-9", "Blood pressure panel with all children optional")
SYSTOLIC = Code("8480-6", "Systolic blood pressure")
DIASTOLIC = Code("8462-4", "Diastolic blood pressure")
HEART_RATE = Code("8867-4", "Heart rate")
BODY_WEIGHT = Code("29463-7", "Body weight")
CAPILLARY_GLUCOSE = Code("41653-7", "Glucose [Mass/volume] in Capillary blood by Glucometer")


@dataclass(frozen=True)
class Unit:
    """A UCUM unit, as FHIR's vital-signs profiles write it."""

    ucum: str
    display: str
    # Its name in care plans, whose `rounded` knows how finely it is measured.
    plan_name: str


MM_HG = Unit("mm[Hg]", "mmHg", "mmHg")
PER_MINUTE = Unit("/min", "beats/minute", "/min")
KILOGRAM = Unit("kg", "kg", "kg")
MG_PER_DL = Unit("mg/dL", "mg/dL", "mg/dL")


@dataclass(frozen=True)
class Measurement:
    """A stored single reading (never a summary) in the store's canonical units (mmHg,
    beats/min, kg, mg/dL), with its patient and device: what its Observations are made of."""

    patient_id: int
    device_id: int
    device_serial: str
    kind: str
    measured_at: datetime
    # The device's own UTC offset when it measured, in minutes; None: not known.
    measured_utc_offset_min: int | None
    received_at: datetime
    systolic_mmhg: float | None
    diastolic_mmhg: float | None
    pulse_bpm: float | None
    weight_kg: float | None
    glucose_mg_dl: float | None


@dataclass(frozen=True)
class Position:
    """Where an Observation stands in the export order: its reading's key (patient,
    measured_at, device, kind, the repository's order) and which of the reading's
    Observations it is (0: its own; 1: a blood-pressure reading's pulse)."""

    patient_id: int
    measured_at: datetime
    device_id: int
    kind: str
    part: int


def observations(reading: Measurement) -> list[dict[str, Any]]:
    """The reading's Observations: one, or a blood-pressure panel then its pulse."""
    match reading.kind:
        case ReadingKind.BLOOD_PRESSURE:
            components = [
                {"code": code.concept(), "valueQuantity": _quantity(value, MM_HG)}
                for code, value in (
                    (SYSTOLIC, reading.systolic_mmhg),
                    (DIASTOLIC, reading.diastolic_mmhg),
                )
            ]
            panel = _observation(reading, BLOOD_PRESSURE_PANEL, {"component": components})
            if reading.pulse_bpm is None:
                return [panel]
            pulse = _quantity(reading.pulse_bpm, PER_MINUTE)
            return [
                panel,
                _observation(reading, HEART_RATE, {"valueQuantity": pulse}, of_pulse=True),
            ]
        case ReadingKind.HEART_RATE:
            value = _quantity(reading.pulse_bpm, PER_MINUTE)
            return [_observation(reading, HEART_RATE, {"valueQuantity": value})]
        case ReadingKind.BODY_WEIGHT:
            value = _quantity(reading.weight_kg, KILOGRAM)
            return [_observation(reading, BODY_WEIGHT, {"valueQuantity": value})]
        case ReadingKind.BLOOD_GLUCOSE:
            value = _quantity(reading.glucose_mg_dl, MG_PER_DL)
            return [_observation(reading, CAPILLARY_GLUCOSE, {"valueQuantity": value})]
    raise ValueError(f"a reading of kind {reading.kind!r} has no Observation")


def observations_after(
    readings: Iterable[Measurement], after: Position | None
) -> Iterator[tuple[Position, dict[str, Any]]]:
    """Each reading's Observations with their positions, leaving out those at or before
    `after`. The readings come in the repository's order from `after`'s reading on, that
    reading included (a page may have ended between a panel and its pulse)."""
    for reading in readings:
        key = (reading.patient_id, reading.measured_at, reading.device_id, reading.kind)
        for part, resource in enumerate(observations(reading)):
            position = Position(*key, part)
            if after is not None and key == _reading_key(after) and part <= after.part:
                continue
            yield position, resource


def _reading_key(position: Position) -> tuple[int, datetime, int, str]:
    return position.patient_id, position.measured_at, position.device_id, position.kind


def _observation(
    reading: Measurement, code: Code, value: dict[str, Any], *, of_pulse: bool = False
) -> dict[str, Any]:
    """One Observation of the reading (`of_pulse`: a blood-pressure reading's pulse)."""
    measured = reading.measured_at.astimezone(UTC).isoformat()
    name = f"{reading.device_serial}|{reading.kind}|{measured}" + ("|pulse" if of_pulse else "")
    observation_id = uuid.uuid5(_ID_NAMESPACE, name)
    return {
        "resourceType": "Observation",
        "id": str(observation_id),
        "identifier": [{"system": URI_IDENTIFIER, "value": observation_id.urn}],
        "status": "final",
        "category": [VITAL_SIGNS],
        "code": code.concept(),
        "subject": {"reference": f"Patient/{reading.patient_id}"},
        "effectiveDateTime": effective_date_time(reading),
        "issued": reading.received_at.astimezone(UTC).isoformat(),
        "device": {"reference": f"Device/{reading.device_id}", "display": reading.device_serial},
        **value,
    }


def effective_date_time(reading: Measurement) -> str:
    """When it was measured, on the device's own clock where known ("07:30 at home"
    stays 07:30-05:00), else in UTC."""
    offset = reading.measured_utc_offset_min
    if offset is None or abs(offset) > _MAX_OFFSET_MIN:
        return reading.measured_at.astimezone(UTC).isoformat()
    return reading.measured_at.astimezone(timezone(timedelta(minutes=offset))).isoformat()


def _quantity(value: float | None, unit: Unit) -> dict[str, Any]:
    if value is None:  # the store's CHECK constraint keeps each kind's values present
        raise ValueError(f"a reading without its value in {unit.display}")
    # As finely as it is measured: the store keeps some values as float4, whose noise
    # (97.28424072265625 mg/dL) would claim a precision no meter has.
    text = rounded(value, unit.plan_name)
    return {
        "value": float(text) if "." in text else int(text),
        "unit": unit.display,
        "system": UCUM,
        "code": unit.ucum,
    }
