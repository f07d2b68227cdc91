"""A programme's population over months: chronic patients, their readings, their device
faults, and the clinical events a nurse should hear of. Pure numpy, seeded, no I/O.

What the scenarios (`simulators/scenario.py`) do for a handful of patients and a few
labelled alerts, this does for a thousand patients and a quarter: the case mix, the
baselines, the noise, the adherence and the faults of a real programme, so that the
alert burden of a set of care plans can be measured (`benchmarks/burden.py`). Every
distribution, its figure and its source are in docs/benchmarks.md ("Alert burden"); the
constants below carry the same numbers.

Times are seconds from the simulation's start (UTC); values are in the store's units
(mmHg, bpm, kg, mg/dL). A reading's arrival is when the store has it: shortly after it
was taken, or at the end of an offline spell, with the device's backlog.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from simulators.physiology import Condition, Measure

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

DAY_S = 86_400.0
HOUR_S = 3_600.0
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
TIME_ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
# The kind of each reading, as an index into this (the values are rpm's reading kinds).
KINDS = (Measure.BLOOD_PRESSURE, Measure.BODY_WEIGHT, Measure.BLOOD_GLUCOSE)
BP, WEIGHT, GLUCOSE = range(3)
MEALS = ("fasting", "before_meal", "after_meal", "bedtime", "random")
FASTING, BEFORE_MEAL, AFTER_MEAL, BEDTIME, RANDOM = range(5)
NO_MEAL = -1
KG_PER_LB = 0.45359237

# Case mix (docs: an assumption shaped like Medicare RPM, where hypertension dominates):
# each set of conditions and its share of the patients.
CASE_MIX: tuple[tuple[frozenset[Condition], float], ...] = (
    (frozenset({Condition.HYPERTENSION}), 0.50),
    (frozenset({Condition.HYPERTENSION, Condition.DIABETES}), 0.20),
    (frozenset({Condition.HYPERTENSION, Condition.HEART_FAILURE}), 0.12),
    (frozenset({Condition.DIABETES}), 0.10),
    (frozenset({Condition.HEART_FAILURE, Condition.DIABETES}), 0.05),
    (frozenset({Condition.HEART_FAILURE}), 0.03),
)


class BpProfile(StrEnum):
    CONTROLLED = "controlled"
    TREATED_HIGH = "treated_high"  # on treatment, home mean still above 135/85
    MORNING_SURGE = "morning_surge"  # controlled by day, a morning peak well above it


# Shares and home systolic means (mmHg) of each profile, among patients measuring BP.
BP_PROFILES = {
    BpProfile.CONTROLLED: (0.55, 126.0, 7.0),
    BpProfile.TREATED_HIGH: (0.30, 146.0, 7.0),
    BpProfile.MORNING_SURGE: (0.15, 128.0, 6.0),
}
# Day-by-day within-person SD of home BP, Ohasama (Kato et al., Am J Hypertens 2010):
# systolic 8.6 +- 3.1, diastolic 5.8 +- 2.0 mmHg; drawn per patient, clipped.
SBP_SD = (8.6, 3.1, 4.0, 16.0)
DBP_SD = (5.8, 2.0, 3.0, 10.0)
# Morning minus evening systolic: a few mmHg for most, 15-25 for the morning-surge profile.
MORNING_EXCESS = (2.0, 8.0)
MORNING_SURGE_EXCESS = (15.0, 25.0)
PULSE = (72.0, 9.0)
PULSE_SD = 5.0

# Adherence (Kum et al., JMIR 2021;23:e29018, 823 Medicaid telemonitoring patients):
# 57.7% sent on at least 80% of days; the others on 39-58% of days.
ADHERENT_SHARE = 0.577
ADHERENT_DAILY = (0.80, 0.98)
NONADHERENT_DAILY = (0.30, 0.70)
EVENING_BP = 0.6  # chance a measuring day also has an evening reading
DROPOUT_SHARE = 0.15  # stop measuring altogether, at a uniform day of the period

# Weight: day-to-day SD of a stable patient's morning weight, kg (assumption).
WEIGHT_SD = (0.3, 0.8)
# Heart-failure decompensation (Chaudhry et al., Circulation 2007;116:1549): weight rises
# gradually, most in the week before admission; gains of 2-5, 5-10 and > 10 lb. Shares
# of each gain (lb) among decompensations, the first one too small for any weight rule.
DECOMPENSATION_SHARE = 0.12
DECOMPENSATION_GAIN_LB = (
    (0.25, (0.5, 2.0)),
    (0.40, (2.0, 5.0)),
    (0.25, (5.0, 10.0)),
    (0.10, (10.0, 14.0)),
)
DECOMPENSATION_DAYS = (5.0, 14.0)

CRISIS_SHARE = 0.03  # hypertensive patients with a crisis in the period (assumption)
CRISIS_SYSTOLIC = (182.0, 215.0)
CRISIS_DAYS = (0.5, 3.0)
UNCONTROL_SHARE = 0.08  # a controlled patient's BP rises for weeks (stopped a drug)
UNCONTROL_RISE = (15.0, 30.0)
UNCONTROL_DAYS = (14.0, 45.0)

# Glucose: fasting means of treated type 2 diabetes (HbA1c ~7-8%: mean glucose 154-183,
# ADAG, Nathan et al., Diabetes Care 2008); coefficient of variation 12-25% (the
# consensus target is <= 36%, Battelino et al., Diabetes Care 2019).
FASTING_GLUCOSE = (140.0, 25.0, 95.0, 220.0)
GLUCOSE_CV = (0.12, 0.25)
AFTER_MEAL_RISE = (40.0, 70.0)
INSULIN_SHARE = 0.30
# Hypoglycaemia per patient-year: insulin-treated type 2, 19.3 (HAT study, Khunti et al.,
# Diabetes Obes Metab 2016;18:907); other treatments, at the low end of the 1.3-37.7 of
# the real-world studies compared with HAT.
HYPO_PER_YEAR_INSULIN = 19.3
HYPO_PER_YEAR_OTHER = 2.0
HYPO_MG_DL, LEVEL_2_MG_DL = 70, 54  # ADA levels 1 and 2
LEVEL_2_SHARE = 0.35  # of the hypoglycaemias a patient checks, below 54 mg/dL
HYPER_SHARE = 0.08  # a sustained rise (infection, steroids, missed doses)
HYPER_RISE = (70.0, 130.0)
HYPER_DAYS = (5.0, 21.0)

# Device faults.
CUFF_ERROR_RATE = 0.015  # of BP readings: motion, talking, a slipped cuff
CUFF_ERROR_SYSTOLIC = (25.0, 70.0)
CARPET_SHARE = 0.10  # of scales, used on carpet on some days
CARPET_DAYS = 0.25
CARPET_OFFSET = (0.015, 0.04)  # of body weight, reads heavy (assumption)
OFFLINE_PER_DAY = 0.03
OFFLINE_HOURS = (6.0, 48.0)


class EventKind(StrEnum):
    HYPERTENSIVE_CRISIS = "hypertensive_crisis"
    UNCONTROLLED_BP = "uncontrolled_bp"
    DECOMPENSATION = "decompensation"
    HYPOGLYCAEMIA = "hypoglycaemia"
    HYPERGLYCAEMIA = "hyperglycaemia"
    DROP_OUT = "drop_out"


@dataclass(frozen=True)
class Event:
    """A labelled clinical event: from onset to end, seconds from the start."""

    kind: EventKind
    onset: float
    end: float
    critical: bool


@dataclass(frozen=True)
class Readings:
    """One patient's readings in time order (then device order); NaN where a reading
    does not carry a measure, meal NO_MEAL where it has no meal context."""

    times: Floats
    arrivals: Floats
    kinds: Ints
    systolic: Floats
    diastolic: Floats
    pulse: Floats
    weight_kg: Floats
    glucose_mg_dl: Floats
    meal: Ints

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class Patient:
    number: int
    conditions: frozenset[Condition]
    time_zone: str
    bp_profile: BpProfile | None
    insulin: bool
    daily: float  # chance of measuring on a given day
    readings: Readings
    events: tuple[Event, ...]
    # Local midnights of the period (seconds from the start): the missed-readings check.
    midnights: Floats


@dataclass(frozen=True)
class Population:
    start: datetime
    days: int
    patients: tuple[Patient, ...]

    @property
    def patient_days(self) -> int:
        return len(self.patients) * self.days


def simulate(
    patients: int = 1_000, days: int = 90, seed: int = 0, start: datetime = DEFAULT_START
) -> Population:
    """The population: the same seed, the same patients, readings and events."""
    midnights = {zone: _midnights(zone, start, days) for zone in TIME_ZONES}
    mix = [m for m, _ in CASE_MIX]
    shares = np.array([s for _, s in CASE_MIX])
    people = []
    for number in range(1, patients + 1):
        # One independent stream per patient: a larger population keeps the first ones.
        rng = np.random.default_rng([seed, number])
        conditions = mix[int(rng.choice(len(mix), p=shares / shares.sum()))]
        zone = TIME_ZONES[int(rng.integers(len(TIME_ZONES)))]
        people.append(_patient(number, conditions, zone, midnights[zone], days, rng))
    return Population(start, days, tuple(people))


def _midnights(zone: str, start: datetime, days: int) -> Floats:
    tz = ZoneInfo(zone)
    first = start.astimezone(tz).date()
    return np.array(
        [
            (
                datetime.combine(first + timedelta(days=d), datetime.min.time(), tz) - start
            ).total_seconds()
            for d in range(days + 2)
        ]
    )


class _Builder:
    """Readings as they are taken, by column."""

    def __init__(self) -> None:
        self.columns: dict[str, list[float]] = {
            k: [] for k in ("times", "kinds", "sys", "dia", "pulse", "kg", "mg_dl", "meal")
        }

    def add(self, at: float, kind: int, meal: int = NO_MEAL, **values: float) -> None:
        c = self.columns
        c["times"].append(at)
        c["kinds"].append(kind)
        c["meal"].append(meal)
        for name in ("sys", "dia", "pulse", "kg", "mg_dl"):
            c[name].append(values.get(name, np.nan))

    def readings(self, days: int, rng: np.random.Generator) -> Readings:
        c = {k: np.array(v) for k, v in self.columns.items()}
        # Whole seconds, as a device reports; within the period.
        times = np.round(c["times"])
        keep = (times >= 0) & (times < days * DAY_S)
        order = np.lexsort((c["kinds"][keep], times[keep]))

        def column(name: str) -> Floats:
            values: Floats = c[name][keep][order]
            return values

        times, kinds = times[keep][order], c["kinds"][keep][order].astype(np.int64)
        return Readings(
            times=times,
            arrivals=_arrivals(times, kinds, days, rng),
            kinds=kinds,
            systolic=column("sys"),
            diastolic=column("dia"),
            pulse=column("pulse"),
            weight_kg=column("kg"),
            glucose_mg_dl=column("mg_dl"),
            meal=column("meal").astype(np.int64),
        )


def _arrivals(times: Floats, kinds: Ints, days: int, rng: np.random.Generator) -> Floats:
    """Seconds after it was taken, or at the end of its device's offline spell."""
    arrivals = times + rng.uniform(2, 20, len(times))
    for kind in range(len(KINDS)):
        mine = kinds == kind
        for day in np.flatnonzero(rng.random(days) < OFFLINE_PER_DAY):
            begin = (day + rng.random()) * DAY_S
            end = begin + rng.uniform(*OFFLINE_HOURS) * HOUR_S
            arrivals[mine & (times >= begin) & (times < end)] = end
    return arrivals


def _patient(
    number: int,
    conditions: frozenset[Condition],
    zone: str,
    midnights: Floats,
    days: int,
    rng: np.random.Generator,
) -> Patient:
    period = days * DAY_S
    adherent = rng.random() < ADHERENT_SHARE
    daily = float(rng.uniform(*(ADHERENT_DAILY if adherent else NONADHERENT_DAILY)))
    events: list[Event] = []
    stops = period
    if rng.random() < DROPOUT_SHARE:
        stops = float(midnights[int(rng.integers(1, days))])
        events.append(Event(EventKind.DROP_OUT, stops, period, critical=False))
    measuring = (rng.random(days + 1) < daily) & (midnights[: days + 1] < stops)
    built = _Builder()
    profile = None
    if Condition.HYPERTENSION in conditions or Condition.HEART_FAILURE in conditions:
        profile = _blood_pressure(built, conditions, midnights, measuring, days, events, rng)
    if Condition.HEART_FAILURE in conditions:
        _weight(built, midnights, measuring, days, events, rng)
    insulin = False
    if Condition.DIABETES in conditions:
        insulin = bool(rng.random() < INSULIN_SHARE)
        _glucose(built, insulin, midnights, measuring, stops, days, events, rng)
    return Patient(
        number=number,
        conditions=conditions,
        time_zone=zone,
        bp_profile=profile,
        insulin=insulin,
        daily=daily,
        readings=built.readings(days, rng),
        events=tuple(sorted(events, key=lambda e: e.onset)),
        midnights=midnights,
    )


def _clipped_normal(rng: np.random.Generator, spec: tuple[float, float, float, float]) -> float:
    mean, sd, low, high = spec
    return float(np.clip(rng.normal(mean, sd), low, high))


def _measuring_days(measuring: npt.NDArray[np.bool_]) -> Ints:
    days: Ints = np.flatnonzero(measuring)
    return days


def _blood_pressure(
    built: _Builder,
    conditions: frozenset[Condition],
    midnights: Floats,
    measuring: npt.NDArray[np.bool_],
    days: int,
    events: list[Event],
    rng: np.random.Generator,
) -> BpProfile:
    profiles = list(BP_PROFILES)
    shares = np.array([BP_PROFILES[p][0] for p in profiles])
    profile = profiles[int(rng.choice(len(profiles), p=shares))]
    _, mean, spread = BP_PROFILES[profile]
    systolic = rng.normal(mean, spread)
    ratio = rng.uniform(0.56, 0.64)
    sbp_sd, dbp_sd = _clipped_normal(rng, SBP_SD), _clipped_normal(rng, DBP_SD)
    excess = rng.uniform(
        *(MORNING_SURGE_EXCESS if profile == BpProfile.MORNING_SURGE else MORNING_EXCESS)
    )
    pulse = rng.normal(*PULSE)
    period = days * DAY_S
    crisis = uncontrol = None
    if Condition.HYPERTENSION in conditions and rng.random() < CRISIS_SHARE:
        onset = rng.uniform(2, days - 4) * DAY_S
        crisis = (onset, onset + rng.uniform(*CRISIS_DAYS) * DAY_S, rng.uniform(*CRISIS_SYSTOLIC))
        events.append(Event(EventKind.HYPERTENSIVE_CRISIS, crisis[0], crisis[1], critical=True))
    if profile == BpProfile.CONTROLLED and rng.random() < UNCONTROL_SHARE:
        onset = rng.uniform(3, days - 14) * DAY_S
        end = min(period, onset + rng.uniform(*UNCONTROL_DAYS) * DAY_S)
        uncontrol = (onset, end, rng.uniform(*UNCONTROL_RISE))
        events.append(Event(EventKind.UNCONTROLLED_BP, onset, end, critical=False))
    for day in _measuring_days(measuring):
        sessions = [(7.5, 0.75, excess / 2)]
        if rng.random() < EVENING_BP:
            sessions.append((20.0, 1.0, -excess / 2))
        for hour, jitter, offset in sessions:
            at = midnights[day] + (hour + rng.uniform(-jitter, jitter)) * HOUR_S
            sbp = systolic + offset + rng.normal(0, sbp_sd)
            dbp = systolic * ratio + offset / 2 + rng.normal(0, dbp_sd)
            if uncontrol is not None and uncontrol[0] <= at < uncontrol[1]:
                # Rises over three days, as a stopped drug wears off.
                rise = uncontrol[2] * min(1.0, (at - uncontrol[0]) / (3 * DAY_S))
                sbp, dbp = sbp + rise, dbp + rise * 0.5
            if crisis is not None and crisis[0] <= at < crisis[1]:
                sbp = crisis[2] + rng.normal(0, 6)
                dbp = max(dbp, sbp * 0.6 + rng.normal(0, 4))
            beat = pulse + rng.normal(0, PULSE_SD)
            if rng.random() < CUFF_ERROR_RATE:
                # An artefact: the cuff reads high, and counts the pulse wrong.
                sbp += rng.uniform(*CUFF_ERROR_SYSTOLIC)
                dbp += rng.uniform(5, 30)
                beat = beat * rng.choice([0.5, 1.0, 1.8])
            sbp = float(np.clip(sbp, 70, 260))
            built.add(
                at,
                BP,
                sys=round(sbp),
                dia=round(float(np.clip(dbp, 40, sbp - 10))),
                pulse=round(float(np.clip(beat, 30, 200))),
            )
    return profile


def _weight(
    built: _Builder,
    midnights: Floats,
    measuring: npt.NDArray[np.bool_],
    days: int,
    events: list[Event],
    rng: np.random.Generator,
) -> None:
    baseline = rng.uniform(55, 120)
    sd = rng.uniform(*WEIGHT_SD)
    carpet = rng.uniform(*CARPET_OFFSET) if rng.random() < CARPET_SHARE else 0.0
    episode = None
    if rng.random() < DECOMPENSATION_SHARE:
        shares = np.array([s for s, _ in DECOMPENSATION_GAIN_LB])
        low, high = DECOMPENSATION_GAIN_LB[int(rng.choice(len(shares), p=shares))][1]
        onset = rng.uniform(3, days - 10) * DAY_S
        end = onset + rng.uniform(*DECOMPENSATION_DAYS) * DAY_S
        episode = (onset, end, rng.uniform(low, high) * KG_PER_LB)
        events.append(Event(EventKind.DECOMPENSATION, onset, end, critical=True))
    for day in _measuring_days(measuring):
        at = midnights[day] + (7.0 + rng.uniform(-0.7, 0.7)) * HOUR_S
        kg = baseline + rng.normal(0, sd)
        if episode is not None and at >= episode[0]:
            onset, end, gain = episode
            if at < end:
                # Gradual, steepest in the last week (Chaudhry et al.): a quadratic ramp.
                kg += gain * ((at - onset) / (end - onset)) ** 2
            else:
                # Admitted and diuresed: back to the dry weight over three days.
                kg += gain * max(0.0, 1 - (at - end) / (3 * DAY_S))
        if carpet and rng.random() < CARPET_DAYS:
            kg *= 1 + carpet
        # A home scale shows tenths of a pound.
        built.add(at, WEIGHT, kg=round(kg / KG_PER_LB, 1) * KG_PER_LB)


def _glucose(
    built: _Builder,
    insulin: bool,
    midnights: Floats,
    measuring: npt.NDArray[np.bool_],
    stops: float,
    days: int,
    events: list[Event],
    rng: np.random.Generator,
) -> None:
    fasting = _clipped_normal(rng, FASTING_GLUCOSE)
    cv = rng.uniform(*GLUCOSE_CV)
    after_meal = rng.uniform(*AFTER_MEAL_RISE)
    period = days * DAY_S
    hyper = None
    if rng.random() < HYPER_SHARE:
        onset = rng.uniform(3, days - 7) * DAY_S
        end = min(period, onset + rng.uniform(*HYPER_DAYS) * DAY_S)
        hyper = (onset, end, rng.uniform(*HYPER_RISE))
        events.append(Event(EventKind.HYPERGLYCAEMIA, onset, end, critical=False))
    # Insulin: fasting, before dinner and at bedtime; other treatments: fasting, and now
    # and then after a meal.
    schedule = (
        ((7.0, FASTING, 1.0), (18.0, BEFORE_MEAL, 0.8), (22.0, BEDTIME, 0.8))
        if insulin
        else ((7.0, FASTING, 1.0), (13.5, AFTER_MEAL, 0.3))
    )
    rise = {FASTING: 0.0, BEFORE_MEAL: 10.0, AFTER_MEAL: after_meal, BEDTIME: 25.0}
    for day in _measuring_days(measuring):
        for hour, meal, chance in schedule:
            if rng.random() >= chance:
                continue
            at = midnights[day] + (hour + rng.uniform(-0.7, 0.7)) * HOUR_S
            level = fasting + rise[meal]
            if hyper is not None and hyper[0] <= at < hyper[1]:
                level += hyper[2]
            # Log-normal: glucose is skewed upwards, a low as rare as it is in life.
            value = round(float(np.clip(level * np.exp(rng.normal(0, cv)), 40, 600)))
            built.add(at, GLUCOSE, meal, mg_dl=value)
            if value < HYPO_MG_DL:
                # A low found by a scheduled check is a hypoglycaemia all the same.
                events.append(
                    Event(EventKind.HYPOGLYCAEMIA, at - 900, at + HOUR_S, value < LEVEL_2_MG_DL)
                )
    # Hypoglycaemias the patient feels and checks (as their plan tells them to): the low
    # reading, and a re-check after 15 g of carbohydrate.
    rate = (HYPO_PER_YEAR_INSULIN if insulin else HYPO_PER_YEAR_OTHER) / 365 * days
    for onset in np.sort(rng.uniform(0, min(stops, period), rng.poisson(rate))):
        level_2 = bool(rng.random() < LEVEL_2_SHARE)
        low = rng.uniform(40, LEVEL_2_MG_DL - 1) if level_2 else rng.uniform(55, HYPO_MG_DL - 1)
        check = onset + rng.uniform(5, 20) * 60
        built.add(check, GLUCOSE, RANDOM, mg_dl=round(low))
        built.add(
            check + rng.uniform(15, 25) * 60,
            GLUCOSE,
            RANDOM,
            mg_dl=round(low + rng.uniform(30, 60)),
        )
        events.append(Event(EventKind.HYPOGLYCAEMIA, onset, onset + HOUR_S, critical=level_2))
