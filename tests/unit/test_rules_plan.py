"""Care plans: unit conversion, validation messages a care manager can act on, plan
diffs, and the guideline templates."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from rpm.devices.checks import KG_PER_LB, MG_DL_PER_MMOL_L
from rpm.devices.model import ReadingKind
from rpm.rules.evaluate import lookback_hours
from rpm.rules.plan import (
    MMHG_PER_KPA,
    CarePlan,
    MissedRule,
    Rule,
    diff,
)
from rpm.rules.templates import TEMPLATES, UnknownTemplate, plan_from_templates
from tests.unit.rules_builders import limit

RULE: TypeAdapter[Any] = TypeAdapter(Rule)


def _limit(
    measure: str, op: str, value: float, unit: str | None, severity: str = "high"
) -> dict[str, Any]:
    given = {"measure": measure, "op": op, "value": value, "severity": severity}
    return given if unit is None else {**given, "unit": unit}


def _threshold(*limits: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"kind": "threshold", "id": "r", "limits": list(limits), **more}


def test_limits_convert_to_canonical_units() -> None:
    assert limit("systolic", "above", 24, "kPa").canonical_value() == 24 * MMHG_PER_KPA
    assert limit("weight", "above", 250, "lb").canonical_value() == 250 * KG_PER_LB
    assert limit("glucose", "below", 3.9, "mmol/L").canonical_value() == 3.9 * MG_DL_PER_MMOL_L
    assert limit("pulse", "above", 120, "/min").canonical_value() == 120
    assert limit("weight", "at_or_above", 0.5, " lb/day ").canonical_value(per_day=True) == (
        0.5 * KG_PER_LB
    )
    assert limit("weight", "above", 2, "lb", hysteresis=1).canonical_hysteresis() == KG_PER_LB


def test_a_limit_describes_itself_in_its_own_unit() -> None:
    assert limit("systolic", "at_or_above", 180.0, "mmHg", label="crisis").describe() == (
        "the crisis limit of 180 mmHg"
    )
    assert limit("weight", "at_or_above", 1.4, "kg").describe() == "the limit of 1.4 kg"
    # As a chart's line and a version's changes show it.
    assert limit("systolic", "at_or_above", 180.0, "mmHg").condition == "≥ 180 mmHg"
    assert limit("glucose", "below", 3.9, "mmol/L").condition == "< 3.9 mmol/L"


def test_equivalent_limits_in_other_units_are_accepted() -> None:
    for unit, value in [("lb", 250), ("kg", 113.4)]:
        RULE.validate_python(_threshold(_limit("weight", "above", value, unit)))
    RULE.validate_python(_threshold(_limit("systolic", "above", 24, "kPa")))
    RULE.validate_python(_threshold(_limit("glucose", "below", 3.9, "mmol/L")))


INVALID = [
    pytest.param(
        _threshold(
            _limit("systolic", "at_or_below", 140, "mmHg"),
            _limit("systolic", "at_or_above", 120, "mmHg"),
        ),
        "rule r: lower bound 140 mmHg (at or below) is not below upper bound 120 mmHg"
        " (at or above) for systolic: it would fire on every reading",
        id="lower-above-upper",
    ),
    pytest.param(
        _threshold(_limit("weight", "below", 100, "kg"), _limit("weight", "above", 200, "lb")),
        "rule r: lower bound 100 kg (below) is not below upper bound 200 lb (above) for weight",
        id="lower-above-upper-across-units",
    ),
    pytest.param(
        _threshold(_limit("temperature", "above", 38, "C")),
        "Input should be 'systolic', 'diastolic', 'pulse', 'weight' or 'glucose'",
        id="unknown-measure",
    ),
    pytest.param(
        _threshold(_limit("weight", "above", 100, None)),
        "limits.0.unit\n  Field required",
        id="missing-unit",
    ),
    pytest.param(
        _threshold(_limit("systolic", "above", 1800, "mmHg")),
        "rule r, limit 1 (systolic): 1800 mmHg is not a value a person can have"
        " (limits must lie within 50-300 mmHg)",
        id="impossible-systolic",
    ),
    pytest.param(
        _threshold(_limit("weight", "above", 250, "kg"), _limit("weight", "above", 900, "lb")),
        "rule r, limit 2 (weight): 900 lb is not a value a person can have"
        " (limits must lie within 2-400 kg)",
        id="impossible-weight-in-lb",
    ),
    pytest.param(
        _threshold(_limit("weight", "above", 100, "mg/dL")),
        "rule r, limit 1 (weight): unit 'mg/dL' is not one for weight: use kg, lb",
        id="bad-unit",
    ),
    pytest.param(
        _threshold(_limit("weight", "above", 100, "kg/day")),
        "unit 'kg/day' is not one for weight: use kg, lb",
        id="per-day-unit-on-a-threshold",
    ),
    pytest.param(
        _threshold(
            _limit("glucose", "below", 70, "mg/dL", "critical"),
            _limit("glucose", "below", 54, "mg/dL", "high"),
        ),
        "rule r: the critical limit 70 mg/dL for glucose is less extreme than the high limit"
        " 54 mg/dL",
        id="severity-order",
    ),
    pytest.param(
        # Regression: the levels were compared only with their neighbour in severity
        # order, so a second limit of one severity hid the one before it.
        _threshold(
            _limit("systolic", "at_or_above", 155, "mmHg", "warning"),
            _limit("systolic", "at_or_above", 160, "mmHg", "high"),
            _limit("systolic", "at_or_above", 150, "mmHg", "high"),
        ),
        "rule r: the high limit 150 mmHg for systolic is less extreme than the warning limit"
        " 155 mmHg",
        id="severity-order-behind-a-limit-of-the-same-severity",
    ),
    pytest.param(
        _threshold(_limit("systolic", "above", 180, "mmHg") | {"hysteresis": 200}),
        "rule r, limit 1 (systolic): hysteresis 200 is too wide",
        id="hysteresis",
    ),
    pytest.param(
        _threshold(_limit("systolic", "above", 180, "mmHg"), meal_contexts=["fasting"]),
        "rule r: meal contexts apply to glucose limits only",
        id="meal-context-off-glucose",
    ),
    pytest.param(
        {
            "kind": "count",
            "id": "r",
            "n": 3,
            "of_last": 2,
            "limits": [_limit("systolic", "above", 160, "mmHg")],
        },
        "rule r: of_last (2) is smaller than n (3)",
        id="of-last-below-n",
    ),
    pytest.param(
        {
            "kind": "slope",
            "id": "r",
            "window_hours": 168,
            "limits": [_limit("weight", "at_or_above", 0.5, "kg")],
        },
        "rule r, limit 1 (weight): a slope is per day: use e.g. kg/day",
        id="slope-without-per-day",
    ),
    pytest.param(
        {
            "kind": "change",
            "id": "r",
            "window_hours": 24,
            "limits": [_limit("weight", "at_or_above", -2, "kg")],
        },
        "rule r, limit 1 (weight): a change limit at or above must be positive (a rise)",
        id="change-sign",
    ),
    pytest.param(
        {
            "kind": "change",
            "id": "r",
            "window_hours": 24,
            "limits": [_limit("weight", "at_or_above", 60, "kg")],
        },
        "a change of 60 kg is not one a person can have (at most 50 kg)",
        id="impossible-change",
    ),
    pytest.param(
        {"kind": "threshold", "id": "Bad id", "limits": [_limit("pulse", "above", 120, "bpm")]},
        "String should match pattern",
        id="rule-id",
    ),
    pytest.param(
        _threshold(_limit("pulse", "above", 120, "bpm"), color="red"),
        "color\n  Extra inputs are not permitted",
        id="unknown-field",
    ),
]


@pytest.mark.parametrize(("document", "message"), INVALID)
def test_what_no_care_manager_means_is_refused_with_a_clear_message(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        RULE.validate_python(document)


def test_rule_ids_are_unique_within_a_plan() -> None:
    rule = _threshold(_limit("pulse", "above", 120, "bpm"))
    with pytest.raises(ValidationError, match="rule id r appears twice: rule ids must be unique"):
        CarePlan.model_validate({"rules": [rule, rule]})


def test_disabled_rules_are_not_run_and_lookback_covers_windows_and_cooldowns() -> None:
    plan = CarePlan.model_validate(
        {
            "rules": [
                _threshold(_limit("pulse", "above", 120, "bpm"), cooldown_hours=36),
                {"kind": "mean", "id": "m", "window_hours": 72,
                 "limits": [_limit("systolic", "at_or_above", 140, "mmHg")]},
                {"kind": "change", "id": "off", "window_hours": 240, "enabled": False,
                 "limits": [_limit("weight", "at_or_above", 2, "kg")]},
                {"kind": "missed", "id": "missed", "expects": ["body_weight"], "days": 2},
            ]
        }
    )  # fmt: skip
    assert [r.id for r in plan.reading_rules()] == ["r", "m"]
    assert [r.id for r in plan.missed_rules()] == ["missed"]
    # Each rule looks back over its window or its cooldown, and a day more.
    assert [lookback_hours(r) for r in plan.reading_rules()] == [36 + 24, 72 + 24]


def test_diff_names_rules_added_removed_and_fields_changed() -> None:
    old = plan_from_templates(["hypertension"])
    document = old.model_dump(mode="json")
    document["rules"] = [r for r in document["rules"] if r["id"] != "pulse_out_of_range"]
    document["rules"][0]["limits"][0]["value"] = 170
    document["rules"][0]["advice"] = ""
    document["rules"].append(_threshold(_limit("pulse", "above", 110, "bpm")))
    document["notify"] = {"sms": ["critical"]}
    changes = diff(old, CarePlan.model_validate(document))
    assert [r["id"] for r in changes["added"]] == ["r"]
    assert [r["id"] for r in changes["removed"]] == ["pulse_out_of_range"]
    [changed] = changes["changed"]
    assert changed["rule"] == "bp_crisis"
    assert [f["field"] for f in changed["fields"]] == ["advice", "limits"]
    assert changes["notify"] == {"from": {"sms": None}, "to": {"sms": ["critical"]}}
    assert diff(old, old) == {"added": [], "removed": [], "changed": [], "notify": None}


def test_every_template_rule_cites_its_source() -> None:
    for template in TEMPLATES.values():
        for rule in template.rules:
            assert rule.source, f"{template.name}: rule {rule.id} has no source"


def test_templates_merge_into_one_plan_with_one_missed_readings_rule() -> None:
    plan = plan_from_templates(["hypertension", "diabetes", "hypertension"])
    ids = [r.id for r in plan.rules]
    assert ids == [
        *(r.id for r in TEMPLATES["hypertension"].rules),
        *(r.id for r in TEMPLATES["diabetes"].rules),
        "missed_readings",
    ]
    [missed] = plan.missed_rules()
    assert isinstance(missed, MissedRule)
    assert missed.expects == [ReadingKind.BLOOD_PRESSURE, ReadingKind.BLOOD_GLUCOSE]
    assert missed.days == 2  # the stricter of hypertension's 3 and diabetes' 2
    assert missed.source
    assert CarePlan.model_validate(plan.model_dump(mode="json")) == plan


def test_a_plan_from_no_templates_is_empty() -> None:
    assert plan_from_templates([]).rules == []


def test_unknown_templates_are_refused_by_name() -> None:
    with pytest.raises(
        UnknownTemplate,
        match=re.escape(
            "unknown care-plan template(s) copd, asthma:"
            " choose from hypertension, heart_failure, diabetes"
        ),
    ):
        plan_from_templates(["hypertension", "copd", "asthma"])


def test_a_plan_with_new_limit_values_is_validated_as_any_plan() -> None:
    plan = plan_from_templates(["hypertension"])
    lowered = plan.with_limit_values({("bp_crisis", 0): 170, ("systolic_low", 0): 85})
    assert [lim.value for lim in lowered.rules[0].limits] == [170, 120]
    assert lowered.rules[2].limits[0].value == 85
    assert plan.rules[0].limits[0].value == 180  # the plan itself is unchanged
    with pytest.raises(ValidationError, match="is not below upper bound"):
        plan.with_limit_values({("pulse_out_of_range", 0): 130})
    with pytest.raises(ValueError, match="the plan has no rule bp_crisis with a limit 3"):
        plan.with_limit_values({("bp_crisis", 2): 170})
