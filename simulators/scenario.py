"""Scenarios: who is simulated, for how long, what happens to them, and which alerts that
should raise. Read from TOML files; turned into messages by `generate`. Pure.

A scenario file (see `simulators/scenarios/`) has a header, cohorts of patients, and the
alerts it expects:

    name = "chf-decompensation"
    description = "..."
    days = 21
    seed = 7
    max_unlabelled_alerts = 2

    [[cohort]]
    prefix = "CHF"              # patients CHF-001, CHF-002, ...; devices CHF-001-SC, ...
    count = 4
    conditions = ["heart_failure"]
    devices = ["weight_scale", "blood_pressure_cuff"]
    format = "native"           # native | omh | tenovi
    time_zone = "America/Chicago"
    adherence = { daily = 0.95 }
    behaviour = { duplicate = 0.02, offline_per_day = 0.05 }
    episodes = [{ patient = 1, kind = "decompensation", start_day = 12, days = 5, magnitude = 3.0 }]

    [[expect]]
    patient = "CHF-001"
    rule = "weight_gain_week"
    from_day = 12
    to_day = 18
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from simulators.devices import MEASURE_OF, Behaviour, DeviceKind, Message, PayloadFormat
from simulators.devices import device_messages as _device_messages
from simulators.physiology import Adherence, Body, Condition, Episode, EpisodeKind, measurements

PRESETS = Path(__file__).with_name("scenarios")


class ScenarioError(ValueError):
    """A scenario file that cannot be used, with a message naming the file and the field."""


@dataclass(frozen=True)
class CohortEpisode:
    patient: int  # 1-based number within the cohort
    episode: Episode


@dataclass(frozen=True)
class Cohort:
    prefix: str
    count: int
    conditions: frozenset[Condition]
    devices: tuple[DeviceKind, ...]
    payload_format: PayloadFormat = PayloadFormat.NATIVE
    time_zone: str = "UTC"
    adherence: Adherence = field(default_factory=Adherence)
    # Patients who stop measuring altogether on a day: {patient number: day}.
    stops: dict[int, float] = field(default_factory=dict)
    behaviour: Behaviour = field(default_factory=Behaviour)
    episodes: tuple[CohortEpisode, ...] = ()

    def patient_ref(self, number: int) -> str:
        return f"{self.prefix}-{number:03d}"


@dataclass(frozen=True)
class ExpectedAlert:
    """An alert the scenario must cause: this patient, this rule, within these days (and
    at least this severity, when one is given)."""

    patient: str
    rule: str
    from_day: float
    to_day: float
    severity: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    days: int
    seed: int
    cohorts: tuple[Cohort, ...]
    expected: tuple[ExpectedAlert, ...] = ()
    # How many alerts nobody labelled a run may raise before its precision is a failure.
    max_unlabelled_alerts: int = 0


@dataclass(frozen=True)
class SimDevice:
    serial: str
    kind: DeviceKind


@dataclass(frozen=True)
class SimPatient:
    ref: str
    time_zone: str
    conditions: frozenset[Condition]
    devices: tuple[SimDevice, ...]


@dataclass(frozen=True)
class Simulation:
    scenario: Scenario
    start: datetime
    patients: tuple[SimPatient, ...]
    messages: tuple[Message, ...]  # in sending order

    @property
    def readings(self) -> int:
        return sum(m.readings for m in self.messages if m.note != "duplicate")


def generate(scenario: Scenario, start: datetime) -> Simulation:
    """Every patient, device and message of the scenario from `start`. Same seed, same run."""
    patients: list[SimPatient] = []
    messages: list[Message] = []
    for cohort_index, cohort in enumerate(scenario.cohorts):
        for number in range(1, cohort.count + 1):
            # One independent stream per patient: adding a cohort changes no other patient.
            rng = np.random.default_rng([scenario.seed, cohort_index, number])
            episodes = tuple(e.episode for e in cohort.episodes if e.patient == number)
            adherence = cohort.adherence
            if number in cohort.stops:
                adherence = Adherence(adherence.daily, adherence.skipped_days, cohort.stops[number])
            body = Body.draw(rng, cohort.conditions, cohort.time_zone, episodes, adherence)
            ref = cohort.patient_ref(number)
            devices = tuple(SimDevice(f"{ref}-{_SUFFIX[kind]}", kind) for kind in cohort.devices)
            taken = measurements(
                body, frozenset(MEASURE_OF[d.kind] for d in devices), start, scenario.days, rng
            )
            for device in devices:
                messages += _device_messages(
                    device.serial,
                    cohort.payload_format,
                    [m for m in taken if m.measure == MEASURE_OF[device.kind]],
                    cohort.behaviour,
                    cohort.time_zone,
                    start,
                    scenario.days,
                    rng,
                )
            patients.append(SimPatient(ref, cohort.time_zone, cohort.conditions, devices))
    messages.sort(key=lambda m: (m.send_at, m.topic))
    return Simulation(scenario, start, tuple(patients), tuple(messages))


_SUFFIX = {
    DeviceKind.BLOOD_PRESSURE_CUFF: "BP",
    DeviceKind.WEIGHT_SCALE: "SC",
    DeviceKind.GLUCOMETER: "GL",
}


def load(name_or_path: str) -> Scenario:
    """A preset by name (`demo`, `load`, ...) or a scenario file by path."""
    path = PRESETS / f"{name_or_path}.toml"
    if not path.exists():
        path = Path(name_or_path)
    if not path.is_file():
        presets = ", ".join(sorted(p.stem for p in PRESETS.glob("*.toml")))
        raise ScenarioError(f"no scenario {name_or_path!r}: give a file or one of {presets}")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        return parse(document)
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ScenarioError(f"{path}: {_describe(exc)}") from None


def parse(document: dict[str, Any]) -> Scenario:
    return Scenario(
        name=str(document["name"]),
        description=str(document.get("description", "")),
        days=_positive_int(document, "days"),
        seed=int(document.get("seed", 0)),
        cohorts=tuple(_cohort(c) for c in document["cohort"]),
        expected=tuple(
            ExpectedAlert(
                str(e["patient"]),
                str(e["rule"]),
                float(e["from_day"]),
                float(e["to_day"]),
                str(e["severity"]) if "severity" in e else None,
            )
            for e in document.get("expect", [])
        ),
        max_unlabelled_alerts=int(document.get("max_unlabelled_alerts", 0)),
    )


def _cohort(table: dict[str, Any]) -> Cohort:
    adherence = dict(table.get("adherence", {}))
    stops = {int(k): float(v) for k, v in dict(adherence.pop("stops", {})).items()}
    return Cohort(
        prefix=str(table["prefix"]),
        count=_positive_int(table, "count"),
        conditions=frozenset(Condition(c) for c in table.get("conditions", [])),
        devices=tuple(DeviceKind(d) for d in table["devices"]),
        payload_format=PayloadFormat(table.get("format", "native")),
        time_zone=str(table.get("time_zone", "UTC")),
        adherence=Adherence(
            daily=float(adherence.pop("daily", 0.95)),
            skipped_days=tuple(int(d) for d in adherence.pop("skipped_days", [])),
        ),
        stops=stops,
        behaviour=_behaviour(table.get("behaviour", {})),
        episodes=tuple(
            CohortEpisode(
                int(e["patient"]),
                Episode(
                    EpisodeKind(e["kind"]),
                    float(e["start_day"]),
                    float(e["days"]),
                    float(e["magnitude"]),
                ),
            )
            for e in table.get("episodes", [])
        ),
    )


_BEHAVIOUR = TypeAdapter(Behaviour)


def _behaviour(table: dict[str, Any]) -> Behaviour:
    known = {f.name for f in fields(Behaviour)}
    unknown = set(table) - known
    if unknown:
        raise ValueError(
            f"unknown behaviour {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})"
        )
    return _BEHAVIOUR.validate_python(table)


def _positive_int(table: dict[str, Any], key: str) -> int:
    value = int(table[key])
    if value < 1:
        raise ValueError(f"{key} must be at least 1, not {value}")
    return value


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)
