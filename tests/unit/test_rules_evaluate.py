"""Rule evaluation, kind by kind and edge by edge: the limit itself, other units, local
time across DST, too little data, late readings, episodes, severities, missed readings
and the 30-day dry run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from rpm.devices.checks import MG_DL_PER_MMOL_L
from rpm.devices.model import MealContext, ReadingKind
from rpm.rules.evaluate import (
    Context,
    Finding,
    History,
    HistoryRow,
    ReadingKey,
    applies_to,
    dry_run,
    findings,
    may_fire,
    missed,
    trace,
)
from rpm.rules.plan import (
    CarePlan,
    ChangeRule,
    CountRule,
    MeanRule,
    MissedRule,
    ReadingRule,
    Severity,
    SlopeRule,
    ThresholdRule,
)
from rpm.rules.templates import DIABETES, HEART_FAILURE, HYPERTENSION, plan_from_templates
from tests.unit.rules_builders import (
    IN_UTC,
    NEW_YORK,
    at,
    bp,
    evaluate,
    fired_at,
    glucose,
    limit,
    weight,
    weight_lb,
)

IN_NEW_YORK = Context(plan_version=3, time_zone=NEW_YORK)
GLUCOSE_LOW, GLUCOSE_HIGH = DIABETES
WEIGHT_GAIN_DAY, WEIGHT_GAIN_WEEK = HEART_FAILURE
BP_CRISIS = HYPERTENSION[0]


def _threshold(*limits_: object, **more: object) -> ThresholdRule:
    return ThresholdRule.model_validate({"id": "t", "limits": list(limits_), **more})


def _systolic(op: str, value: float, **more: object) -> ThresholdRule:
    return _threshold(limit("systolic", op, value, "mmHg", **more))


def _stored_glucose(mmol_l: float) -> float:
    """A meter's mmol/L reading as the store gives it back: mg/dL in a float32 column."""
    return float(np.float32(mmol_l * MG_DL_PER_MMOL_L))


# -- at the limit, and in other units ---------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "fires_at_limit"),
    [("at_or_above", 180, True), ("above", 180, False), ("at_or_below", 90, True),
     ("below", 90, False)],
)  # fmt: skip
def test_a_reading_exactly_at_the_limit_fires_only_for_at_or(
    op: str, value: float, fires_at_limit: bool
) -> None:
    step = 1 if op.endswith("above") else -1
    rows = [bp(at(0), value), bp(at(1), value + step), bp(at(2), value - step)]
    expected = [at(0), at(1)] if fires_at_limit else [at(1)]
    assert fired_at(_systolic(op, value), rows) == expected


def test_a_limit_in_kpa_is_shown_in_kpa() -> None:
    rule = _threshold(limit("systolic", "at_or_above", 24, "kPa"))  # 180.01 mmHg
    [found] = evaluate(rule, [bp(at(0), 180), bp(at(1), 181)])
    assert found.message == (
        "Systolic 24.1 kPa at 15:00 on 5 Jan is at or above the limit of 24 kPa (care plan v3)."
    )


def test_a_limit_in_lb_fires_on_the_readings_its_kg_equivalent_fires_on() -> None:
    in_lb = _threshold(limit("weight", "above", 250, "lb"))
    in_kg = _threshold(limit("weight", "above", in_lb.limits[0].canonical_value(), "kg"))
    rows = [weight_lb(at(h), lb) for h, lb in enumerate([249.8, 250.0, 250.2, 251.0])]
    assert fired_at(in_lb, rows) == fired_at(in_kg, rows) == [at(2), at(3)]
    assert evaluate(in_lb, rows)[0].message == (
        "Weight 250.2 lb at 16:00 on 5 Jan is above the limit of 250 lb (care plan v3)."
    )


@pytest.mark.parametrize(
    ("op", "mmol_l", "fires"),
    # Regression: 3.0 and 3.9 mmol/L come back from the float32 column a rounding error
    # below and above the limit, and "below 3.0" fired on a reading of 3.0.
    [("below", 3.0, False), ("at_or_below", 3.0, True), ("above", 3.9, False),
     ("at_or_above", 3.9, True)],
)  # fmt: skip
def test_a_glucose_reading_in_mmol_l_exactly_at_a_mmol_l_limit(
    op: str, mmol_l: float, fires: bool
) -> None:
    rule = _threshold(limit("glucose", op, mmol_l, "mmol/L"))
    found = evaluate(rule, [glucose(at(0), _stored_glucose(mmol_l))])
    assert [f.message for f in found] == (
        [f"Glucose {mmol_l:.1f} mmol/L at 14:00 on 5 Jan is {op.replace('_', ' ')} the limit"
         f" of {mmol_l:g} mmol/L (care plan v3)."]
        if fires else []
    )  # fmt: skip


def test_a_gain_of_exactly_the_limit_in_lb_fires() -> None:
    # Regression: (158.3 - 155.3) lb in kg came out a rounding error below 3 lb in kg.
    rule = ChangeRule(id="gain", window_hours=24, limits=[limit("weight", "at_or_above", 3, "lb")])
    [found] = evaluate(rule, [weight_lb(at(0), 155.3), weight_lb(at(20), 158.3)])
    assert found.message == (
        "Weight up 3.0 lb within 24 h, at 10:00 on 6 Jan: at or above the limit of 3 lb"
        " (care plan v3)."
    )


# -- local time --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("utc", "local"),
    [
        (datetime(2026, 1, 6, 3, 0, tzinfo=UTC), "22:00 on 5 Jan"),
        # 1 November 2026: 01:00-02:00 happens twice, first in EDT, then in EST.
        (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), "01:30 on 1 Nov"),
        (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), "01:30 on 1 Nov"),
        (datetime(2026, 11, 1, 7, 30, tzinfo=UTC), "02:30 on 1 Nov"),
        # 8 March 2026: 02:00 EST is 03:00 EDT.
        (datetime(2026, 3, 8, 6, 30, tzinfo=UTC), "01:30 on 8 Mar"),
        (datetime(2026, 3, 8, 7, 30, tzinfo=UTC), "03:30 on 8 Mar"),
    ],
)
def test_alert_text_shows_the_patients_local_time(utc: datetime, local: str) -> None:
    [found] = evaluate(BP_CRISIS, [bp(utc, 185)], IN_NEW_YORK)
    assert found.message.startswith(f"Systolic 185 mmHg at {local} is at or above")
    assert found.at == utc


# -- too little data, and none ---------------------------------------------------------


KINDS: list[ReadingRule] = [
    _systolic("above", 160),
    CountRule(id="c", n=2, of_last=3, limits=[limit("systolic", "above", 160, "mmHg")]),
    MeanRule(id="m", window_hours=72, limits=[limit("systolic", "above", 160, "mmHg")]),
    ChangeRule(id="ch", window_hours=24, limits=[limit("systolic", "at_or_above", 20, "mmHg")]),
    SlopeRule(id="s", window_hours=72, limits=[limit("systolic", "at_or_above", 5, "mmHg/day")]),
]


@pytest.mark.parametrize(
    "rule", [*KINDS, *HYPERTENSION, *HEART_FAILURE, *DIABETES], ids=lambda rule: rule.id
)
def test_an_empty_history_fires_nothing(rule: ReadingRule) -> None:
    # Regression: change rules (and count rules) raised on a history without their measure.
    history = History.of([])
    traced = trace(rule, history)
    assert traced.rows.size == 0
    assert findings(traced, history, IN_UTC) == []


def test_a_single_reading_is_enough_for_a_threshold_and_nothing_else() -> None:
    rows = [bp(at(0), 240)]
    assert [bool(fired_at(rule, rows)) for rule in KINDS] == [True, False, False, False, False]


def test_a_mean_needs_min_readings_inside_its_window() -> None:
    rule = MeanRule(
        id="m", window_hours=48, min_readings=3,
        limits=[limit("systolic", "at_or_above", 140, "mmHg", "warning")],
    )  # fmt: skip
    rows = [bp(at(0), 150), bp(at(6), 150), bp(at(12), 130), bp(at(60), 150)]
    [found] = evaluate(rule, rows)
    assert found.at == at(12)  # at 60 h the window (12 h, 60 h] holds one reading
    assert found.severity is Severity.WARNING
    assert found.message == (
        "Mean systolic 143 mmHg over the 2 days to 02:00 on 6 Jan is at or above the limit"
        " of 140 mmHg (care plan v3)."
    )


def test_a_slope_needs_min_readings_spread_in_time() -> None:
    rule = SlopeRule(
        id="s", window_hours=168, limits=[limit("weight", "at_or_above", 0.25, "kg/day")]
    )
    rising = [weight(at(24 * d), 80 + 0.3 * d) for d in range(3)]
    assert fired_at(rule, rising) == []
    same_instant = [weight(at(0), kg) for kg in (80, 81, 82, 83)]
    assert fired_at(rule, same_instant) == []


# -- late and unordered readings ------------------------------------------------------


def test_history_sorts_its_rows() -> None:
    rows = [bp(at(2), 120), bp(at(0), 121, device=9), bp(at(0), 122, device=1)]
    history = History.of(rows)
    assert [k.measured_at for k in history.keys] == [at(0), at(0), at(2)]
    assert [k.device_id for k in history.keys] == [1, 9, 1]


def test_a_late_reading_is_judged_against_the_readings_before_it() -> None:
    rule = ChangeRule(
        id="gain", window_hours=24, limits=[limit("weight", "at_or_above", 1.5, "kg")]
    )
    late_high, late_low = weight(at(10), 81.6), weight(at(10), 78.0)
    for late, expected in [(late_high, [at(10)]), (late_low, [])]:
        history = History.of([weight(at(0), 80.0), weight(at(20), 80.2), late])
        rows = [history.index()[late.key]]
        found = findings(trace(rule, history), history, IN_UTC, rows)
        assert [f.at for f in found] == expected


# -- count, mean, change, slope, meal context -----------------------------------------


def test_count_three_in_a_row() -> None:
    rule = CountRule(id="c", n=3, of_last=3, limits=[limit("systolic", "above", 160, "mmHg")])
    values = [165, 170, 150, 165, 170, 175, 168]
    found = evaluate(rule, [bp(at(h), v) for h, v in enumerate(values)])
    assert [f.at for f in found] == [at(5), at(6)]
    assert found[0].message == (
        "Systolic above the limit of 160 mmHg in 3 of the last 3 readings"
        " (latest 175 mmHg at 19:00 on 5 Jan) (care plan v3)."
    )


def test_count_three_of_the_last_five() -> None:
    rule = CountRule(id="c", n=3, of_last=5, limits=[limit("systolic", "above", 160, "mmHg")])
    values = [165, 150, 170, 150, 165, 150, 150, 150, 150]
    # Two beyond in any five until the fifth reading; two again from the sixth on.
    assert fired_at(rule, [bp(at(h), v) for h, v in enumerate(values)]) == [at(4)]


def test_count_severity_is_the_level_n_readings_reach() -> None:
    # Regression: one critical reading among the n high ones made the whole count
    # critical, and the alert said n readings were beyond the critical limit.
    rule = CountRule(
        id="c", n=3, of_last=5,
        limits=[limit("systolic", "at_or_above", 160, "mmHg"),
                limit("systolic", "at_or_above", 180, "mmHg", "critical", label="crisis")],
    )  # fmt: skip
    values = [120, 165, 165, 185, 185, 185]
    found = evaluate(rule, [bp(at(h), v) for h, v in enumerate(values)])
    assert [f.severity for f in found] == [Severity.HIGH, Severity.HIGH, Severity.CRITICAL]
    assert found[0].message.startswith(
        "Systolic at or above the limit of 160 mmHg in 3 of the last 5 readings (latest 185"
    )
    assert found[2].message.startswith(
        "Systolic at or above the crisis limit of 180 mmHg in 3 of the last 5 readings"
    )


def test_change_is_against_the_lowest_of_the_window_before() -> None:
    rule = ChangeRule(id="ch", window_hours=24, limits=[limit("weight", "at_or_above", 2, "kg")])
    [found] = evaluate(rule, [weight(at(0), 80.0), weight(at(6), 79.0), weight(at(20), 81.4)])
    assert found.message == (
        "Weight up 2.4 kg within 24 h, at 10:00 on 6 Jan: at or above the limit of 2 kg"
        " (care plan v3)."
    )


@pytest.mark.parametrize(("hours", "fires"), [(23, True), (24, True), (25, False)])
def test_change_window_reaches_back_exactly_its_length(hours: int, fires: bool) -> None:
    rule = ChangeRule(id="ch", window_hours=24, limits=[limit("weight", "at_or_above", 2, "kg")])
    assert bool(fired_at(rule, [weight(at(0), 80.0), weight(at(hours), 82.5)])) is fires


def test_a_fall_is_against_the_highest_of_the_window_before() -> None:
    rule = ChangeRule(id="ch", window_hours=24, limits=[limit("weight", "at_or_below", -2, "kg")])
    [found] = evaluate(rule, [weight(at(0), 82.0), weight(at(12), 80.5), weight(at(20), 79.9)])
    assert found.message.startswith("Weight down 2.1 kg within 24 h, at 10:00 on 6 Jan")


def test_a_steady_gain_fires_the_week_rule_and_not_the_day_rule() -> None:
    rows = [weight_lb(at(24 * d), 180 + d) for d in range(7)]
    assert fired_at(WEIGHT_GAIN_DAY, rows) == []
    first, *_ = evaluate(WEIGHT_GAIN_WEEK, rows)
    assert first.message == (
        "Weight up 5.0 lb within 7 days, at 14:00 on 10 Jan: at or above the limit of 5 lb"
        " (care plan v3). Ask about swelling and breathlessness; review diuretics with the"
        " prescriber."
    )


@pytest.mark.parametrize(
    ("limit_value", "unit", "shown"),
    [(0.25, "kg/day", "0.30 kg/day"), (0.5, "lb/day", "0.66 lb/day")],
)
def test_slope_per_day_in_the_limits_unit(limit_value: float, unit: str, shown: str) -> None:
    rule = SlopeRule(
        id="s", window_hours=168, limits=[limit("weight", "at_or_above", limit_value, unit)]
    )
    found = evaluate(rule, [weight(at(24 * d), 80 + 0.3 * d) for d in range(10)])
    assert found[0].at == at(72)  # the fourth reading: min_readings
    assert found[0].message == (
        f"Weight rising {shown} over the 7 days to 14:00 on 8 Jan: at or above the limit of"
        f" {limit_value:g} {unit} (care plan v3)."
    )


def test_meal_contexts_keep_a_glucose_rule_to_those_readings() -> None:
    rule = _threshold(limit("glucose", "above", 130, "mg/dL"), meal_contexts=[MealContext.FASTING])
    rows = [glucose(at(0), 200, "after_meal"), glucose(at(1), 140, "fasting"),
            glucose(at(2), 150, None)]  # fmt: skip
    assert fired_at(rule, rows) == [at(1)]


# -- episodes --------------------------------------------------------------------------


def _starts(rule: ReadingRule, values: list[tuple[float, float]]) -> list[tuple[float, bool]]:
    found = evaluate(rule, [bp(at(h), v) for h, v in values])
    return [((f.at - at(0)).total_seconds() / 3600, f.starts_episode) for f in found]


def test_hysteresis_keeps_one_episode_while_values_hover_at_the_limit() -> None:
    hovering = [(0, 182), (1, 178), (2, 181), (3, 176), (4, 183), (5, 170), (6, 185)]
    with_hysteresis = _systolic("at_or_above", 180, hysteresis=5)
    assert _starts(with_hysteresis, hovering) == [(0, True), (2, False), (4, False), (6, True)]
    without = _systolic("at_or_above", 180)
    assert _starts(without, hovering) == [(0, True), (2, True), (4, True), (6, True)]


def test_episode_since_is_when_the_episode_began() -> None:
    rule = _systolic("at_or_above", 180, hysteresis=5)
    rows = [bp(at(h), v) for h, v in [(0, 182), (1, 178), (2, 181), (5, 170), (6, 185)]]
    assert [f.episode_since for f in evaluate(rule, rows)] == [at(0), at(0), at(6)]


def test_cooldown_merges_firings_into_one_episode() -> None:
    rule = _threshold(limit("systolic", "at_or_above", 180, "mmHg"), cooldown_hours=24)
    values = [(0, 182), (2, 170), (12, 182), (13, 170), (37, 182)]
    # 12 h is within the cooldown of the firing at 0 h; 37 h is 25 h after the one at 12 h.
    assert _starts(rule, values) == [(0, True), (12, False), (37, True)]
    assert [f.episode_since for f in evaluate(rule, [bp(at(h), v) for h, v in values])] == [
        at(0), at(0), at(37)
    ]  # fmt: skip


# -- severities -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mg_dl", "severity", "named"),
    [(69, Severity.HIGH, "level 1 hypoglycaemia limit of 70 mg/dL"),
     (54, Severity.HIGH, "level 1 hypoglycaemia limit of 70 mg/dL"),
     (53, Severity.CRITICAL, "level 2 hypoglycaemia limit of 54 mg/dL")],
)  # fmt: skip
def test_the_most_severe_level_reached_is_the_one_named(
    mg_dl: float, severity: Severity, named: str
) -> None:
    [found] = evaluate(GLUCOSE_LOW, [glucose(at(0), mg_dl)])
    assert found.severity is severity
    assert found.message == (
        f"Glucose {mg_dl} mg/dL at 14:00 on 5 Jan is below the {named} (care plan v3)."
        " Contact the patient now: 15 g of fast-acting carbohydrate, re-check in 15 minutes."
    )


def test_the_limit_named_is_the_one_the_reading_is_beyond() -> None:
    [found] = evaluate(BP_CRISIS, [bp(at(0), 150, 125)])
    assert found.message.startswith(
        "Diastolic 125 mmHg at 14:00 on 5 Jan is at or above the crisis limit of 120 mmHg"
    )


def test_glucose_at_70_is_not_low() -> None:
    assert fired_at(GLUCOSE_LOW, [glucose(at(0), 70)]) == []


# -- missed readings ---------------------------------------------------------------------

MISSED_BP = MissedRule(id="missed_readings", expects=[ReadingKind.BLOOD_PRESSURE], days=2)


def _missed(
    rule: MissedRule, last: datetime | None, now: datetime, context: Context
) -> Finding | None:
    enrolled = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    return missed(rule, dict.fromkeys(rule.expects, last), enrolled, now, context)


def test_missed_since_enrolment() -> None:
    now = datetime(2026, 1, 4, 12, 0, tzinfo=UTC)
    found = _missed(MISSED_BP, None, now, IN_UTC)
    assert found is not None
    assert found.message == (
        "No blood pressure reading since enrolment on 1 Jan: the care plan expects one at"
        " least every 2 days (care plan v3)."
    )
    assert (found.at, found.key, found.severity) == (now, None, Severity.WARNING)
    assert found.episode_since == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert _missed(MISSED_BP, None, now - timedelta(hours=13), IN_UTC) is None


def test_missed_counts_a_day_once_it_is_over() -> None:
    last = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    assert _missed(MISSED_BP, last, datetime(2026, 1, 7, 23, 59, tzinfo=UTC), IN_UTC) is None
    found = _missed(MISSED_BP, last, datetime(2026, 1, 8, 0, 1, tzinfo=UTC), IN_UTC)
    assert found is not None
    assert found.message.startswith("No blood pressure reading for 2 days (last on 5 Jan):")
    assert found.episode_since == last


def test_missed_counts_local_days_near_midnight() -> None:
    last = datetime(2026, 1, 6, 4, 50, tzinfo=UTC)  # 23:50 on 5 Jan in New York
    now = datetime(2026, 1, 8, 5, 10, tzinfo=UTC)  # 00:10 on 8 Jan: 6 and 7 Jan are over
    found = _missed(MISSED_BP, last, now, IN_NEW_YORK)
    assert found is not None
    assert "(last on 5 Jan)" in found.message
    assert _missed(MISSED_BP, last, now, IN_UTC) is None  # in UTC only 7 Jan is over


@pytest.mark.parametrize(
    ("last", "before_midnight", "after_midnight"),
    [
        # 8 March is 23 h long in New York: it is whole though not 24 h have passed.
        (datetime(2026, 3, 8, 4, 30, tzinfo=UTC), datetime(2026, 3, 9, 3, 55, tzinfo=UTC),
         datetime(2026, 3, 9, 4, 15, tzinfo=UTC)),
        # 1 November is 25 h long: 24 h after the last reading, it is not over yet.
        (datetime(2026, 10, 31, 4, 30, tzinfo=UTC), datetime(2026, 11, 2, 4, 50, tzinfo=UTC),
         datetime(2026, 11, 2, 5, 10, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_missed_counts_whole_local_days_across_dst(
    last: datetime, before_midnight: datetime, after_midnight: datetime
) -> None:
    rule = MISSED_BP.model_copy(update={"days": 1})
    assert _missed(rule, last, before_midnight, IN_NEW_YORK) is None
    found = _missed(rule, last, after_midnight, IN_NEW_YORK)
    assert found is not None
    assert "for 1 day (" in found.message


def test_missed_names_each_kind_overdue_and_only_those_asked_about() -> None:
    rule = MissedRule(
        id="m", expects=[ReadingKind.BLOOD_PRESSURE, ReadingKind.BODY_WEIGHT,
                         ReadingKind.BLOOD_GLUCOSE], days=2,
    )  # fmt: skip
    enrolled, now = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 10, 12, tzinfo=UTC)
    bp_at, weight_at = datetime(2026, 1, 3, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC)
    last = {ReadingKind.BLOOD_PRESSURE: bp_at, ReadingKind.BODY_WEIGHT: weight_at}
    found = missed(rule, last, enrolled, now, IN_UTC)
    assert found is not None
    assert found.message == (
        "No blood pressure reading for 6 days (last on 3 Jan); no body weight reading for 3"
        " days (last on 6 Jan): the care plan expects one at least every 2 days (care plan v3)."
    )
    assert found.episode_since == weight_at
    recent = {ReadingKind.BLOOD_PRESSURE: datetime(2026, 1, 9, tzinfo=UTC)}
    assert missed(rule, recent, enrolled, now, IN_UTC) is None


# -- dry run ----------------------------------------------------------------------------


def test_dry_run_counts_one_alert_per_episode() -> None:
    since = datetime(2026, 2, 1, 5, 0, tzinfo=UTC)  # midnight in New York
    until = since + timedelta(days=30)
    plan = CarePlan(rules=[BP_CRISIS, MISSED_BP])
    systolic = {0: 185, 3: 185, 4: 186, 20: 190, 21: 176, 22: 182}
    no_readings = {10, 11, 12, 13}  # 11-14 Feb: the last reading is at 08:00 on 10 Feb
    rows = [bp(since - timedelta(hours=12), 185)]  # an episode running before the period
    rows += [
        bp(since + timedelta(days=d, hours=8), systolic.get(d, 130))
        for d in range(30)
        if d not in no_readings
    ]
    found = dry_run(plan, History.of(rows), IN_NEW_YORK, since, until)
    assert [(f.rule_id, f.at) for f in found] == [
        ("bp_crisis", since + timedelta(days=3, hours=8)),
        ("missed_readings", datetime(2026, 2, 13, 5, 0, tzinfo=UTC)),
        ("bp_crisis", since + timedelta(days=20, hours=8)),
    ]
    assert found[1].message.startswith("No blood pressure reading for 2 days (last on 10 Feb)")


def test_dry_run_of_every_template_on_no_readings_finds_them_missed() -> None:
    since = datetime(2026, 2, 1, tzinfo=UTC)
    plan = plan_from_templates(["hypertension", "heart_failure", "diabetes"])
    found = dry_run(plan, History.of([]), IN_UTC, since, since + timedelta(days=30))
    assert [(f.rule_id, f.at) for f in found] == [("missed_readings", since + timedelta(days=3))]


def test_may_fire_spares_thresholds_that_no_new_reading_breaches() -> None:
    plan = plan_from_templates(["hypertension", "diabetes"])
    rules = {rule.id: rule for rule in plan.reading_rules()}
    key = ReadingKey(1, "blood_pressure", at(0))
    normal = HistoryRow(key, 128, 82, 70, None, None, None)
    crisis = HistoryRow(key, 181, 82, 70, None, None, None)
    assert not may_fire(rules["bp_crisis"], [normal])
    assert may_fire(rules["bp_crisis"], [normal, crisis])
    # A mean depends on the readings before: always checked.
    assert may_fire(rules["bp_sustained_stage2"], [normal])
    assert applies_to(rules["pulse_out_of_range"], ["heart_rate"])
    assert not applies_to(rules["glucose_low"], ["blood_pressure"])
