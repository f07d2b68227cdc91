"""The care-plan editor's form: limits as fields in their own units, a form back into a
validated plan (or a sentence saying why not), dry-run counts by rule, and a version's
changes in words."""

from __future__ import annotations

import pytest

from rpm.rules.plan import diff
from rpm.rules.templates import plan_from_templates
from rpm.web.plan_form import (
    FormRefused,
    RuleCount,
    changes,
    counts_by_rule,
    limit_fields,
    other_rules,
    plan_to_save,
    proposed_plan,
)

PLAN = plan_from_templates(["hypertension", "heart_failure"])


def test_each_limit_is_a_field_in_its_own_unit() -> None:
    rules = {rule.rule_id: rule for rule in limit_fields(PLAN)}
    assert list(rules) == [
        "bp_crisis",
        "bp_sustained_stage2",
        "systolic_low",
        "pulse_out_of_range",
        "weight_gain_day",
        "weight_gain_week",
    ]
    crisis = rules["bp_crisis"]
    assert (crisis.title, crisis.held_against) == ("Hypertensive crisis", "any one reading")
    assert [(f.name, f.measure.value, f.value, f.unit) for f in crisis.fields] == [
        ("limit:bp_crisis:0", "systolic", "180", "mmHg"),
        ("limit:bp_crisis:1", "diastolic", "120", "mmHg"),
    ]
    assert rules["bp_sustained_stage2"].held_against == "the mean over 7 days (at least 4 readings)"
    assert rules["weight_gain_day"].held_against == "the change within 24 h"
    assert rules["weight_gain_day"].fields[0].unit == "lb"
    # What was entered is shown back (a refused form); the rest as the plan has it.
    entered = limit_fields(PLAN, {"limit:bp_crisis:0": "17O"})
    assert [f.value for f in entered[0].fields] == ["17O", "120"]
    assert other_rules(PLAN) == ["Missed readings (missed_readings)"]


def test_a_form_becomes_a_validated_plan_or_says_why_not() -> None:
    proposed = proposed_plan(
        PLAN, {"limit:bp_crisis:0": "170", "limit:weight_gain_day:0": " 2.5 ", "other": "x"}
    )
    assert [c["rule"] for c in diff(PLAN, proposed)["changed"]] == ["bp_crisis", "weight_gain_day"]
    assert proposed.rules[0].limits[0].value == 170
    # Units are the limit's own: 2.5 lb, not kg.
    assert (proposed.rules[4].limits[0].value, proposed.rules[4].limits[0].unit) == (2.5, "lb")
    with pytest.raises(FormRefused, match=r"rule bp_crisis, limit 2 \(diastolic\): 'nan' is not"):
        proposed_plan(PLAN, {"limit:bp_crisis:1": "nan"})
    with pytest.raises(
        FormRefused,
        match=r"^rule bp_crisis, limit 1 \(systolic\): 1800 mmHg is not a value a person can have",
    ):
        proposed_plan(PLAN, {"limit:bp_crisis:0": "1800"})
    with pytest.raises(FormRefused, match="a change limit at or above must be positive"):
        proposed_plan(PLAN, {"limit:weight_gain_day:0": "-1"})


def test_a_save_needs_a_reason_and_a_change() -> None:
    with pytest.raises(FormRefused, match="say why the plan changes"):
        plan_to_save(PLAN, {"limit:bp_crisis:0": "170"}, "  ")
    with pytest.raises(FormRefused, match="nothing to save"):
        plan_to_save(PLAN, {"limit:bp_crisis:0": "180.0"}, "reviewed")
    assert plan_to_save(PLAN, {"limit:bp_crisis:0": "170"}, "reviewed") != PLAN


def test_dry_run_counts_by_rule_in_the_plans_order() -> None:
    assert counts_by_rule(
        PLAN,
        {"bp_crisis": 2, "bp_sustained_stage2": 1, "retired_rule": 1},
        {"bp_crisis": 1, "bp_sustained_stage2": 1},
    ) == [
        RuleCount("bp_crisis", "Hypertensive crisis", 2, 1),
        RuleCount("bp_sustained_stage2", "Sustained stage 2 hypertension", 1, 1),
        RuleCount("retired_rule", "retired_rule", 1, 0),
    ]
    # No plan in force: nothing to compare with.
    assert counts_by_rule(PLAN, None, {"systolic_low": 3}) == [
        RuleCount("systolic_low", "Low blood pressure", None, 3)
    ]


def test_a_versions_changes_in_words() -> None:
    lowered = proposed_plan(PLAN, {"limit:bp_crisis:0": "170", "limit:weight_gain_week:0": "4"})
    hypertension = plan_from_templates(["hypertension"])
    assert changes(diff(PLAN, lowered)) == [
        "bp_crisis: limit 1 (systolic ≥ 180 mmHg, critical): value 180 → 170",
        "weight_gain_week: limit 1 (weight ≥ 5 lb, high): value 5 → 4",
    ]
    assert changes(diff(hypertension, PLAN)) == [
        "added rule weight_gain_day (change)",
        "added rule weight_gain_week (change)",
        "missed_readings: days 3 → 2",
        "missed_readings: expects 'blood_pressure' → 'blood_pressure', 'body_weight'",
    ]
    assert changes(diff(PLAN, PLAN)) == []


def test_a_baseline_rule_has_no_fields_and_is_named_among_the_others() -> None:
    plan = plan_from_templates(["heart_failure_personal"])
    assert "weight_drift" not in [rule.rule_id for rule in limit_fields(plan)]
    assert other_rules(plan) == [
        "Weight above the patient's usual (weight_drift)",
        "Missed readings (missed_readings)",
    ]
