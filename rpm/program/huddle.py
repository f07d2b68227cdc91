"""The huddle board: a care team's patients for its daily meeting, each with the last
reading of each measure against the plan's limits, a 7-day trend, open alerts, days with
readings this period, minutes this month and who follows the patient up; the patients
who need discussion first. Pure: the service reads, this decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rpm.program.adherence import Adherence, Standing
from rpm.rules.evaluate import beyond
from rpm.rules.plan import CarePlan, Limit, Measure, Severity, ThresholdRule, number

# Under this change of the 7-day mean against the 7 days before, in canonical units, a
# measure is steady: about the day-to-day noise of a home measurement (systolic SD ~8 mmHg
# over a week's mean of 7-14 readings; a scale's 0.3-0.8 kg), so that an arrow means a
# change a clinician would call one. An assumption, documented in docs/web-ui.md.
STEADY_WITHIN: dict[Measure, float] = {
    Measure.SYSTOLIC: 5.0,
    Measure.DIASTOLIC: 3.0,
    Measure.PULSE: 5.0,
    Measure.WEIGHT: 1.0,
    Measure.GLUCOSE: 15.0,
}
_MEASURE_ORDER = list(Measure)
# A patient silent this long (whole days) is worth a word at the huddle.
SILENT_DAYS_TO_DISCUSS = 3


class Trend(StrEnum):
    UP = "up"
    DOWN = "down"
    STEADY = "steady"
    UNKNOWN = "unknown"  # fewer than a reading in each of the two weeks

    @property
    def mark(self) -> str:
        return {"up": "↑", "down": "↓", "steady": "→", "unknown": "·"}[self.value]


def trend(measure: Measure, recent_mean: float | None, previous_mean: float | None) -> Trend:
    """The 7-day mean against the 7 days before it."""
    if recent_mean is None or previous_mean is None:
        return Trend.UNKNOWN
    change = recent_mean - previous_mean
    if abs(change) < STEADY_WITHIN[measure]:
        return Trend.STEADY
    return Trend.UP if change > 0 else Trend.DOWN


@dataclass(frozen=True)
class MeasureSummary:
    """One measure's last value (canonical unit) and its last two weeks' means."""

    measure: Measure
    value: float
    measured_at: datetime
    recent_mean: float | None
    previous_mean: float | None


def plan_limits(plan: CarePlan | None) -> dict[Measure, list[Limit]]:
    """The limits of the plan's enabled one-reading rules (threshold rules for every
    reading, not those for some meal contexts only), by measure."""
    found: dict[Measure, list[Limit]] = {}
    for rule in plan.reading_rules() if plan is not None else ():
        if isinstance(rule, ThresholdRule) and not rule.meal_contexts:
            for limit in rule.limits:
                found.setdefault(limit.measure, []).append(limit)
    return found


def breached_limit(plan: CarePlan | None, measure: Measure, value: float) -> Limit | None:
    """The most severe of the plan's one-reading limits (`plan_limits`) that this value
    is beyond."""
    return _most_severe_beyond(plan_limits(plan).get(measure, ()), value)


def _most_severe_beyond(limits: Sequence[Limit], value: float) -> Limit | None:
    found: Limit | None = None
    for limit in limits:
        if beyond(limit, value) and (found is None or limit.severity.rank > found.severity.rank):
            found = limit
    return found


@dataclass(frozen=True)
class MeasureMark:
    measure: Measure
    value: float
    measured_at: datetime
    # The limit the last value is beyond (None: within the plan's limits).
    limit: Limit | None
    trend: Trend

    @property
    def shown(self) -> str:
        """The value in the canonical unit: "152 mmHg"."""
        return f"{number(round(self.value, 1))} {self.measure.canonical_unit}"


@dataclass(frozen=True)
class OpenAlert:
    id: int
    rule_id: str
    severity: Severity
    message: str


@dataclass(frozen=True)
class PatientOnBoard:
    """What the service read of one patient."""

    patient_id: int
    external_ref: str
    name: str
    time_zone: str
    plan: CarePlan | None
    measures: Sequence[MeasureSummary]
    open_alerts: Sequence[OpenAlert]
    adherence: Adherence | None
    minutes_this_month: int
    follow_up: str | None
    silent_days: int | None  # whole local days since the last reading (None: never read)


@dataclass(frozen=True)
class HuddleRow:
    patient: PatientOnBoard
    marks: list[MeasureMark]
    # Why the patient is worth discussing, in words, most pressing first (empty: stable).
    reasons: list[str]
    # The most severe thing about the patient: an open alert or a last value past a limit.
    severity: Severity | None

    @property
    def needs_discussion(self) -> bool:
        return bool(self.reasons)


def board(patients: Sequence[PatientOnBoard]) -> list[HuddleRow]:
    """The rows, patients who need discussion first: the most severe open alert or last
    value first, then the most reasons, then the least adherence slack. The trends order
    nothing: a page of rows built again with its means keeps its order."""
    # Patients of one template share its plan (`care_plans.plans`): its limits are
    # sorted out once, not once a patient.
    limits: dict[int, dict[Measure, list[Limit]]] = {}
    rows = []
    for patient in patients:
        if id(patient.plan) not in limits:
            limits[id(patient.plan)] = plan_limits(patient.plan)
        rows.append(_row(patient, limits[id(patient.plan)]))
    rows.sort(
        key=lambda r: (
            -(r.severity.rank if r.severity else 0),
            -len(r.reasons),
            r.patient.adherence.slack if r.patient.adherence else 99,
            r.patient.external_ref,
        )
    )
    return rows


def _row(patient: PatientOnBoard, limits: dict[Measure, list[Limit]]) -> HuddleRow:
    marks = [
        MeasureMark(
            m.measure,
            m.value,
            m.measured_at,
            _most_severe_beyond(limits.get(m.measure, ()), m.value),
            trend(m.measure, m.recent_mean, m.previous_mean),
        )
        # Systolic before diastolic, as a blood pressure is read.
        for m in sorted(patient.measures, key=lambda m: _MEASURE_ORDER.index(m.measure))
    ]
    reasons: list[str] = []
    ranks = [a.severity.rank for a in patient.open_alerts]
    if patient.open_alerts:
        top = Severity.of_rank(max(ranks))
        count = len(patient.open_alerts)
        reasons.append(f"{count} open alert{'s' if count != 1 else ''} ({top.value})")
    for mark in marks:
        if mark.limit is not None:
            ranks.append(mark.limit.severity.rank)
            reasons.append(
                f"last {mark.measure.value} {mark.shown}: {mark.limit.condition}"
                f" ({mark.limit.severity.value})"
            )
    if patient.silent_days is None:
        reasons.append("no reading yet")
    elif patient.silent_days >= SILENT_DAYS_TO_DISCUSS:
        reasons.append(f"no reading for {patient.silent_days} days")
    adherence = patient.adherence
    if adherence and adherence.standing in (Standing.AT_RISK, Standing.OUT_OF_REACH):
        standing = "out of reach" if adherence.standing is Standing.OUT_OF_REACH else "at risk"
        reasons.append(f"days with readings {standing}: {adherence.summary}")
    return HuddleRow(patient, marks, reasons, Severity.of_rank(max(ranks)) if ranks else None)
