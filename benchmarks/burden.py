"""Alert-burden benchmark: what a set of care-plan templates asks of the nurses.

    python -m benchmarks.burden                (or: make bench-burden)

Plays a simulated population (`simulators.population`: 1,000 patients over 90 days by
default) through the rule engine's own pure evaluation, fast-forwarded, with no database
and no broker: for each device upload, in arrival order, what `RuleEngine._evaluate`
does (the rules a batch can fire, `_rules_to_check`; its history window, back to a
resolved alert's last firing; `trace` and `findings` at the batch's readings; the alert
policy's `alert_writes` against the patient's latest alert per rule; the store's one
open alert per patient and rule); and at each local midnight, what `check_missed` does.
A finding that may wait for a repeat reading is held as the engine holds it; the patient
re-measures by their adherence, the repeat drawn from their own readings (`Store.repeat`),
and a held finding with no repeat is raised as `check_confirmations` raises it. A nurse
resolves each alert some hours after it opened (`RESOLVE_AFTER_HOURS`).

Prints, per rule and overall, for each template set of `TEMPLATE_SETS`: alerts per 100
patient-days, worklist items a day for 1,000 patients, recall of the labelled events by
severity, the median time from an event's onset to its first alert, and the share of
alerts that belong to no labelled event; beside the critical events, those a rule could
see (`detectable`). docs/benchmarks.md has the method and figures.
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from rpm.config import RulesSettings
from rpm.devices.model import ReadingKind
from rpm.rules.confirmation import unanswered
from rpm.rules.engine import EPISODE_MEMORY, _confirmation, _confirms, _rules_to_check
from rpm.rules.evaluate import (
    Context,
    Finding,
    History,
    HistoryRow,
    ReadingKey,
    findings,
    lookback_hours,
    missed,
    trace,
)
from rpm.rules.plan import (
    READING_KINDS,
    BaselineRule,
    CarePlan,
    Measure,
    MissedRule,
    Rule,
    Severity,
)
from rpm.rules.policy import AlertWrite, LatestAlert, alert_writes
from rpm.rules.repository import HeldFinding, NewReading
from rpm.rules.templates import plan_from_templates
from simulators.population import (
    BP,
    DAY_S,
    GLUCOSE,
    HOUR_S,
    KG_PER_LB,
    KINDS,
    MEALS,
    NO_MEAL,
    WEIGHT,
    Event,
    EventKind,
    Patient,
    Population,
    simulate,
)

PlanFactory = Callable[[Sequence[str]], CarePlan]
# The template sets to compare: a name and what makes a patient's plan from the names of
# their conditions (the template names). Another set to compare is one more line.
TEMPLATE_SETS: dict[str, PlanFactory] = {
    "today": plan_from_templates,
    # The personal variants: repeats before a non-critical reading alerts, baseline rules,
    # and missed readings after longer gaps (rpm.rules.templates, docs/care-plans.md).
    "personal": lambda names: plan_from_templates([f"{name}_personal" for name in names]),
}
PLAN_VERSION = 1
# When the nurse resolves an alert, after it opened: critical ones at once, high ones
# within the shift, warnings the next day (an assumption: set it to a programme's own).
RESOLVE_AFTER_HOURS = {Severity.CRITICAL: 1.0, Severity.HIGH: 8.0, Severity.WARNING: 24.0}
# The missed-readings check runs every interval; the first run after a local midnight is
# the one that can decide anything new (a gap grows only when a local day ends).
MISSED_CHECK_AFTER_S = float(RulesSettings.model_fields["missed_check_interval_s"].default)
# A held finding with no repeat becomes an alert at the first confirmation check after
# its window.
CONFIRM_CHECK_AFTER_S = float(RulesSettings.model_fields["confirm_check_interval_s"].default)
# A patient asked to re-measure does so on the chance they measure on a day (their
# adherence), between a few minutes after the SMS and the end of the rule's window.
# The repeat shows what one of their own readings of that kind (and meal context) within
# 3 days shows, drawn at random: their level then, events and device faults included. It
# ignores how a repeat minutes later resembles the first reading (an assumption).
REPEAT_AFTER_S = 5 * 60.0
REPEAT_ARRIVES_AFTER_S = 10.0
REPEAT_DRAWN_WITHIN_S = 3 * DAY_S
REPEAT_STREAM = 19
# An alert belongs to an event when one of its firings falls between the event's onset
# and a day after its end.
EVENT_GRACE_S = DAY_S

# What an alert must be about to belong to an event: a measure group and a direction.
ADHERENCE = "adherence"
EVENT_FAMILY = {
    EventKind.HYPERTENSIVE_CRISIS: "blood_pressure_high",
    EventKind.UNCONTROLLED_BP: "blood_pressure_high",
    EventKind.DECOMPENSATION: "weight_high",
    EventKind.HYPOGLYCAEMIA: "glucose_low",
    EventKind.HYPERGLYCAEMIA: "glucose_high",
    EventKind.DROP_OUT: ADHERENCE,
}
# The readings an event shows in (a drop-out shows in their absence).
EVENT_READINGS = {
    EventKind.HYPERTENSIVE_CRISIS: BP,
    EventKind.UNCONTROLLED_BP: BP,
    EventKind.DECOMPENSATION: WEIGHT,
    EventKind.HYPOGLYCAEMIA: GLUCOSE,
    EventKind.HYPERGLYCAEMIA: GLUCOSE,
}
# The smallest gain the heart-failure guidance names (2 lb; HF_2022 in rpm.rules.templates):
# the simulator draws a quarter of its decompensations below it (docs/benchmarks.md).
DETECTABLE_GAIN_KG = 2 * KG_PER_LB
_GROUP = {
    Measure.SYSTOLIC: "blood_pressure",
    Measure.DIASTOLIC: "blood_pressure",
    Measure.PULSE: "pulse",
    Measure.WEIGHT: "weight",
    Measure.GLUCOSE: "glucose",
}
_MEASURE_FIELDS = (
    (Measure.SYSTOLIC, "systolic"),
    (Measure.DIASTOLIC, "diastolic"),
    (Measure.PULSE, "pulse"),
    (Measure.WEIGHT, "weight_kg"),
    (Measure.GLUCOSE, "glucose_mg_dl"),
)
# The store's columns: real (float32) but for weight (double precision).
_FLOAT32 = {Measure.SYSTOLIC, Measure.DIASTOLIC, Measure.PULSE, Measure.GLUCOSE}


def families(rule: Rule) -> frozenset[str]:
    """What a rule's alerts are about: "weight_high", "glucose_low", ..., "adherence"."""
    if isinstance(rule, MissedRule):
        return frozenset({ADHERENCE})
    if isinstance(rule, BaselineRule):
        return frozenset({f"{_GROUP[rule.measure]}_{'high' if rule.direction == 'up' else 'low'}"})
    return frozenset(
        f"{_GROUP[lim.measure]}_{'high' if lim.op.upward else 'low'}" for lim in rule.limits
    )


# --- the replay ---------------------------------------------------------------------------


@dataclass
class Alert:
    """One alert as the store keeps it, in seconds from the start."""

    rule_id: str
    severity: Severity
    opened_at: float
    resolve_at: float
    first: float
    last: float
    # When each firing written to it was (a missed-readings check's: when it ran).
    firings: list[float] = field(default_factory=list)
    raises: int = 0
    resolved: bool = False


@dataclass
class Replay:
    """One patient under one plan: the alerts raised, and the firings per rule."""

    alerts: list[Alert] = field(default_factory=list)
    firings: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)


class Store:
    """A patient's readings as the engine reads them from the store, and the repeat
    readings the replay adds when a held finding asks the patient to re-measure."""

    def __init__(self, patient: Patient, start: datetime) -> None:
        r = patient.readings
        self.patient = patient
        self.start = start
        # The simulated readings; the repeats come after them.
        self.taken = len(r.times)
        self.times = r.times
        self.arrivals = r.arrivals
        self.kinds = r.kinds
        self.epoch = start.timestamp() + r.times
        self.columns: dict[Measure, np.ndarray] = {}
        for measure, name in _MEASURE_FIELDS:
            values = getattr(r, name)
            if measure in _FLOAT32:
                values = values.astype(np.float32).astype(np.float64)
            self.columns[measure] = values
        self.meal = np.array([None if m == NO_MEAL else MEALS[m] for m in r.meal], dtype=object)
        self.keys = [self._key(float(t), int(k)) for t, k in zip(r.times, r.kinds, strict=True)]
        # Its own stream per patient, for the repeats: the population's draws stay as they were.
        self.rng = np.random.default_rng([patient.number, REPEAT_STREAM])

    def _key(self, at: float, kind: int) -> ReadingKey:
        # One device per kind: device id 3 * (patient - 1) + kind + 1.
        device = 3 * (self.patient.number - 1) + kind + 1
        return ReadingKey(device, KINDS[kind].value, self.start + timedelta(seconds=at))

    def row(self, i: int) -> HistoryRow:
        def value(measure: Measure) -> float | None:
            v = float(self.columns[measure][i])
            return None if np.isnan(v) else v

        return HistoryRow(
            self.keys[i],
            value(Measure.SYSTOLIC),
            value(Measure.DIASTOLIC),
            value(Measure.PULSE),
            value(Measure.WEIGHT),
            value(Measure.GLUCOSE),
            self.meal[i],
        )

    def history(self, rows: np.ndarray) -> History:
        """The rows (in time order, then device order, as the store returns them)."""
        return History(
            times=self.epoch[rows],
            columns={m: c[rows] for m, c in self.columns.items()},
            meal=self.meal[rows],
            keys=tuple(self.keys[i] for i in rows),
        )

    def batches(self) -> Iterator[tuple[float, np.ndarray]]:
        """Each device upload: when the store has it, and its readings."""
        if not len(self.times):
            return
        order = np.lexsort((self.times, self.kinds, self.arrivals))
        arrivals, kinds = self.arrivals[order], self.kinds[order]
        cuts = np.flatnonzero((np.diff(arrivals) != 0) | (np.diff(kinds) != 0)) + 1
        for group in np.split(order, cuts):
            yield float(self.arrivals[group[0]]), np.sort(group)

    def repeat(self, i: int, at: float) -> int | None:
        """The patient re-measures reading i at `at`: what their own readings of that kind
        (and meal context) within `REPEAT_DRAWN_WITHIN_S` show, one of them drawn at random
        (None if there is none). It arrives `REPEAT_ARRIVES_AFTER_S` later."""
        kind = self.kinds[i]
        near = (
            (self.kinds[: self.taken] == kind)
            & (np.abs(self.times[: self.taken] - self.times[i]) <= REPEAT_DRAWN_WITHIN_S)
            & (self.meal[: self.taken] == self.meal[i])
        )
        if i < self.taken:  # a repeat can itself be held, and asked to be repeated
            near[i] = False
        donors = np.flatnonzero(near)
        if not donors.size:
            return None
        donor = int(self.rng.choice(donors))
        self.times = np.append(self.times, at)
        self.arrivals = np.append(self.arrivals, at + REPEAT_ARRIVES_AFTER_S)
        self.kinds = np.append(self.kinds, kind)
        self.epoch = np.append(self.epoch, self.start.timestamp() + at)
        for measure, column in self.columns.items():
            self.columns[measure] = np.append(column, column[donor])
        self.meal = np.append(self.meal, np.array([self.meal[i]], dtype=object))
        self.keys.append(self._key(at, int(kind)))
        return len(self.times) - 1


def replay(
    patient: Patient,
    plan: CarePlan,
    start: datetime,
    days: int,
    resolve_after: Mapping[Severity, float] = RESOLVE_AFTER_HOURS,
) -> Replay:
    """Every decision the service would make for this patient over the period."""
    store = Store(patient, start)
    context = Context(PLAN_VERSION, ZoneInfo(patient.time_zone))
    # (when, order at one instant, sequence, what): an upload's rows, a missed-readings
    # check (None), or the confirmation check that comes for a held finding (its number).
    steps: list[tuple[float, int, int, np.ndarray | int | None]] = []
    for at, rows in store.batches():
        steps.append((at, 0, len(steps), rows))
    if plan.missed_rules():
        steps += [
            (at, 1, len(steps) + n, None) for n, at in enumerate(missed_checks(patient, days))
        ]
    heapq.heapify(steps)
    result = Replay()
    latest: dict[str, Alert] = {}
    held: dict[str, HeldFinding] = {}
    sequence = len(steps)
    while steps:
        now, _, _, what = heapq.heappop(steps)
        for alert in latest.values():
            alert.resolved = alert.resolved or alert.resolve_at <= now
        if what is None:
            found = _missed_findings(store, plan, context, start, now)
        elif isinstance(what, int):
            found = _unanswered(held, what)
        else:
            found, asked = _batch_findings(store, plan, context, latest, held, now, what)
            for rule_id in asked:
                sequence += 1
                one = held[rule_id] = replace(held[rule_id], id=sequence)
                check = (one.due_at - start).total_seconds() + CONFIRM_CHECK_AFTER_S
                heapq.heappush(steps, (check, 2, sequence, sequence))
                repeat = _repeat(store, one, now, days)
                if repeat is not None:
                    sequence += 1
                    arrives = float(store.arrivals[repeat])
                    heapq.heappush(steps, (arrives, 0, sequence, np.array([repeat])))
        by_rule: dict[str, list[Finding]] = {}
        for finding in found:
            by_rule.setdefault(finding.rule_id, []).append(finding)
        for rule_id, mine in by_rule.items():
            result.firings[rule_id] += len(mine)
            state = {rule_id: _latest(latest[rule_id], start)} if rule_id in latest else {}
            writes, suppressed = alert_writes(patient.number, PLAN_VERSION, mine, state)
            result.suppressed[rule_id] += suppressed
            for write in writes:
                _apply(write, latest, result, now, start, resolve_after)
    return result


def _repeat(store: Store, held: HeldFinding, now: float, days: int) -> int | None:
    """Whether the patient asked to re-measure does so within the rule's window (on the
    chance they measure on a day), and the repeat reading if they do."""
    if store.rng.random() >= store.patient.daily:
        return None
    assert held.finding.key is not None
    latest_at = held.within_minutes * 60 - REPEAT_ARRIVES_AFTER_S
    at = round(now + store.rng.uniform(REPEAT_AFTER_S, latest_at))
    return store.repeat(store.keys.index(held.finding.key), at) if at < days * DAY_S else None


def _unanswered(held: dict[str, HeldFinding], check: int) -> list[Finding]:
    """`RuleEngine.check_confirmations` for the held finding this check came for, if it
    is still held: its window passed without a repeat, and the alert is raised."""
    for rule_id, one in list(held.items()):
        if one.id == check:
            del held[rule_id]
            return [unanswered(one.finding, one.within_minutes)]
    return []


def missed_checks(patient: Patient, days: int) -> list[float]:
    """When the missed-readings check runs for the patient: after each local midnight."""
    return [
        float(m) + MISSED_CHECK_AFTER_S
        for m in patient.midnights
        if 0 < m + MISSED_CHECK_AFTER_S < days * DAY_S
    ]


def _latest(alert: Alert, start: datetime) -> LatestAlert:
    return LatestAlert(0, alert.resolved, start + timedelta(seconds=alert.last))


def _batch_findings(
    store: Store,
    plan: CarePlan,
    context: Context,
    latest: Mapping[str, Alert],
    held: dict[str, HeldFinding],
    now: float,
    rows: np.ndarray,
) -> tuple[list[Finding], list[str]]:
    """`RuleEngine._evaluate` for one patient's batch, on the readings stored by `now`:
    the findings to write, and the rules that now hold one while the patient is asked
    to re-measure (`held` has it; every patient has a phone and consents to SMS)."""
    new = [NewReading(store.patient.number, store.keys[i], store.row(i)) for i in rows]
    rules = _rules_to_check(plan, new, set(held))
    if not rules:
        return [], []
    first, last = float(store.times[rows].min()), float(store.times[rows].max())
    since = first - max(lookback_hours(r) for r in rules) * HOUR_S
    resolved = [a.last for a in latest.values() if a.resolved]
    if resolved:
        since = min(since, max(min(resolved), first - EPISODE_MEMORY.total_seconds()))
    kinds = {_kind_index(k) for r in rules for m in r.measures for k in READING_KINDS[m]}
    window = np.flatnonzero(
        (store.times >= since)
        & (store.times <= last)
        & (store.arrivals <= now)
        & np.isin(store.kinds, list(kinds))
    )
    # In time order, then device order, as the store returns them (a repeat comes last).
    window = window[np.lexsort((store.kinds[window], store.times[window]))]
    history = store.history(window)
    place = {int(row): n for n, row in enumerate(window)}
    at = [place[int(i)] for i in rows]
    found: list[Finding] = []
    asked: list[str] = []
    for rule in rules:
        traced = trace(rule, history)
        fired = findings(traced, history, context, at)
        waiting = held.get(rule.id)
        if waiting is None and not _confirms(rule):
            found += fired
            continue
        mine = _latest(latest[rule.id], store.start) if rule.id in latest else None
        settled = _confirmation(traced, history, at, fired, waiting, mine, True)
        found += settled.write
        if waiting is not None and settled.settled is not None:
            del held[rule.id]
        if settled.hold is None:
            continue
        if waiting is not None:
            # The store still holds the settled one: the insert conflicts, and the engine
            # raises the finding at once.
            found.append(settled.hold)
            continue
        assert not isinstance(rule, BaselineRule)
        assert rule.confirm_within_minutes is not None
        minutes = rule.confirm_within_minutes
        due = store.start + timedelta(seconds=now, minutes=minutes)
        held[rule.id] = HeldFinding(0, store.patient.number, PLAN_VERSION, minutes, due,
                                    settled.hold)  # fmt: skip
        asked.append(rule.id)
    return found, asked


def _missed_findings(
    store: Store, plan: CarePlan, context: Context, start: datetime, now: float
) -> list[Finding]:
    """`RuleEngine.check_missed` for one patient: its candidates (the store's coarse
    filter) and `missed` on them."""
    found = []
    for rule in plan.missed_rules():
        last: dict[ReadingKind, datetime | None] = {}
        for kind in rule.expects:
            stored = store.times[(store.kinds == _kind_index(kind)) & (store.arrivals <= now)]
            at = float(stored.max()) if stored.size else None
            # The candidates query: coalesce(last, enrolled) < now - days + 1 hour.
            if (at if at is not None else 0.0) < now - rule.days * DAY_S + HOUR_S:
                last[kind] = None if at is None else start + timedelta(seconds=at)
        if last:
            finding = missed(rule, last, start, start + timedelta(seconds=now), context)
            if finding is not None:
                found.append(finding)
    return found


def _kind_index(kind: ReadingKind) -> int:
    """The simulator's index of a reading kind; -1 for one it does not make (heart rate)."""
    return next((i for i, k in enumerate(KINDS) if k.value == kind.value), -1)


def _apply(
    write: AlertWrite,
    latest: dict[str, Alert],
    result: Replay,
    now: float,
    start: datetime,
    resolve_after: Mapping[Severity, float],
) -> None:
    """The store's upsert: update the open alert for the rule, or open one."""

    def seconds(at: datetime) -> float:
        return (at - start).total_seconds()

    firings = [seconds(k.measured_at) for k in write.triggers] or [seconds(write.last_triggered_at)]
    first, last = seconds(write.first_triggered_at), seconds(write.last_triggered_at)
    alert = latest.get(write.rule_id)
    if alert is not None and not alert.resolved:
        if write.severity.rank > alert.severity.rank:
            alert.severity = write.severity
            alert.raises += 1
        alert.first, alert.last = min(alert.first, first), max(alert.last, last)
        alert.firings += firings
        return
    alert = Alert(
        write.rule_id,
        write.severity,
        opened_at=now,
        resolve_at=now + resolve_after[write.severity] * HOUR_S,
        first=first,
        last=last,
        firings=firings,
    )
    latest[write.rule_id] = alert
    result.alerts.append(alert)


# --- the metrics --------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table: a rule, or all of them."""

    name: str
    firings: int
    alerts: int
    raises: int
    per_100_patient_days: float
    worklist_per_day_per_1000: float
    # (caught, labelled) events of the kinds it is about, critical and not; and the
    # critical ones a rule could see (`detectable`).
    critical: tuple[int, int]
    other: tuple[int, int]
    detectable_critical: tuple[int, int]
    median_hours_to_alert: float | None
    median_hours_critical: float | None
    unlabelled: float | None  # share of its alerts that belong to no event


@dataclass(frozen=True)
class Scored:
    """A patient's replay with what the scoring needs."""

    patient: Patient
    replay: Replay


def score(
    scored: Sequence[Scored], rule_families: Mapping[str, frozenset[str]], days: int
) -> list[Row]:
    """Per rule (in the order given), then overall."""
    patients = len(scored)
    rows = [_row(rule, {rule}, scored, rule_families, patients, days) for rule in rule_families]
    return [*rows, _row("all", set(rule_families), scored, rule_families, patients, days)]


def _row(
    name: str,
    rules: set[str],
    scored: Sequence[Scored],
    rule_families: Mapping[str, frozenset[str]],
    patients: int,
    days: int,
) -> Row:
    about = set().union(*(rule_families[r] for r in rules))
    alerts = [(s, a) for s in scored for a in s.replay.alerts if a.rule_id in rules]
    caught = {True: [0, 0], False: [0, 0]}
    seen = [0, 0]
    delays, critical_delays = [], []
    for s in scored:
        for event in s.patient.events:
            family = EVENT_FAMILY[event.kind]
            if family not in about:
                continue
            caught[event.critical][1] += 1
            visible = event.critical and detectable(event, s.patient)
            seen[1] += visible
            hits = [
                t - event.onset
                for a in s.replay.alerts
                if a.rule_id in rules and family in rule_families[a.rule_id]
                for t in a.firings
                if event.onset <= t <= event.end + EVENT_GRACE_S
            ]
            if hits:
                caught[event.critical][0] += 1
                seen[0] += visible
                delays.append(max(0.0, min(hits)) / HOUR_S)
                if event.critical:
                    critical_delays.append(delays[-1])
    unlabelled = sum(not _belongs(a, s.patient, rule_families[a.rule_id]) for s, a in alerts)
    opened = len(alerts)
    raises = sum(a.raises for _, a in alerts)
    return Row(
        name=name,
        firings=sum(s.replay.firings[r] for s in scored for r in rules),
        alerts=opened,
        raises=raises,
        per_100_patient_days=100 * opened / (patients * days) if patients else 0.0,
        worklist_per_day_per_1000=(opened + raises) / days * 1000 / patients if patients else 0.0,
        critical=(caught[True][0], caught[True][1]),
        other=(caught[False][0], caught[False][1]),
        detectable_critical=(seen[0], seen[1]),
        median_hours_to_alert=statistics.median(delays) if delays else None,
        median_hours_critical=statistics.median(critical_delays) if critical_delays else None,
        unlabelled=unlabelled / opened if opened else None,
    )


def detectable(event: Event, patient: Patient) -> bool:
    """Whether any rule could see the event: at least one reading of its measure while it
    lasted (a crisis between two measuring days is seen by none); for a decompensation,
    one at least `DETECTABLE_GAIN_KG` above the patient's mean of the week before its
    onset (a smaller gain is within a stable patient's day-to-day weight)."""
    if event.kind not in EVENT_READINGS:
        return True
    r = patient.readings
    mine = r.kinds == EVENT_READINGS[event.kind]
    during = mine & (r.times >= event.onset) & (r.times <= event.end)
    if not during.any():
        return False
    before = mine & (r.times < event.onset) & (r.times >= event.onset - 7 * DAY_S)
    if event.kind is not EventKind.DECOMPENSATION or not before.any():
        return True
    gain = float(r.weight_kg[during].max() - r.weight_kg[before].mean())
    return gain >= DETECTABLE_GAIN_KG


def _belongs(alert: Alert, patient: Patient, about: frozenset[str]) -> bool:
    return any(
        EVENT_FAMILY[e.kind] in about and e.onset <= t <= e.end + EVENT_GRACE_S
        for e in patient.events
        for t in alert.firings
    )


def rule_families_of(plans: Iterable[CarePlan]) -> dict[str, frozenset[str]]:
    """Every rule of these plans, in first-seen order, and what it is about."""
    found: dict[str, frozenset[str]] = {}
    for plan in plans:
        for rule in plan.rules:
            found[rule.id] = found.get(rule.id, frozenset()) | families(rule)
    return found


def run(population: Population, factory: PlanFactory) -> list[Row]:
    """The population under one template set: the table."""
    plans: dict[frozenset[str], CarePlan] = {}
    scored = []
    for patient in population.patients:
        names = sorted(c.value for c in patient.conditions)
        plan = plans.setdefault(patient.conditions, factory(names))
        scored.append(Scored(patient, replay(patient, plan, population.start, population.days)))
    return score(scored, rule_families_of(plans.values()), population.days)


# --- the report ---------------------------------------------------------------------------


def _fraction(pair: tuple[int, int]) -> str:
    caught, labelled = pair
    return f"{caught}/{labelled} {100 * caught / labelled:.0f}%" if labelled else "-"


def table(rows: Sequence[Row]) -> str:
    header = (
        f"{'rule':<22}{'firings':>8}{'alerts':>8}{'raises':>7}{'/100 pt-d':>10}"
        f"{'worklist/d':>11}  {'recall critical':<16}{'detectable':<16}{'recall other':<16}"
        f"{'to alert crit.':>15}{'to alert':>10}{'unlabelled':>11}"
    )
    lines = [header]
    for r in rows:
        unlabelled = "-" if r.unlabelled is None else f"{100 * r.unlabelled:.0f}%"
        lines.append(
            f"{r.name:<22}{r.firings:>8,}{r.alerts:>8,}{r.raises:>7,}"
            f"{r.per_100_patient_days:>10.2f}{r.worklist_per_day_per_1000:>11.1f}  "
            f"{_fraction(r.critical):<16}{_fraction(r.detectable_critical):<16}"
            f"{_fraction(r.other):<16}{_hours(r.median_hours_critical):>15}"
            f"{_hours(r.median_hours_to_alert):>10}{unlabelled:>11}"
        )
    return "\n".join(lines)


def _hours(hours: float | None) -> str:
    return "-" if hours is None else f"{hours:.1f} h"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sets", nargs="*", choices=list(TEMPLATE_SETS), default=list(TEMPLATE_SETS)
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    population = simulate(args.patients, args.days, args.seed)
    readings = sum(len(p.readings) for p in population.patients)
    events = Counter(e.kind.value for p in population.patients for e in p.events)
    print(
        f"population: {args.patients:,} patients x {args.days} days (seed {args.seed}),"
        f" {readings:,} readings, simulated in {time.perf_counter() - started:.1f} s"
    )
    print("labelled events: " + ", ".join(f"{k} {n}" for k, n in sorted(events.items())))
    print(
        "alerts: opened; raises: severity raised while open; worklist/d: alerts opened or"
        " raised a day per 1,000 patients; detectable: the critical events with a reading"
        " that shows them (`detectable`); to alert: median hours from onset to the first"
        " alert, critical events and all"
    )
    for name in args.sets:
        started = time.perf_counter()
        rows = run(population, TEMPLATE_SETS[name])
        print(f"\ntemplate set {name!r} (replayed in {time.perf_counter() - started:.1f} s)")
        print(table(rows))


if __name__ == "__main__":
    main()
