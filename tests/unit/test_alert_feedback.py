"""The nurses' resolve outcomes per rule, and the suggestion a mostly not actionable rule
gets: what it says depends on what the nurses found and on the rule."""

from __future__ import annotations

from rpm.alerts.feedback import OutcomeCount, feedback
from rpm.alerts.lifecycle import Outcome
from rpm.rules.plan import CarePlan
from rpm.rules.templates import plan_from_templates

PLAN = plan_from_templates(["hypertension_personal", "heart_failure_personal"])


def _suggestion(rule_id: str, **counts: int) -> str | None:
    found = feedback(PLAN, [OutcomeCount(rule_id, Outcome(o), n) for o, n in counts.items()])
    return {r.rule_id: r for r in found.rules}[rule_id].suggestion


def test_every_rule_of_the_plan_is_listed_with_every_outcome_counted() -> None:
    found = feedback(PLAN, [OutcomeCount("bp_crisis", Outcome.PATIENT_CONTACTED, 2)])
    assert [r.rule_id for r in found.rules] == [r.id for r in PLAN.rules]
    crisis = found.rules[0]
    assert crisis.outcomes == dict.fromkeys(Outcome, 0) | {Outcome.PATIENT_CONTACTED: 2}
    assert (crisis.resolved, crisis.not_actionable, crisis.suggestion) == (2, 0, None)
    assert (found.resolved, found.not_actionable) == (2, 0)


def test_no_suggestion_on_few_alerts_or_on_mostly_actionable_ones() -> None:
    assert _suggestion("weight_drift", no_action_needed=4) is None
    assert _suggestion("weight_drift", no_action_needed=6, medication_adjusted=4) is None


def test_needless_alerts_suggest_limits_or_baseline_by_kind() -> None:
    assert "review this patient's limits" in str(
        _suggestion("bp_sustained_stage2", no_action_needed=7)
    )
    assert "raise its decision interval or minimum spread" in str(
        _suggestion("weight_drift", no_action_needed=5)
    )
    assert "how often this patient is expected to measure" in str(
        _suggestion("missed_readings", no_action_needed=5)
    )


def test_errors_on_a_rule_that_already_asks_for_a_repeat_point_at_the_device() -> None:
    # systolic_low asks for a repeat in the personal template.
    assert "check the patient's device and how they measure" in str(
        _suggestion("systolic_low", measurement_or_device_error=5)
    )
    plain = feedback(
        CarePlan(rules=plan_from_templates(["hypertension"]).rules),
        [OutcomeCount("systolic_low", Outcome.MEASUREMENT_OR_DEVICE_ERROR, 5)],
    )
    assert "ask the patient for a repeat reading" in str(plain.rules[2].suggestion)


def test_without_a_plan_the_rules_with_alerts_are_still_counted() -> None:
    found = feedback(None, [OutcomeCount("gone", Outcome.NO_ACTION_NEEDED, 9)])
    [gone] = found.rules
    assert (gone.in_plan, gone.resolved, gone.suggestion) == (False, 9, None)
