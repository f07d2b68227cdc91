"""What nurses found when they resolved a patient's alerts, rule by rule, and a suggestion
to the care manager when a rule's alerts were mostly not actionable. Pure.

"Not actionable" is what the nurse recorded as needing no action, or as a measurement or
device error. The thresholds are a local starting point, not a published one: enough
resolved alerts to mean something, and most of them not actionable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rpm.alerts.lifecycle import Outcome
from rpm.rules.plan import (
    BaselineRule,
    CarePlan,
    ChangeRule,
    MissedRule,
    ReadingRule,
    Severity,
    ThresholdRule,
)

NOT_ACTIONABLE = frozenset({Outcome.NO_ACTION_NEEDED, Outcome.MEASUREMENT_OR_DEVICE_ERROR})
# Fewer resolved alerts than this make no suggestion: five alerts is a few weeks of a
# noisy rule, and fewer could be chance.
MIN_RESOLVED = 5
# "Mostly": at least this share of the resolved alerts was not actionable.
MOSTLY = 0.7


@dataclass(frozen=True)
class OutcomeCount:
    """Resolved alerts of one rule with one outcome (the store's count)."""

    rule_id: str
    outcome: Outcome
    alerts: int


@dataclass(frozen=True)
class RuleFeedback:
    rule_id: str
    title: str
    # Resolved alerts by outcome, every outcome named (0 when none).
    outcomes: dict[Outcome, int]
    # False: the rule is no longer in the plan in force (its past alerts are still counted).
    in_plan: bool
    suggestion: str | None = None

    @property
    def resolved(self) -> int:
        return sum(self.outcomes.values())

    @property
    def not_actionable(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome in NOT_ACTIONABLE)


@dataclass(frozen=True)
class PlanFeedback:
    rules: list[RuleFeedback]
    outcomes: dict[Outcome, int] = field(default_factory=dict)

    @property
    def resolved(self) -> int:
        return sum(self.outcomes.values())

    @property
    def not_actionable(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome in NOT_ACTIONABLE)


def feedback(plan: CarePlan | None, counts: Iterable[OutcomeCount]) -> PlanFeedback:
    """Per rule of the plan in force (and per rule since removed that had alerts), and for
    the whole plan: the outcomes recorded, and a suggestion where one is due."""
    by_rule: dict[str, dict[Outcome, int]] = {}
    for count in counts:
        mine = by_rule.setdefault(count.rule_id, dict.fromkeys(Outcome, 0))
        mine[count.outcome] += count.alerts
    rules = {rule.id: rule for rule in plan.rules} if plan is not None else {}
    found = []
    for rule_id in [*rules, *(r for r in sorted(by_rule) if r not in rules)]:
        outcomes = by_rule.get(rule_id, dict.fromkeys(Outcome, 0))
        rule = rules.get(rule_id)
        title = (rule.title or rule.id) if rule is not None else rule_id
        found.append(
            RuleFeedback(rule_id, title, outcomes, rule is not None, _suggest(rule, outcomes))
        )
    total = dict.fromkeys(Outcome, 0)
    for outcomes in by_rule.values():
        for outcome, n in outcomes.items():
            total[outcome] += n
    return PlanFeedback(found, total)


def _suggest(rule: ReadingRule | MissedRule | None, outcomes: dict[Outcome, int]) -> str | None:
    resolved = sum(outcomes.values())
    errors = outcomes[Outcome.MEASUREMENT_OR_DEVICE_ERROR]
    idle = outcomes[Outcome.NO_ACTION_NEEDED]
    if rule is None or resolved < MIN_RESOLVED or errors + idle < MOSTLY * resolved:
        return None
    share = f"{errors + idle} of its {resolved} resolved alerts were not actionable"
    if errors >= idle:
        # A critical finding never waits for a repeat: a rule of critical limits only
        # cannot ask for one.
        if (
            isinstance(rule, ThresholdRule | ChangeRule)
            and rule.confirm_within_minutes is None
            and any(limit.severity is not Severity.CRITICAL for limit in rule.limits)
        ):
            return (
                f"{share}, most of them measurement or device errors: ask the patient for a"
                " repeat reading before alerting (confirmation), or check their device."
            )
        return (
            f"{share}, most of them measurement or device errors: check the patient's"
            " device and how they measure."
        )
    match rule:
        case BaselineRule():
            return (
                f"{share}: this patient's readings vary more than the rule allows; raise its"
                " decision interval or minimum spread."
            )
        case MissedRule():
            return f"{share}: review how often this patient is expected to measure."
        case _:
            return (
                f"{share}: review this patient's limits (they may sit at the patient's usual"
                " level), or watch the patient's own baseline instead (a baseline rule)."
            )
