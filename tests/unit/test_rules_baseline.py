"""The personal-baseline rule kind: validation, the learn-in, the alert text, and, as
properties, that a constant signal never alerts, that a step past the stated size always
does within the stated number of readings, and that the verdict at a reading does not
depend on how much history before it was loaded."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rpm.rules.evaluate import History, dry_run, lookback_hours, trace
from rpm.rules.plan import BaselineRule, CarePlan
from tests.unit.rules_builders import IN_UTC, at, bp, evaluate, glucose, weight

FAST = settings(max_examples=60, deadline=None)


def _rule(**more: Any) -> BaselineRule:
    document = {
        "id": "drift",
        "measure": "systolic",
        "direction": "up",
        "min_spread": 5,
        "unit": "mmHg",
        **more,
    }
    return BaselineRule.model_validate(document)


def _refused(match: str, **more: Any) -> None:
    with pytest.raises(ValidationError, match=match):
        CarePlan.model_validate({"rules": [{"id": "drift", "kind": "baseline", **more}]})


BASE = {"measure": "systolic", "direction": "up", "min_spread": 5, "unit": "mmHg"}


def test_a_baseline_rule_is_part_of_the_plan_with_its_defaults() -> None:
    plan = CarePlan.model_validate({"rules": [{"id": "drift", "kind": "baseline", **BASE}]})
    [rule] = plan.reading_rules()
    assert isinstance(rule, BaselineRule)
    assert (rule.learn_days, rule.learn_readings, rule.recent_hours) == (14, 10, 72)
    assert (rule.allowance_sd, rule.decision_sd, rule.severity) == (0.5, 5.0, "warning")
    assert lookback_hours(rule) == 14 * 24 + 2 * 72 + 24


def test_a_baseline_rule_is_refused_with_a_sentence_naming_what_is_wrong() -> None:
    _refused(
        r"rule drift \(systolic\): unit 'lb' is not one for systolic", **{**BASE, "unit": "lb"}
    )
    _refused(r"minimum spread of 40 mmHg is wider than any patient's", **{**BASE, "min_spread": 40})
    _refused("meal contexts apply to glucose only", **BASE, meal_contexts=["fasting"])
    _refused("cannot be learned in 3 days", **BASE, learn_days=3, learn_readings=100)
    _refused("Extra inputs are not permitted", **BASE, limits=[])
    _refused("Input should be 'up' or 'down'", **{**BASE, "direction": "sideways"})
    _refused("greater than 0", **{**BASE, "min_spread": 0})


def test_a_spread_in_another_unit_is_converted() -> None:
    rule = BaselineRule.model_validate(
        {"id": "w", "measure": "weight", "direction": "up", "min_spread": 1, "unit": "lb"}
    )
    assert rule.canonical_min_spread() == pytest.approx(0.4536, abs=1e-4)


def test_nothing_fires_before_the_learn_in_however_high() -> None:
    rows = [bp(at(12 * i), 120) for i in range(9)] + [bp(at(12 * 9), 200)]
    assert evaluate(_rule(recent_hours=1), rows) == []


def test_a_sustained_rise_is_one_episode_and_says_against_what() -> None:
    rows = [bp(at(12 * i), 120 + (i % 3)) for i in range(40)]
    rows += [bp(at(12 * i), 140) for i in range(40, 44)]
    found = evaluate(_rule(), rows)
    assert found, "a rise of four spreads over four readings fires"
    assert [f.starts_episode for f in found] == [True] + [False] * (len(found) - 1)
    assert found[0].message.startswith("Systolic 140 mmHg at ")
    assert "drift above the patient's own baseline of 121 ± 5 mmHg" in found[0].message
    assert "(the 14 days before the last 3 days;" in found[0].message


def test_a_fall_is_watched_only_by_a_downward_rule() -> None:
    rows = [weight(at(24 * i), 80.0) for i in range(20)] + [
        weight(at(24 * i), 77.0) for i in (20, 21)
    ]
    up = _rule(measure="weight", min_spread=0.5, unit="kg")
    assert evaluate(up, rows) == []
    assert evaluate(up.model_copy(update={"direction": "down"}), rows)


def test_a_glucose_baseline_can_be_of_fasting_readings_only() -> None:
    rule = _rule(measure="glucose", min_spread=10, unit="mg/dL", meal_contexts=["fasting"])
    rows = [glucose(at(24 * i), 110, "fasting") for i in range(20)]
    rows += [glucose(at(24 * i + 3), 250, "after_meal") for i in range(20, 23)]
    assert evaluate(rule, rows) == []
    rows += [glucose(at(24 * i), 190, "fasting") for i in (20, 21)]
    assert evaluate(rule, rows)


spacing = st.integers(4, 24)


@FAST
@given(
    st.floats(60, 200),
    st.integers(15, 80),
    spacing,
    st.sampled_from(["up", "down"]),
    st.floats(0.1, 2),
    st.floats(1, 10),
    st.floats(1, 15),
)
def test_a_constant_signal_never_alerts(
    level: float, n: int, gap: int, direction: str, k: float, h: float, spread: float
) -> None:
    rule = _rule(direction=direction, allowance_sd=k, decision_sd=h, min_spread=spread)
    assert evaluate(rule, [bp(at(gap * i), level) for i in range(n)]) == []


@FAST
@given(
    st.floats(90, 160),
    spacing,
    st.sampled_from(["up", "down"]),
    st.floats(0.1, 2),
    st.floats(1, 10),
    st.floats(2, 10),
    st.integers(1, 3),
)
def test_a_step_past_the_stated_size_always_fires_within_the_stated_readings(
    level: float, gap: int, direction: str, k: float, h: float, spread: float, m: int
) -> None:
    """The docstring's promise: against a steady baseline, a shift of d spreads (d > k)
    fires by reading ceil(h / (d - k)) after it, while those lie within recent_hours. So
    a shift of (k + h/m) spreads fires by the m-th reading."""
    rule = _rule(direction=direction, allowance_sd=k, decision_sd=h, min_spread=spread)
    before = 20 * 24 // gap
    shift = spread * (k + h / m) + 0.01
    stepped = level + shift if direction == "up" else level - shift
    rows = [bp(at(gap * i), level) for i in range(before)]
    rows += [bp(at(gap * (before + j)), stepped) for j in range(m)]
    assert (m - 1) * gap < rule.recent_hours
    found = evaluate(rule, rows)
    assert found, f"a shift of {shift:.2f} mmHg fired within {m} reading(s)"
    assert found[0].starts_episode
    assert math.ceil(h / (shift / spread - k)) <= m


@FAST
@given(st.lists(st.floats(100, 170), min_size=30, max_size=70), spacing, st.integers(0, 25))
def test_the_verdict_at_a_reading_does_not_depend_on_the_history_loaded_before_it(
    values: list[float], gap: int, cut: int
) -> None:
    """Ingest loads `lookback_hours` before the new reading; the dry run, 30 days: the
    CUSUM is started afresh within its window, so both see the same."""
    rule = _rule()
    rows = [bp(at(gap * i), v) for i, v in enumerate(values)][: len(values) - cut]
    last = rows[-1].key.measured_at.timestamp()
    full = trace(rule, History.of(rows))
    loaded = [
        r for r in rows if last - r.key.measured_at.timestamp() <= lookback_hours(rule) * 3600
    ]
    part = trace(rule, History.of(loaded))
    np.testing.assert_allclose(full.observed[0][-1], part.observed[0][-1], equal_nan=True)
    assert full.rank[-1] == part.rank[-1]


def test_the_dry_run_shows_a_baseline_rules_episodes() -> None:
    plan = CarePlan(rules=[_rule()])
    rows = [bp(at(12 * i), 120 + (i % 3)) for i in range(40)]
    rows += [bp(at(12 * i), 140) for i in range(40, 44)]
    rows += [bp(at(12 * i), 120 + (i % 3)) for i in range(44, 60)]
    found = dry_run(plan, History.of(rows), IN_UTC, at(0), at(12 * 60))
    assert [(f.rule_id, f.at) for f in found] == [("drift", at(12 * 41))]
