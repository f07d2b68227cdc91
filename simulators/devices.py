"""Simulated devices: how measurements become messages on the wire. Pure.

A device sends each measurement shortly after it is taken, in its own payload format,
unless it is offline: then it buffers and uploads its backlog as one array when it is
back. Like real devices, some send twice, some have a skewed clock, a few garble a
payload, and their batteries run down (reported on the status topic).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np

from simulators.physiology import Measure, Measurement

# The simulators stand for devices and talk to rpm only over the wire, so they keep their
# own unit factors rather than import rpm's (rpm.devices.checks).
KG_PER_LB = 0.45359237
MG_DL_PER_MMOL_L = 18.0156
TENOVI_TOPIC = "webhook/tenovi"


class DeviceKind(StrEnum):
    BLOOD_PRESSURE_CUFF = "blood_pressure_cuff"
    WEIGHT_SCALE = "weight_scale"
    GLUCOMETER = "glucometer"


MEASURE_OF = {
    DeviceKind.BLOOD_PRESSURE_CUFF: Measure.BLOOD_PRESSURE,
    DeviceKind.WEIGHT_SCALE: Measure.BODY_WEIGHT,
    DeviceKind.GLUCOMETER: Measure.BLOOD_GLUCOSE,
}


class PayloadFormat(StrEnum):
    NATIVE = "native"  # rpm's own JSON over MQTT
    OMH = "omh"  # Open mHealth data points over MQTT
    TENOVI = "tenovi"  # Tenovi's webhook over HTTP


@dataclass(frozen=True)
class Behaviour:
    offline_per_day: float = 0.03  # chance that a day starts an offline spell
    offline_hours: tuple[float, float] = (6.0, 48.0)
    duplicate: float = 0.01  # chance a message is sent twice
    clock_skew_s: float = 0.0  # the device's clock minus the true time
    malformed: float = 0.0  # chance a payload is garbled in transit
    battery_start: float = 100.0
    battery_per_day: float = 0.5
    weight_unit: Literal["lb", "kg"] = "lb"
    glucose_unit: Literal["mg/dL", "mmol/L"] = "mg/dL"


@dataclass(frozen=True)
class Message:
    send_at: datetime
    topic: str  # the MQTT topic, or TENOVI_TOPIC for the HTTP webhook
    payload: bytes
    serial: str
    readings: int  # how many readings rpm should store from it (0 for status)
    # What kind of message: "reading", "backlog", "duplicate", "malformed" or "status".
    note: str = "reading"


def device_messages(
    serial: str,
    payload_format: PayloadFormat,
    taken: list[Measurement],
    behaviour: Behaviour,
    time_zone: str,
    start: datetime,
    days: int,
    rng: np.random.Generator,
) -> list[Message]:
    """Every message the device sends over the simulation, in sending order."""
    spells = _offline_spells(behaviour, start, days, rng)
    topic = (
        TENOVI_TOPIC
        if payload_format == PayloadFormat.TENOVI
        else f"rpm/v1/devices/{serial}/readings"
    )
    # Group what is measured during one offline spell into one upload at its end.
    uploads: dict[datetime, list[Measurement]] = {}
    for measurement in taken:
        spell_end = next((end for begin, end in spells if begin <= measurement.at < end), None)
        send_at = spell_end or measurement.at + timedelta(seconds=float(rng.uniform(2, 20)))
        uploads.setdefault(send_at, []).append(measurement)
    sent: list[Message] = []
    for send_at, carried in uploads.items():
        documents = _documents(
            payload_format, serial, carried, behaviour, ZoneInfo(time_zone), send_at, rng
        )
        payload = _json(documents[0] if len(documents) == 1 else documents)
        note = "backlog" if len(carried) > 1 else "reading"
        sent += _misbehave(
            Message(send_at, topic, payload, serial, len(documents), note), behaviour, rng
        )
    if payload_format != PayloadFormat.TENOVI:
        sent += _statuses(serial, behaviour, start, days, rng)
    return sorted(sent, key=lambda m: m.send_at)


def _offline_spells(
    behaviour: Behaviour, start: datetime, days: int, rng: np.random.Generator
) -> list[tuple[datetime, datetime]]:
    spells = []
    for day in range(days):
        if rng.random() < behaviour.offline_per_day:
            begin = start + timedelta(days=day, hours=float(rng.uniform(0, 24)))
            hours = float(rng.uniform(*behaviour.offline_hours))
            spells.append((begin, begin + timedelta(hours=hours)))
    return spells


def _misbehave(message: Message, behaviour: Behaviour, rng: np.random.Generator) -> list[Message]:
    if rng.random() < behaviour.malformed:
        cut = int(rng.integers(1, max(2, len(message.payload) - 1)))
        return [
            Message(
                message.send_at,
                message.topic,
                message.payload[:cut],
                message.serial,
                0,
                "malformed",
            )
        ]
    if rng.random() < behaviour.duplicate:
        again = message.send_at + timedelta(seconds=float(rng.uniform(1, 120)))
        duplicate = replace(message, send_at=again, note="duplicate")
        return [message, duplicate]
    return [message]


def _statuses(
    serial: str, behaviour: Behaviour, start: datetime, days: int, rng: np.random.Generator
) -> list[Message]:
    """A status report every day at noon UTC: battery, signal and firmware."""
    statuses = []
    for day in range(days):
        at = start + timedelta(days=day, hours=12)
        battery = max(0.0, behaviour.battery_start - behaviour.battery_per_day * day)
        body = {
            "battery": round(battery),
            "signal_dbm": int(rng.integers(-105, -55)),
            "firmware": "1.4.2",
            "reported_at": _iso(at, UTC),
        }
        statuses.append(
            Message(at, f"rpm/v1/devices/{serial}/status", _json(body), serial, 0, "status")
        )
    return statuses


def _iso(moment: datetime, zone: tzinfo | None = None) -> str:
    """RFC 3339 in the moment's own offset (or `zone`'s), "Z" for UTC."""
    local = moment.astimezone(zone) if zone is not None else moment
    return local.isoformat(timespec="seconds").replace("+00:00", "Z")


def _json(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _reading_id(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(0, 2**63)):016x}"


def _documents(
    payload_format: PayloadFormat,
    serial: str,
    taken: list[Measurement],
    behaviour: Behaviour,
    zone: ZoneInfo,
    send_at: datetime,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """One JSON document per reading rpm will store (Open mHealth and Tenovi send a
    blood pressure and its pulse as two)."""
    # Devices report the patient's local time with its offset, off by their clock's skew.
    skew = timedelta(seconds=behaviour.clock_skew_s)
    documents: list[dict[str, Any]] = []
    for m in taken:
        if payload_format == PayloadFormat.NATIVE:
            documents.append(_native(m, (m.at + skew).astimezone(zone), behaviour, rng))
        elif payload_format == PayloadFormat.OMH:
            at = (m.at + skew).astimezone(zone)
            documents += _omh(m, at, send_at + skew, behaviour, rng)
        else:
            documents += _tenovi(serial, m, (m.at + skew).astimezone(zone), send_at, rng)
    return documents


def _native(
    m: Measurement, at: datetime, behaviour: Behaviour, rng: np.random.Generator
) -> dict[str, Any]:
    common = {"kind": m.measure.value, "measured_at": _iso(at), "id": _reading_id(rng)}
    if m.measure == Measure.BLOOD_PRESSURE:
        return common | {
            "systolic": m.values["systolic"],
            "diastolic": m.values["diastolic"],
            "pulse": m.values["pulse"],
            "unit": "mmHg",
        }
    if m.measure == Measure.BODY_WEIGHT:
        weight, unit = _weight(m, behaviour)
        return common | {"weight": weight, "unit": unit}
    glucose, unit = _glucose(m, behaviour)
    return common | {"glucose": glucose, "unit": unit, "meal": m.meal}


# Open mHealth's meal vocabulary for the simulator's meal contexts.
_OMH_MEAL = {"fasting": "fasting", "before_meal": "before meal", "after_meal": "after meal"}


def _omh(
    m: Measurement,
    at: datetime,
    created: datetime,
    behaviour: Behaviour,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Data points: blood pressure and its pulse are two documents, as in Open mHealth."""
    frame = {"effective_time_frame": {"date_time": _iso(at)}}

    def point(name: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
        header = {
            "id": _reading_id(rng),
            "creation_date_time": _iso(created),
            "schema_id": {"namespace": "omh", "name": name, "version": version},
        }
        return {"header": header, "body": body | frame}

    if m.measure == Measure.BLOOD_PRESSURE:
        return [
            point(
                "blood-pressure",
                "4.0",
                {
                    "systolic_blood_pressure": {"value": m.values["systolic"], "unit": "mmHg"},
                    "diastolic_blood_pressure": {"value": m.values["diastolic"], "unit": "mmHg"},
                },
            ),
            point(
                "heart-rate",
                "2.0",
                {"heart_rate": {"value": m.values["pulse"], "unit": "beats/min"}},
            ),
        ]
    if m.measure == Measure.BODY_WEIGHT:
        weight, unit = _weight(m, behaviour)
        return [point("body-weight", "3.0", {"body_weight": {"value": weight, "unit": unit}})]
    glucose, unit = _glucose(m, behaviour)
    body: dict[str, Any] = {"blood_glucose": {"value": glucose, "unit": unit}}
    if m.meal in _OMH_MEAL:
        body["temporal_relationship_to_meal"] = _OMH_MEAL[m.meal]
    elif m.meal == "bedtime":
        body["temporal_relationship_to_sleep"] = "before sleeping"
    return [point("blood-glucose", "4.0", body)]


# Tenovi's meal contexts for the simulator's.
_TENOVI_MEAL = {"fasting": "fasting", "before_meal": "pre-prandial", "after_meal": "post-prandial"}


def _tenovi(
    serial: str, m: Measurement, at: datetime, created: datetime, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Tenovi's measurement webhook: one object per metric, values as decimal strings."""
    offset = at.utcoffset() or timedelta()

    def measurement(metric: str, value_1: float, value_2: float | None = None) -> dict[str, Any]:
        return {
            "metric": metric,
            "hwi_device_id": serial,
            "value_1": f"{value_1:.2f}",
            "value_2": None if value_2 is None else f"{value_2:.2f}",
            "timestamp": _iso(at, UTC),
            "created": _iso(created, UTC),
            "timezone_offset": offset.total_seconds() / 3600,
            "estimated_timestamp": False,
            "filter_params": {"measurement_index": int(rng.integers(0, 10**6))},
        }

    if m.measure == Measure.BLOOD_PRESSURE:
        return [
            measurement("blood_pressure", m.values["systolic"], m.values["diastolic"]),
            measurement("pulse", m.values["pulse"]),
        ]
    if m.measure == Measure.BODY_WEIGHT:
        return [measurement("weight", m.values["weight_kg"] / KG_PER_LB)]
    glucose = measurement("glucose", m.values["glucose_mg_dl"])
    if m.meal in _TENOVI_MEAL:
        glucose["filter_params"]["meal_context"] = _TENOVI_MEAL[m.meal]
    return [glucose]


def _weight(m: Measurement, behaviour: Behaviour) -> tuple[float, str]:
    kg = m.values["weight_kg"]
    return (round(kg / KG_PER_LB, 1), "lb") if behaviour.weight_unit == "lb" else (kg, "kg")


def _glucose(m: Measurement, behaviour: Behaviour) -> tuple[float, str]:
    mg_dl = m.values["glucose_mg_dl"]
    if behaviour.glucose_unit == "mmol/L":
        return round(mg_dl / MG_DL_PER_MMOL_L, 1), "mmol/L"
    return mg_dl, "mg/dL"
