"""Readings as FHIR R4 Observations: category vital-signs, LOINC codes, UCUM units. Pure.

A stored reading becomes one Observation; a blood-pressure reading that carries a pulse
becomes two, the blood-pressure panel and a heart-rate Observation of its own, so that
whoever looks for heart rates (8867-4) finds the cuff's pulse beside the heart-rate
readings. Summaries (an Open mHealth weekly average, say) are not measurements and are
not exported: `rpm.fhir.repository` leaves them out, as the rules and the charts do.

An Observation's `id` is the reading's key in this rpm (kind, device, instant measured), so
that a read (`GET /fhir/Observation/<id>`) finds its reading by primary key. Its
`identifier` is a name-based UUID of the reading's identity (the device's serial, the
kind, the instant): the same in every export, from any rpm, so that a receiver can import
an export again without doubling anything.

A glucose reading's meal context is a component coded as the HL7 Personal Health Device
IG codes it (IEEE 11073-10101 MDC_CTXT_GLU_MEAL and its values).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from rpm.devices.model import MealContext, ReadingKind
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
# The short name of each kind in an Observation's id; a cuff's pulse has its own.
_ID_KIND = {
    ReadingKind.BLOOD_PRESSURE: "bp",
    ReadingKind.HEART_RATE: "hr",
    ReadingKind.BODY_WEIGHT: "wt",
    ReadingKind.BLOOD_GLUCOSE: "glu",
}
_PULSE_ID_KIND = "bp-pulse"
_KIND_OF_ID = {short: kind.value for kind, short in _ID_KIND.items()}
_OBSERVATION_ID = re.compile(r"(bp-pulse|bp|hr|wt|glu)-([1-9][0-9]{0,18})-(-?[0-9]{1,19})")
# IEEE 11073-10101 nomenclature, as the HL7 Personal Health Device IG writes it: the
# code is the partition (128, MDC_PART_PHD_DM) times 2**16 plus the term code.
MDC = "urn:iso:std:iso:11073:10101"
_MDC_MEAL = ("8417864", "MDC_CTXT_GLU_MEAL")
_MDC_MEAL_VALUES = {
    MealContext.FASTING: ("8417876", "MDC_CTXT_GLU_MEAL_FASTING"),
    MealContext.BEFORE_MEAL: ("8417868", "MDC_CTXT_GLU_MEAL_PREPRANDIAL"),
    MealContext.AFTER_MEAL: ("8417872", "MDC_CTXT_GLU_MEAL_POSTPRANDIAL"),
    MealContext.BEDTIME: ("8417908", "MDC_CTXT_GLU_MEAL_BEDTIME"),
    # "random": a measurement at no particular time, MDC's casual.
    MealContext.RANDOM: ("8417880", "MDC_CTXT_GLU_MEAL_CASUAL"),
}


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
# The kinds of reading whose Observations may have each code (a cuff's pulse: 8867-4).
KINDS_OF_CODE = {
    BLOOD_PRESSURE_PANEL.loinc: {ReadingKind.BLOOD_PRESSURE.value},
    HEART_RATE.loinc: {ReadingKind.HEART_RATE.value, ReadingKind.BLOOD_PRESSURE.value},
    BODY_WEIGHT.loinc: {ReadingKind.BODY_WEIGHT.value},
    CAPILLARY_GLUCOSE.loinc: {ReadingKind.BLOOD_GLUCOSE.value},
}


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
    meal_context: str | None = None


@dataclass(frozen=True)
class ObservationKey:
    """What an Observation's id names: its reading's primary key (device, kind, instant)
    and which of the reading's Observations it is (0: its own; 1: a cuff's pulse)."""

    device_id: int
    kind: str
    measured_at: datetime
    part: int


def observation_id(device_id: int, kind: str, measured_at: datetime, part: int) -> str:
    """`bp-45-1795521000000000`: the kind (`bp-pulse` for a cuff's pulse), the device and
    the instant measured in microseconds since 1970 (UTC): at most 46 of FHIR's 64."""
    short = _PULSE_ID_KIND if part else _ID_KIND[ReadingKind(kind)]
    return f"{short}-{device_id}-{epoch_micros(measured_at)}"


def epoch_micros(instant: datetime) -> int:
    """Microseconds since 1970 in UTC, exactly (a float's timestamp rounds)."""
    since = instant.astimezone(UTC) - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def observation_key(text: str) -> ObservationKey | None:
    """The key an id names; None: not an id rpm gives."""
    if (match := _OBSERVATION_ID.fullmatch(text)) is None:
        return None
    short, device, micros = match.groups()
    try:
        measured_at = _EPOCH + timedelta(microseconds=int(micros))
    except OverflowError:
        return None
    if short == _PULSE_ID_KIND:
        return ObservationKey(int(device), ReadingKind.BLOOD_PRESSURE.value, measured_at, 1)
    return ObservationKey(int(device), _KIND_OF_ID[short], measured_at, 0)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
            glucose: dict[str, Any] = {"valueQuantity": _quantity(reading.glucose_mg_dl, MG_PER_DL)}
            if reading.meal_context is not None:
                glucose["component"] = [_meal_component(MealContext(reading.meal_context))]
            return [_observation(reading, CAPILLARY_GLUCOSE, glucose)]
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
    identity = uuid.uuid5(_ID_NAMESPACE, name)
    local_id = observation_id(reading.device_id, reading.kind, reading.measured_at, int(of_pulse))
    return {
        "resourceType": "Observation",
        "id": local_id,
        # A reading is never changed once stored (a re-sent one is dropped): one version.
        "meta": {"versionId": "1", "lastUpdated": reading.received_at.astimezone(UTC).isoformat()},
        "identifier": [{"system": URI_IDENTIFIER, "value": identity.urn}],
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


def _meal_component(meal: MealContext) -> dict[str, Any]:
    code, name = _MDC_MEAL_VALUES[meal]
    return {
        "code": {"coding": [{"system": MDC, "code": _MDC_MEAL[0], "display": _MDC_MEAL[1]}],
                 "text": "Meal context"},
        "valueCodeableConcept": {"coding": [{"system": MDC, "code": code, "display": name}],
                                 "text": meal.value.replace("_", " ")},
    }  # fmt: skip


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
