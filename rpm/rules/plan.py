"""A patient's care plan: the rules their readings are checked against. Pure.

A plan is what a care manager writes: each limit carries its own unit (3 lb, 7.8 mmol/L),
as entered, and that is what is stored and shown back. Evaluation works in the store's
canonical units (mmHg, bpm, kg, mg/dL): `Limit.canonical_value` converts.

Validation refuses, with a sentence that names the rule and the limit, what no care
manager means: an unknown measure or unit, a missing unit, a lower bound above an upper
one, and values no human can have.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rpm.devices.checks import KG_PER_LB, MG_DL_PER_MMOL_L
from rpm.devices.model import MealContext, ReadingKind

# 1 kPa = 7.50062 mmHg (1 mmHg = 133.322 Pa).
MMHG_PER_KPA = 7.50062


class Severity(StrEnum):
    WARNING = "warning"  # low priority: the worklist, in its turn
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def of_rank(cls, rank: int) -> Severity:
        return _OF_RANK[rank]


_RANK = {Severity.WARNING: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}
_OF_RANK = {rank: severity for severity, rank in _RANK.items()}


class Measure(StrEnum):
    SYSTOLIC = "systolic"
    DIASTOLIC = "diastolic"
    PULSE = "pulse"
    WEIGHT = "weight"
    GLUCOSE = "glucose"

    @property
    def label(self) -> str:
        return self.value.capitalize()

    @property
    def canonical_unit(self) -> str:
        return _UNITS[self][0]


# Per measure: the canonical unit first, then each accepted unit's factor to it.
_UNITS: dict[Measure, tuple[str, dict[str, float]]] = {
    Measure.SYSTOLIC: ("mmHg", {"mmHg": 1.0, "kPa": MMHG_PER_KPA}),
    Measure.DIASTOLIC: ("mmHg", {"mmHg": 1.0, "kPa": MMHG_PER_KPA}),
    Measure.PULSE: ("bpm", {"bpm": 1.0, "/min": 1.0}),
    Measure.WEIGHT: ("kg", {"kg": 1.0, "lb": KG_PER_LB}),
    Measure.GLUCOSE: ("mg/dL", {"mg/dL": 1.0, "mmol/L": MG_DL_PER_MMOL_L}),
}

# Which readings carry each measure (a pulse comes with a blood pressure, or on its own).
READING_KINDS: dict[Measure, tuple[ReadingKind, ...]] = {
    Measure.SYSTOLIC: (ReadingKind.BLOOD_PRESSURE,),
    Measure.DIASTOLIC: (ReadingKind.BLOOD_PRESSURE,),
    Measure.PULSE: (ReadingKind.BLOOD_PRESSURE, ReadingKind.HEART_RATE),
    Measure.WEIGHT: (ReadingKind.BODY_WEIGHT,),
    Measure.GLUCOSE: (ReadingKind.BLOOD_GLUCOSE,),
}

# Limits a care manager may set, in canonical units: wide clinical ranges, so that a typo
# (1800 for 180, kg for lb) is refused instead of silencing or flooding the rule.
_LIMIT_RANGE: dict[Measure, tuple[float, float]] = {
    Measure.SYSTOLIC: (50.0, 300.0),
    Measure.DIASTOLIC: (20.0, 200.0),
    Measure.PULSE: (20.0, 250.0),
    Measure.WEIGHT: (2.0, 400.0),
    Measure.GLUCOSE: (10.0, 1000.0),
}
# A change over a window, or a per-day slope, in canonical units: up to this much.
_CHANGE_RANGE: dict[Measure, float] = {
    Measure.SYSTOLIC: 150.0,
    Measure.DIASTOLIC: 100.0,
    Measure.PULSE: 150.0,
    Measure.WEIGHT: 50.0,
    Measure.GLUCOSE: 500.0,
}
PER_DAY = "/day"
MAX_WINDOW_HOURS = 24 * 30


class Op(StrEnum):
    AT_OR_ABOVE = "at_or_above"
    ABOVE = "above"
    AT_OR_BELOW = "at_or_below"
    BELOW = "below"

    @property
    def upward(self) -> bool:
        return self in (Op.AT_OR_ABOVE, Op.ABOVE)

    @property
    def phrase(self) -> str:
        return self.value.replace("_", " ")

    @property
    def symbol(self) -> str:
        return _OP_SYMBOLS[self]


_OP_SYMBOLS = {Op.AT_OR_ABOVE: "≥", Op.ABOVE: ">", Op.AT_OR_BELOW: "≤", Op.BELOW: "<"}


def units_of(measure: Measure, per_day: bool = False) -> tuple[str, ...]:
    """The units a limit on the measure may be written in (per day, for a slope)."""
    return tuple(u + (PER_DAY if per_day else "") for u in _UNITS[measure][1])


def unit_factor(measure: Measure, given: str, per_day: bool = False) -> float:
    """A unit of a measure in canonical units; raises ValueError naming what was wrong."""
    canonical, factors = _UNITS[measure]
    unit = given.strip()
    if per_day:
        if not unit.endswith(PER_DAY):
            raise ValueError(f"a slope is per day: use e.g. {canonical}{PER_DAY}")
        unit = unit.removesuffix(PER_DAY)
    if unit not in factors:
        accepted = ", ".join(u + (PER_DAY if per_day else "") for u in factors)
        raise ValueError(f"unit {given!r} is not one for {measure}: use {accepted}")
    return factors[unit]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Limit(_Strict):
    """One bound on a measure (or on a rule's statistic of it), in the unit it was given."""

    measure: Measure
    op: Op
    value: float
    unit: str = Field(description="e.g. mmHg, kPa, bpm, kg, lb, mg/dL, mmol/L; kg/day for a slope")
    severity: Severity
    # How far back past the limit a value must go before the condition counts as cleared:
    # a value hovering at the limit keeps one episode going instead of starting many.
    hysteresis: float = Field(default=0.0, ge=0)
    # Named in the alert text: "the crisis limit of 180".
    label: str = ""

    def factor(self, per_day: bool = False) -> float:
        """This limit's unit in canonical units; raises ValueError naming what was wrong."""
        return unit_factor(self.measure, self.unit, per_day)

    def canonical_value(self, per_day: bool = False) -> float:
        return self.value * self.factor(per_day)

    def canonical_hysteresis(self, per_day: bool = False) -> float:
        return self.hysteresis * self.factor(per_day)

    def relaxed(self, canonical: float, hysteresis: float) -> float:
        """The limit moved back by the hysteresis: where a running episode ends."""
        return canonical - hysteresis if self.op.upward else canonical + hysteresis

    def describe(self) -> str:
        name = f"{self.label} limit" if self.label else "limit"
        return f"the {name} of {number(self.value)} {self.unit}"

    @property
    def condition(self) -> str:
        """The limit as a chart's line and a version's changes show it: "≥ 180 mmHg"."""
        return f"{self.op.symbol} {number(self.value)} {self.unit}"


class _Rule(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="unique within the plan")
    title: str = Field(default="", max_length=200)
    # Added to the alert text: what the nurse should do first.
    advice: str = Field(default="", max_length=500)
    # A new episode of this rule within this long of the last one's last firing is the
    # same episode: a rule on sparse data does not flap.
    cooldown_hours: float = Field(default=0.0, ge=0, le=MAX_WINDOW_HOURS)
    # Guideline or local protocol the rule comes from: shown to care managers.
    source: str = Field(default="", max_length=500)
    enabled: bool = True


class _LimitRule(_Rule):
    limits: list[Limit] = Field(min_length=1)
    # Glucose rules may apply only to readings taken in these meal contexts.
    meal_contexts: list[MealContext] | None = None
    # Ask the patient by SMS to re-measure, and raise the alert only if the repeat fires
    # too or none comes within this many minutes. Never for a critical finding, nor for
    # level 2 hypoglycaemia (`evaluate.may_wait`). Rules judging one reading only.
    confirm_within_minutes: int | None = Field(default=None, ge=5, le=240)
    # Whether the rule fires on one reading alone (so that a repeat can confirm it).
    judges_one_reading: ClassVar[bool] = True

    @property
    def measures(self) -> tuple[Measure, ...]:
        return tuple(dict.fromkeys(limit.measure for limit in self.limits))

    @property
    def per_day(self) -> bool:
        return False

    @property
    def held_against(self) -> str:
        """What the rule holds against its limits, in words: "any one reading", "the mean
        over 7 days (at least 4 readings)"."""
        return "any one reading"

    @model_validator(mode="after")
    def _check_limits(self) -> Self:
        for n, limit in enumerate(self.limits, 1):
            where = f"rule {self.id}, limit {n} ({limit.measure})"
            try:
                value = limit.canonical_value(self.per_day)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            self._check_value(where, limit, value)
            if limit.canonical_hysteresis(self.per_day) > _CHANGE_RANGE[limit.measure]:
                raise ValueError(f"{where}: hysteresis {number(limit.hysteresis)} is too wide")
        if self.meal_contexts is not None and self.measures != (Measure.GLUCOSE,):
            raise ValueError(f"rule {self.id}: meal contexts apply to glucose limits only")
        self._check_bounds()
        self._check_confirm()
        return self

    def _check_confirm(self) -> None:
        if self.confirm_within_minutes is None:
            return
        if not self.judges_one_reading:
            raise ValueError(
                f"rule {self.id}: confirmation is for rules that fire on one reading"
                " (threshold, change); this one already needs several"
            )
        if all(limit.severity is Severity.CRITICAL for limit in self.limits):
            raise ValueError(
                f"rule {self.id}: a critical finding never waits for a repeat reading,"
                " so confirmation would change nothing: remove confirm_within_minutes"
            )

    def _check_value(self, where: str, limit: Limit, value: float) -> None:
        low, high = _LIMIT_RANGE[limit.measure]
        if not low <= value <= high:
            canonical = limit.measure.canonical_unit
            raise ValueError(
                f"{where}: {number(limit.value)} {limit.unit} is not a value a person can have"
                f" (limits must lie within {number(low)}-{number(high)} {canonical})"
            )

    def _check_bounds(self) -> None:
        """Per measure, every lower bound lies below every upper bound (else the rule
        would fire on every reading); and a more severe level lies further out."""
        for measure in self.measures:
            mine = [lim for lim in self.limits if lim.measure == measure]
            lows = [lim for lim in mine if not lim.op.upward]
            highs = [lim for lim in mine if lim.op.upward]
            if lows and highs:
                low = max(lows, key=lambda lim: lim.canonical_value(self.per_day))
                high = min(highs, key=lambda lim: lim.canonical_value(self.per_day))
                if low.canonical_value(self.per_day) >= high.canonical_value(self.per_day):
                    raise ValueError(
                        f"rule {self.id}: lower bound {number(low.value)} {low.unit}"
                        f" ({low.op.phrase}) is not below upper bound"
                        f" {number(high.value)} {high.unit} ({high.op.phrase}) for {measure}:"
                        " it would fire on every reading"
                    )
            for side in (lows, highs):
                _check_levels(self.id, measure, side, self.per_day)


def _check_levels(rule_id: str, measure: Measure, side: list[Limit], per_day: bool) -> None:
    ordered = sorted(side, key=lambda lim: lim.severity.rank)
    # Every pair, not neighbours only: two limits of one severity would hide each other.
    for milder, worse in itertools.combinations(ordered, 2):
        a, b = milder.canonical_value(per_day), worse.canonical_value(per_day)
        further = b >= a if milder.op.upward else b <= a
        if milder.severity != worse.severity and not further:
            raise ValueError(
                f"rule {rule_id}: the {worse.severity} limit {number(worse.value)} {worse.unit}"
                f" for {measure} is less extreme than the {milder.severity} limit"
                f" {number(milder.value)} {milder.unit}"
            )


class ThresholdRule(_LimitRule):
    """Fires on one reading beyond a limit."""

    kind: Literal["threshold"] = "threshold"


class CountRule(_LimitRule):
    """Fires when at least `n` of the last `of_last` readings are beyond a limit
    (`of_last` = `n`: n in a row)."""

    kind: Literal["count"] = "count"
    judges_one_reading: ClassVar[bool] = False
    n: int = Field(ge=2, le=50)
    of_last: int = Field(ge=2, le=100)

    @property
    def held_against(self) -> str:
        return (
            f"{self.n} in a row"
            if self.n == self.of_last
            else f"{self.n} of the last {self.of_last}"
        )

    @model_validator(mode="after")
    def _check_count(self) -> Self:
        if self.of_last < self.n:
            raise ValueError(
                f"rule {self.id}: of_last ({self.of_last}) is smaller than n ({self.n})"
            )
        return self


class MeanRule(_LimitRule):
    """Fires when the mean of the readings in the window is beyond a limit."""

    kind: Literal["mean"] = "mean"
    judges_one_reading: ClassVar[bool] = False
    window_hours: float = Field(gt=0, le=MAX_WINDOW_HOURS)
    # Fewer readings than this in the window make no mean worth alerting on.
    min_readings: int = Field(default=3, ge=1, le=500)

    @property
    def held_against(self) -> str:
        return f"the mean over {span(self.window_hours)} (at least {self.min_readings} readings)"


class ChangeRule(_LimitRule):
    """Fires when a reading has risen (or fallen) by at least a limit against the lowest
    (or highest) reading of the window before it: weight gain in a day or a week."""

    kind: Literal["change"] = "change"
    window_hours: float = Field(gt=0, le=MAX_WINDOW_HOURS)

    @property
    def held_against(self) -> str:
        return f"the change within {span(self.window_hours)}"

    def _check_value(self, where: str, limit: Limit, value: float) -> None:
        _check_change(where, limit, value, "change")


class SlopeRule(_LimitRule):
    """Fires when the least-squares slope of the window's readings, per day, is beyond
    a limit: a steady gain that no single day's change shows."""

    kind: Literal["slope"] = "slope"
    judges_one_reading: ClassVar[bool] = False
    window_hours: float = Field(gt=0, le=MAX_WINDOW_HOURS)
    min_readings: int = Field(default=4, ge=3, le=500)

    @property
    def per_day(self) -> bool:
        return True

    @property
    def held_against(self) -> str:
        return f"the slope over {span(self.window_hours)} (at least {self.min_readings} readings)"

    def _check_value(self, where: str, limit: Limit, value: float) -> None:
        _check_change(where, limit, value, "slope")


def _check_change(where: str, limit: Limit, value: float, what: str) -> None:
    if value == 0 or (value > 0) != limit.op.upward:
        raise ValueError(
            f"{where}: a {what} limit {limit.op.phrase} must be "
            + ("positive (a rise)" if limit.op.upward else "negative (a fall)")
        )
    largest = _CHANGE_RANGE[limit.measure]
    if abs(value) > largest:
        raise ValueError(
            f"{where}: a {what} of {number(limit.value)} {limit.unit} is not one a person can"
            f" have (at most {number(largest)} {limit.measure.canonical_unit})"
        )


class MissedRule(_Rule):
    """Fires when no reading of an expected kind has arrived for `days` whole days, in
    the patient's time zone. Run by the scheduler, not on ingest."""

    kind: Literal["missed"] = "missed"
    expects: list[ReadingKind] = Field(min_length=1)
    days: int = Field(ge=1, le=60)
    severity: Severity = Severity.WARNING

    @field_validator("expects")
    @classmethod
    def _distinct(cls, expects: list[ReadingKind]) -> list[ReadingKind]:
        return list(dict.fromkeys(expects))


class BaselineRule(_Rule):
    """Fires when a patient's readings drift from their own recent level: Page's
    one-sided CUSUM of the readings of the last `recent_hours`, each standardised by the
    mean and spread of the `learn_days` before it (Page, "Continuous inspection schemes",
    Biometrika 1954;41:100-115). Silent until that period holds `learn_readings`.

    With a steady baseline, a shift of d spreads (d > allowance) fires after
    ceil(decision / (d - allowance)) readings within `recent_hours`; with the defaults
    (0.5, 5) an unshifted patient's one-sided false-alarm interval is about 930 readings,
    a 1-spread shift is caught in about 10, a 2-spread one in about 4 (Montgomery,
    Introduction to Statistical Quality Control, 8th ed., section 9.1, table 9.3).
    """

    kind: Literal["baseline"] = "baseline"
    measure: Measure
    direction: Literal["up", "down"]
    # The spread never counts as smaller than this, in `unit`: a patient whose readings
    # barely vary (or a constant test signal) would otherwise alert on a device's noise.
    min_spread: float = Field(gt=0)
    unit: str = Field(description="min_spread's unit: one of the measure's (mmHg, lb, ...)")
    learn_days: float = Field(default=14, ge=3, le=60)
    learn_readings: int = Field(default=10, ge=5, le=500)
    # The readings judged at once; they are kept out of the baseline they are judged
    # against, so a drift cannot hide by moving it.
    recent_hours: float = Field(default=72, gt=0, le=14 * 24)
    # CUSUM's k and h, in spreads (standard deviations).
    allowance_sd: float = Field(default=0.5, gt=0, le=3)
    decision_sd: float = Field(default=5.0, gt=0, le=20)
    severity: Severity = Severity.WARNING
    meal_contexts: list[MealContext] | None = None

    # No fixed limit to edit or draw: the limit is the patient's own baseline.
    limits: ClassVar[tuple[Limit, ...]] = ()

    @property
    def measures(self) -> tuple[Measure, ...]:
        return (self.measure,)

    @property
    def per_day(self) -> bool:
        return False

    @property
    def held_against(self) -> str:
        return (
            f"the patient's own baseline ({self.direction}; the last {span(self.recent_hours)}"
            f" against the {span(self.learn_days * 24)} before)"
        )

    def canonical_min_spread(self) -> float:
        return self.min_spread * unit_factor(self.measure, self.unit)

    @model_validator(mode="after")
    def _check_baseline(self) -> Self:
        where = f"rule {self.id} ({self.measure})"
        try:
            spread = self.canonical_min_spread()
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        largest = _CHANGE_RANGE[self.measure]
        if spread > largest / 5:
            raise ValueError(
                f"{where}: a minimum spread of {number(self.min_spread)} {self.unit} is wider"
                f" than any patient's (at most {number(largest / 5)}"
                f" {self.measure.canonical_unit})"
            )
        if self.learn_readings > self.learn_days * 24:
            raise ValueError(
                f"{where}: {self.learn_readings} readings cannot be learned in"
                f" {number(self.learn_days)} days at one an hour: lower learn_readings"
            )
        if self.meal_contexts is not None and self.measure is not Measure.GLUCOSE:
            raise ValueError(f"rule {self.id}: meal contexts apply to glucose only")
        return self


LimitRule = ThresholdRule | CountRule | MeanRule | ChangeRule | SlopeRule
ReadingRule = LimitRule | BaselineRule
Rule = Annotated[ReadingRule | MissedRule, Field(discriminator="kind")]


class Notify(_Strict):
    """Who hears of an alert beyond the worklist (every alert is on the worklist)."""

    # Severities that also go by SMS to the on-call nurse; None: the care team's routing.
    sms: list[Severity] | None = None


class CarePlan(_Strict):
    rules: list[Rule] = Field(max_length=100)
    notify: Notify = Notify()

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id} appears twice: rule ids must be unique")
            seen.add(rule.id)
        return self

    def reading_rules(self) -> list[ReadingRule]:
        return [r for r in self.rules if r.enabled and not isinstance(r, MissedRule)]

    def missed_rules(self) -> list[MissedRule]:
        return [r for r in self.rules if r.enabled and isinstance(r, MissedRule)]

    def with_limit_values(self, values: Mapping[tuple[str, int], float]) -> CarePlan:
        """This plan with limits set to new values: (rule id, the limit's place in the
        rule, from 0) -> the value, in the limit's own unit. Validated as any plan is (a
        pydantic ValidationError saying what is wrong)."""
        document = self.model_dump(mode="json")
        limits = {
            (rule["id"], n): limit
            for rule in document["rules"]
            for n, limit in enumerate(rule.get("limits", ()))
        }
        for (rule_id, n), value in values.items():
            if (rule_id, n) not in limits:
                raise ValueError(f"the plan has no rule {rule_id} with a limit {n + 1}")
            limits[rule_id, n]["value"] = value
        return CarePlan.model_validate(document)


def diff(old: CarePlan, new: CarePlan) -> dict[str, Any]:
    """What changed between two plans, rule by rule and field by field."""
    before = {r.id: r.model_dump(mode="json") for r in old.rules}
    after = {r.id: r.model_dump(mode="json") for r in new.rules}
    changed = []
    for rule_id in before.keys() & after.keys():
        fields = [
            {"field": name, "from": before[rule_id].get(name), "to": after[rule_id].get(name)}
            for name in sorted(before[rule_id].keys() | after[rule_id].keys())
            if before[rule_id].get(name) != after[rule_id].get(name)
        ]
        if fields:
            changed.append({"rule": rule_id, "fields": fields})
    notify = old.notify.model_dump(mode="json"), new.notify.model_dump(mode="json")
    return {
        "added": [after[i] for i in after if i not in before],
        "removed": [before[i] for i in before if i not in after],
        "changed": sorted(changed, key=lambda c: str(c["rule"])),
        "notify": None if notify[0] == notify[1] else {"from": notify[0], "to": notify[1]},
    }


def number(value: float) -> str:
    """180, not 180.0; 1.4, not 1.4000000000000001."""
    return f"{value:.10g}"


# Decimals to show a value with, by unit: a cuff reads whole mmHg, a scale tenths.
_DECIMALS = {"mmHg": 0, "kPa": 1, "bpm": 0, "/min": 0, "kg": 1, "lb": 1, "mg/dL": 0, "mmol/L": 1}


def rounded(value: float, unit: str) -> str:
    """A measured value to its unit's decimals (a per-day unit's too): "182", "81.4"."""
    return f"{value:.{_DECIMALS.get(unit.removesuffix(PER_DAY), 1)}f}"


def span(hours: float) -> str:
    """A rule's window in words: "24 h", "7 days"."""
    if hours % 24 == 0 and hours > 24:
        return f"{int(hours // 24)} days"
    return f"{hours:g} h"
