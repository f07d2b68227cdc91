"""The alert-burden benchmark: its replay decides as the service does (one open alert
per rule, a resolved episode suppressed, the missed-readings check at local midnight),
and its metrics add up, on tiny hand-made populations."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from benchmarks.burden import Alert, Replay, Row, Scored, detectable, replay, run, score
from rpm.rules.plan import CarePlan, Severity
from rpm.rules.templates import plan_from_templates
from simulators.physiology import Condition
from simulators.population import (
    BP,
    DAY_S,
    HOUR_S,
    KG_PER_LB,
    NO_MEAL,
    WEIGHT,
    Event,
    EventKind,
    Patient,
    Population,
    Readings,
)

START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 10


def _patient(
    number: int = 1,
    bp: Sequence[tuple[float, float]] = (),
    events: tuple[Event, ...] = (),
) -> Patient:
    """A UTC patient with blood pressures (time, systolic), arriving 10 s after."""
    times = np.array([t for t, _ in bp], dtype=np.float64)
    n = len(times)
    nan = np.full(n, np.nan)
    readings = Readings(
        times=times,
        arrivals=times + 10,
        kinds=np.full(n, BP, dtype=np.int64),
        systolic=np.array([s for _, s in bp], dtype=np.float64),
        diastolic=np.full(n, 80.0),
        pulse=np.full(n, 70.0),
        weight_kg=nan,
        glucose_mg_dl=nan,
        meal=np.full(n, NO_MEAL, dtype=np.int64),
    )
    return Patient(
        number=number,
        conditions=frozenset({Condition.HYPERTENSION}),
        time_zone="UTC",
        bp_profile=None,
        insulin=False,
        daily=1.0,
        readings=readings,
        events=events,
        midnights=np.arange(DAYS + 2) * DAY_S,
    )


def _day(day: int, hour: float) -> float:
    return day * DAY_S + hour * HOUR_S


def test_one_open_alert_per_rule_and_a_resolved_episode_stays_resolved() -> None:
    patient = _patient(
        bp=[
            (_day(0, 7), 120),
            (_day(1, 7), 185),  # crisis: an alert opens
            (_day(1, 7.5), 186),  # still open: updated
            (_day(1, 10), 187),  # resolved after an hour, same episode: suppressed
            (_day(1, 20), 120),  # clear
            (_day(2, 7), 190),  # a new episode: a new alert
        ]
    )
    result = replay(patient, plan_from_templates(["hypertension"]), START, 8)
    crisis = [a for a in result.alerts if a.rule_id == "bp_crisis"]
    assert [a.opened_at for a in crisis] == [_day(1, 7) + 10, _day(2, 7) + 10]
    assert crisis[0].firings == [_day(1, 7), _day(1, 7.5)]
    assert crisis[0].severity == Severity.CRITICAL
    assert result.firings["bp_crisis"] == 4
    assert result.suppressed["bp_crisis"] == 1


def test_missed_readings_open_once_at_the_local_midnight_that_completes_the_gap() -> None:
    """Last reading on day 2; the hypertension plan expects one every 3 days: days 3, 4
    and 5 without one make the gap, counted at the check after day 6's midnight. The
    nurse resolves it a day later; the gap goes on, so it is suppressed."""
    patient = _patient(bp=[(_day(d, 7), 125) for d in range(3)])
    result = replay(patient, plan_from_templates(["hypertension"]), START, 8)
    missed = [a for a in result.alerts if a.rule_id == "missed_readings"]
    assert len(missed) == 1
    assert missed[0].opened_at == pytest.approx(_day(6, 0) + 900)
    assert result.firings["missed_readings"] == 2
    assert result.suppressed["missed_readings"] == 1


def test_the_template_set_is_a_parameter() -> None:
    population = Population(START, DAYS, (_patient(bp=[(_day(1, 7), 185)]),))
    asked = []

    def factory(names: Sequence[str]) -> CarePlan:
        asked.append(list(names))
        return plan_from_templates(names)

    rows = run(population, factory)
    assert asked == [["hypertension"]]
    by_name = {r.name: r for r in rows}
    assert by_name["bp_crisis"].alerts == 1
    assert list(by_name)[-1] == "all"


def _alert(rule: str, *firings: float, raises: int = 0) -> Alert:
    return Alert(
        rule,
        Severity.HIGH,
        opened_at=firings[0],
        resolve_at=firings[0] + HOUR_S,
        first=firings[0],
        last=firings[-1],
        firings=list(firings),
        raises=raises,
    )


def test_the_metrics_add_up() -> None:
    """Two patients over 10 days: 20 patient-days."""
    crisis = Event(EventKind.HYPERTENSIVE_CRISIS, _day(1, 0), _day(2, 0), critical=True)
    hypo = Event(EventKind.HYPOGLYCAEMIA, _day(5, 0), _day(5, 1), critical=False)
    drop = Event(EventKind.DROP_OUT, _day(3, 0), _day(10, 0), critical=False)
    a = Replay(
        alerts=[
            _alert("bp_crisis", _day(1, 12)),  # the crisis, 12 h after its onset
            # A day after the crisis ended is still its grace; this is past it.
            _alert("bp_crisis", _day(3, 1)),
            _alert("glucose_low", _day(5, 0.5), raises=1),  # the hypo, after 30 min
        ],
        firings=Counter({"bp_crisis": 5, "glucose_low": 2}),
    )
    b = Replay(
        alerts=[_alert("missed_readings", _day(6, 0), _day(7, 0))],  # 72 h after
        firings=Counter({"missed_readings": 2}),
    )
    families = {
        "bp_crisis": frozenset({"blood_pressure_high"}),
        "glucose_low": frozenset({"glucose_low"}),
        "missed_readings": frozenset({"adherence"}),
        "weight_gain_day": frozenset({"weight_high"}),
    }
    rows = score(
        [
            # A reading during the crisis: a rule could see it (`detectable`).
            Scored(_patient(1, bp=[(_day(1, 6), 190)], events=(crisis, hypo)), a),
            Scored(_patient(2, events=(drop,)), b),
        ],
        families,
        DAYS,
    )
    assert rows == [
        Row("bp_crisis", 5, 2, 0, 10.0, 100.0, (1, 1), (0, 0), (1, 1), 12.0, 12.0, 0.5),
        Row("glucose_low", 2, 1, 1, 5.0, 100.0, (0, 0), (1, 1), (0, 0), 0.5, None, 0.0),
        Row("missed_readings", 2, 1, 0, 5.0, 50.0, (0, 0), (1, 1), (0, 0), 72.0, None, 0.0),
        Row("weight_gain_day", 0, 0, 0, 0.0, 0.0, (0, 0), (0, 0), (0, 0), None, None, None),
        Row("all", 9, 4, 1, 20.0, 250.0, (1, 1), (2, 2), (1, 1), 12.0, 12.0, 0.25),
    ]


def test_an_alert_of_another_kind_does_not_catch_an_event() -> None:
    """A low-glucose alert during a hyperglycaemia is no alert about it."""
    hyper = Event(EventKind.HYPERGLYCAEMIA, _day(1, 0), _day(4, 0), critical=False)
    r = Replay(alerts=[_alert("glucose_low", _day(2, 0))], firings=Counter({"glucose_low": 1}))
    families = {
        "glucose_low": frozenset({"glucose_low"}),
        "glucose_high": frozenset({"glucose_high"}),
    }
    rows = {row.name: row for row in score([Scored(_patient(events=(hyper,)), r)], families, DAYS)}
    assert rows["all"].other == (0, 1)
    assert rows["glucose_low"].unlabelled == 1.0
    assert rows["glucose_high"].other == (0, 1)


def _weights(times_lb: Sequence[tuple[float, float]]) -> Readings:
    times = np.array([t for t, _ in times_lb])
    nan = np.full(len(times), np.nan)
    return Readings(
        times=times,
        arrivals=times + 10,
        kinds=np.full(len(times), WEIGHT, dtype=np.int64),
        systolic=nan,
        diastolic=nan,
        pulse=nan,
        weight_kg=np.array([lb * KG_PER_LB for _, lb in times_lb]),
        glucose_mg_dl=nan,
        meal=np.full(len(times), NO_MEAL, dtype=np.int64),
    )


def test_an_event_is_detectable_when_a_reading_shows_it() -> None:
    """A crisis with no reading while it lasts is seen by no rule; a decompensation only
    with a weight 2 lb or more above the week before it."""
    crisis = Event(EventKind.HYPERTENSIVE_CRISIS, _day(1, 0), _day(2, 0), critical=True)
    assert not detectable(crisis, _patient(bp=[(_day(0, 7), 190), (_day(3, 7), 190)]))
    assert detectable(crisis, _patient(bp=[(_day(1, 7), 190)]))
    gain = Event(EventKind.DECOMPENSATION, _day(3, 0), _day(6, 0), critical=True)
    week = [(_day(d, 7), 200.0) for d in range(3)]
    small = replace(_patient(), readings=_weights([*week, (_day(5, 7), 201.5)]))
    assert not detectable(gain, small)
    large = replace(_patient(), readings=_weights([*week, (_day(5, 7), 202.0)]))
    assert detectable(gain, large)


def test_a_held_finding_waits_for_the_patients_repeat() -> None:
    """One pulse of 130 among 70s, on the personal template (30 min for a repeat): a
    patient who re-measures shows one of their usual pulses, and nothing is raised; one
    who does not (adherence 0) gets the alert after the window, on that reading."""
    days = [(_day(d, 7), 125.0) for d in range(6)]
    base = _patient(bp=days)
    pulse = base.readings.pulse.copy()
    pulse[3] = 130.0
    patient = replace(base, readings=replace(base.readings, pulse=pulse))
    plan = plan_from_templates(["hypertension_personal"])
    answered = replay(patient, plan, START, 8)
    assert [a.rule_id for a in answered.alerts] == []
    silent = replay(replace(patient, daily=0.0), plan, START, 8)
    assert [(a.rule_id, a.firings) for a in silent.alerts] == [("pulse_out_of_range", [_day(3, 7)])]
