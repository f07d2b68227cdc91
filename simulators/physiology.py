"""Simulated patients' bodies: what each measurement would read, and when it is taken. Pure.

Everything is drawn from a numpy Generator the caller seeds, so the same seed gives the
same readings. Values are in the units a device shows (mmHg, kg, mg/dL); the payload
encoders convert to pounds or mmol/L where a device would.

The models are deliberately simple but shaped like the real thing:
- blood pressure: a personal baseline, a morning surge and an evening dip, beat-to-beat
  measurement noise; a hypertensive crisis raises it for hours to days;
- weight: a stable baseline with day-to-day water and meal noise; a heart-failure
  decompensation adds fluid steadily over several days;
- glucose: fasting level by condition, a post-meal excursion, and nocturnal
  hypoglycaemia episodes (insulin-treated patients);
- adherence: a daily chance of measuring at all, skipped days, and a patient who stops.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import numpy as np


class Condition(StrEnum):
    HYPERTENSION = "hypertension"
    HEART_FAILURE = "heart_failure"
    DIABETES = "diabetes"


class EpisodeKind(StrEnum):
    HYPERTENSIVE_CRISIS = "hypertensive_crisis"
    DECOMPENSATION = "decompensation"
    NOCTURNAL_HYPOGLYCEMIA = "nocturnal_hypoglycemia"


class Measure(StrEnum):
    BLOOD_PRESSURE = "blood_pressure"
    BODY_WEIGHT = "body_weight"
    BLOOD_GLUCOSE = "blood_glucose"


@dataclass(frozen=True)
class Episode:
    """A clinical event over [start_day, start_day + days) of the simulation."""

    kind: EpisodeKind
    start_day: float
    days: float
    # Crisis: systolic reached (mmHg); decompensation: fluid gained (kg); hypoglycaemia:
    # the lowest glucose (mg/dL).
    magnitude: float

    def covers(self, day: float) -> bool:
        return self.start_day <= day < self.start_day + self.days


@dataclass(frozen=True)
class Adherence:
    daily: float = 0.95  # chance of measuring on a given day
    skipped_days: tuple[int, ...] = ()
    stops_on_day: float | None = None  # measures nothing from then on

    def measures_on(self, day: int, rng: np.random.Generator) -> bool:
        if self.stops_on_day is not None and day >= self.stops_on_day:
            return False
        return day not in self.skipped_days and bool(rng.random() < self.daily)


@dataclass(frozen=True)
class Body:
    """One patient's physiology: baselines drawn once, then measured many times."""

    conditions: frozenset[Condition]
    time_zone: str
    systolic: float
    diastolic: float
    pulse: float
    weight_kg: float
    fasting_glucose: float
    episodes: tuple[Episode, ...] = ()
    adherence: Adherence = field(default_factory=Adherence)

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        conditions: frozenset[Condition],
        time_zone: str = "UTC",
        episodes: tuple[Episode, ...] = (),
        adherence: Adherence | None = None,
    ) -> Body:
        hypertensive = Condition.HYPERTENSION in conditions
        # Treated hypertension still sits a little higher; kept below stage 2 on average
        # so that only scenarios that say so cross guideline limits.
        systolic = rng.normal(128 if hypertensive else 116, 5)
        return cls(
            conditions=conditions,
            time_zone=time_zone,
            systolic=float(systolic),
            diastolic=float(systolic * rng.uniform(0.6, 0.66)),
            pulse=float(rng.normal(72, 6)),
            weight_kg=float(rng.uniform(58, 105)),
            fasting_glucose=float(
                rng.normal(125, 10) if Condition.DIABETES in conditions else rng.normal(92, 5)
            ),
            episodes=episodes,
            adherence=adherence or Adherence(),
        )

    def episode_at(self, kind: EpisodeKind, day: float) -> Episode | None:
        return next((e for e in self.episodes if e.kind == kind and e.covers(day)), None)


@dataclass(frozen=True)
class Measurement:
    measure: Measure
    at: datetime  # aware, UTC
    values: dict[str, float]
    meal: str | None = None


# Local times of day a patient measures, with the meal context of glucose readings.
_BP_TIMES = (time(7, 30), time(20, 0))
_WEIGHT_TIME = time(7, 0)
_GLUCOSE_TIMES = (
    (time(7, 0), "fasting"),
    (time(13, 30), "after_meal"),
    (time(18, 0), "before_meal"),
    (time(22, 0), "bedtime"),
)
# Minutes of jitter around each scheduled time: people are not clocks.
_JITTER_MIN = 25


def measurements(
    body: Body,
    measures: frozenset[Measure],
    start: datetime,
    days: int,
    rng: np.random.Generator,
) -> list[Measurement]:
    """Every measurement the patient takes over `days` days from `start`, in time order."""
    zone = ZoneInfo(body.time_zone)
    first_day = start.astimezone(zone).date()
    taken: list[Measurement] = []
    for day_index in range(days + 1):
        measuring = body.adherence.measures_on(day_index, rng)
        for measure, local_time, meal in _schedule(measures):
            moment = _local(first_day + timedelta(days=day_index), local_time, zone, rng)
            if not measuring or not start <= moment < start + timedelta(days=days):
                continue
            day = (moment - start).total_seconds() / 86400
            taken.append(_measure(body, measure, moment, day, meal, zone, rng))
        if measuring and Measure.BLOOD_GLUCOSE in measures:
            taken += _night_check(body, first_day + timedelta(days=day_index), start, days, rng)
    return sorted(taken, key=lambda m: m.at)


def _schedule(measures: frozenset[Measure]) -> Iterator[tuple[Measure, time, str | None]]:
    if Measure.BLOOD_PRESSURE in measures:
        for at in _BP_TIMES:
            yield Measure.BLOOD_PRESSURE, at, None
    if Measure.BODY_WEIGHT in measures:
        yield Measure.BODY_WEIGHT, _WEIGHT_TIME, None
    if Measure.BLOOD_GLUCOSE in measures:
        for at, meal in _GLUCOSE_TIMES:
            yield Measure.BLOOD_GLUCOSE, at, meal


def _local(day: date, at: time, zone: ZoneInfo, rng: np.random.Generator) -> datetime:
    local = datetime.combine(day, at, tzinfo=zone)
    local += timedelta(minutes=float(rng.uniform(-_JITTER_MIN, _JITTER_MIN)))
    return local.astimezone(UTC)


def _measure(
    body: Body,
    measure: Measure,
    moment: datetime,
    day: float,
    meal: str | None,
    zone: ZoneInfo,
    rng: np.random.Generator,
) -> Measurement:
    local_hour = moment.astimezone(zone).hour + moment.astimezone(zone).minute / 60
    if measure == Measure.BLOOD_PRESSURE:
        return Measurement(measure, moment, _blood_pressure(body, day, local_hour, rng))
    if measure == Measure.BODY_WEIGHT:
        return Measurement(measure, moment, {"weight_kg": _weight(body, day, rng)})
    return Measurement(measure, moment, {"glucose_mg_dl": _glucose(body, meal, rng)}, meal)


def _blood_pressure(
    body: Body, day: float, local_hour: float, rng: np.random.Generator
) -> dict[str, float]:
    # Morning surge (peak around 08:00) and evening dip: a 24-hour cosine of +-6 mmHg.
    rhythm = 6 * np.cos((local_hour - 8) / 24 * 2 * np.pi)
    systolic = body.systolic + rhythm + rng.normal(0, 5)
    diastolic = body.diastolic + rhythm * 0.5 + rng.normal(0, 3.5)
    crisis = body.episode_at(EpisodeKind.HYPERTENSIVE_CRISIS, day)
    if crisis is not None:
        systolic = crisis.magnitude + rng.normal(0, 4)
        diastolic = max(diastolic, crisis.magnitude * 0.6 + rng.normal(0, 3))
    systolic = float(np.clip(systolic, 75, 260))
    diastolic = float(np.clip(diastolic, 40, systolic - 15))
    pulse = float(np.clip(body.pulse + rng.normal(0, 4), 45, 140))
    return {"systolic": round(systolic), "diastolic": round(diastolic), "pulse": round(pulse)}


def _weight(body: Body, day: float, rng: np.random.Generator) -> float:
    weight = body.weight_kg + rng.normal(0, 0.25)
    for episode in body.episodes:
        if episode.kind == EpisodeKind.DECOMPENSATION and day >= episode.start_day:
            # Fluid accumulates evenly over the episode and stays (until treated, beyond
            # the scenario).
            progress = min(1.0, (day - episode.start_day) / episode.days)
            weight += episode.magnitude * progress
    return round(float(weight), 1)


def _glucose(body: Body, meal: str | None, rng: np.random.Generator) -> float:
    diabetic = Condition.DIABETES in body.conditions
    excursion = {"after_meal": 55 if diabetic else 30, "bedtime": 20, "before_meal": 5}
    glucose = body.fasting_glucose + excursion.get(meal or "", 0) + rng.normal(0, 12)
    return round(float(np.clip(glucose, 72, 320)))


def _night_check(
    body: Body, day: date, start: datetime, days: int, rng: np.random.Generator
) -> list[Measurement]:
    """The 03:00 check of a patient woken by hypoglycaemia symptoms, on episode nights."""
    zone = ZoneInfo(body.time_zone)
    moment = _local(day, time(3, 0), zone, rng)
    if not start <= moment < start + timedelta(days=days):
        return []
    sim_day = (moment - start).total_seconds() / 86400
    episode = body.episode_at(EpisodeKind.NOCTURNAL_HYPOGLYCEMIA, sim_day)
    if episode is None:
        return []
    glucose = round(float(np.clip(episode.magnitude + rng.normal(0, 3), 30, 69)))
    return [Measurement(Measure.BLOOD_GLUCOSE, moment, {"glucose_mg_dl": glucose}, "random")]
