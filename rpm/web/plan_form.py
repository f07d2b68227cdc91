"""The care-plan editor's form: a plan's limits as fields, a posted form back into a plan,
and what changed between two versions, in words. Pure.

A field names its limit by rule and place (`limit:bp_crisis:0`), and holds its value in
the limit's own unit: what is edited is the value, never the unit, so 3 lb stays pounds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from rpm.rules.plan import (
    BaselineRule,
    CarePlan,
    Limit,
    Measure,
    MissedRule,
    Op,
    Severity,
    number,
)


@dataclass(frozen=True)
class LimitField:
    """One limit's value as a form field."""

    name: str
    id: str
    measure: Measure
    op: Op
    unit: str
    severity: Severity
    # The limit's own name, if it has one ("crisis").
    label: str
    # As the form shows it: the plan's value, or what was entered.
    value: str


@dataclass(frozen=True)
class RuleFields:
    rule_id: str
    title: str
    held_against: str
    enabled: bool
    fields: list[LimitField]


def limit_fields(plan: CarePlan, entered: Mapping[str, str] | None = None) -> list[RuleFields]:
    """The plan's rules that have limits, each limit a field: showing what was `entered`
    (a form sent back with a refusal), else the plan's value."""
    entered = entered or {}
    rules = []
    for rule in plan.rules:
        if isinstance(rule, MissedRule | BaselineRule):
            continue
        fields = []
        for n, limit in enumerate(rule.limits):
            name = f"limit:{rule.id}:{n}"
            fields.append(
                LimitField(
                    name,
                    f"limit-{rule.id}-{n}",
                    limit.measure,
                    limit.op,
                    limit.unit,
                    limit.severity,
                    limit.label,
                    entered.get(name, number(limit.value)),
                )
            )
        rules.append(
            RuleFields(rule.id, rule.title or rule.id, rule.held_against, rule.enabled, fields)
        )
    return rules


def other_rules(plan: CarePlan) -> list[str]:
    """The rules without fixed limits (missed readings, a personal baseline), named: the
    form does not change them."""
    return [
        f"{rule.title or rule.id} ({rule.id})"
        for rule in plan.rules
        if rule.enabled and isinstance(rule, MissedRule | BaselineRule)
    ]


class FormRefused(ValueError):
    """A form that makes no valid plan, with a sentence saying why."""


def proposed_plan(plan: CarePlan, form: Mapping[str, str]) -> CarePlan:
    """`plan` with the limit values of the form (those it holds), validated as any plan:
    `FormRefused` naming the rule and limit when a value is not a number or makes a plan
    no care manager means (a lower bound above an upper one, a value no person has)."""
    values = {}
    for rule in limit_fields(plan):
        for n, field in enumerate(rule.fields):
            entered = form.get(field.name)
            if entered is None:
                continue
            try:
                value = float(entered)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise FormRefused(
                    f"rule {rule.rule_id}, limit {n + 1} ({field.measure}): {entered.strip()!r}"
                    f" is not a number of {field.unit}"
                )
            values[rule.rule_id, n] = value
    try:
        return plan.with_limit_values(values)
    except ValidationError as exc:
        raise FormRefused(
            "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        ) from None


def check_reason(reason: str) -> None:
    """`FormRefused` for a change with no reason: every version says why."""
    if not reason.strip():
        raise FormRefused("say why the plan changes: the reason is kept with the version")


def plan_to_save(plan: CarePlan, form: Mapping[str, str], reason: str) -> CarePlan:
    """The proposed plan (`proposed_plan`), if it changes something and says why."""
    check_reason(reason)
    proposed = proposed_plan(plan, form)
    if proposed == plan:
        raise FormRefused("no limit was changed: there is nothing to save")
    return proposed


@dataclass(frozen=True)
class RuleCount:
    """How many alerts a rule raised in a dry run: under the plan in force (None: there
    is none) and under the proposed plan."""

    rule_id: str
    title: str
    in_force: int | None
    proposed: int


def counts_by_rule(
    plan: CarePlan, in_force: Mapping[str, int] | None, proposed: Mapping[str, int]
) -> list[RuleCount]:
    """Each rule that raised alerts under either plan, in the proposed plan's order (a rule
    only the plan in force has, last)."""
    titles = {rule.id: rule.title or rule.id for rule in plan.rules}
    ids = [*titles, *(in_force or {})]
    return [
        RuleCount(
            rule_id,
            titles.get(rule_id, rule_id),
            None if in_force is None else in_force.get(rule_id, 0),
            proposed.get(rule_id, 0),
        )
        for rule_id in dict.fromkeys(ids)
        if proposed.get(rule_id) or (in_force or {}).get(rule_id)
    ]


def changes(diff: Mapping[str, Any]) -> list[str]:
    """What `rpm.rules.plan.diff` found, one line each: "bp_crisis: limit 1 (systolic ≥
    180 mmHg, critical): value 180 → 170"."""
    lines = [f"added rule {rule['id']} ({rule['kind']})" for rule in diff["added"]]
    lines += [f"removed rule {rule['id']}" for rule in diff["removed"]]
    for change in diff["changed"]:
        for field in change["fields"]:
            if field["field"] == "limits":
                lines += _limit_changes(change["rule"], field["from"], field["to"])
            else:
                was, now = _shown(field["from"]), _shown(field["to"])
                lines.append(f"{change['rule']}: {field['field']} {was} → {now}")
    if diff["notify"] is not None:
        was, now = diff["notify"]["from"]["sms"], diff["notify"]["to"]["sms"]
        lines.append(f"severities sent by SMS: {_shown(was)} → {_shown(now)}")
    return lines


def _limit_changes(rule_id: str, before: list[Any], after: list[Any]) -> list[str]:
    lines = []
    for n, (was, now) in enumerate(itertools.zip_longest(before, after), 1):
        if was == now:
            continue
        if was is None:
            lines.append(f"{rule_id}: limit {n} added, {_limit(now)}")
        elif now is None:
            lines.append(f"{rule_id}: limit {n} removed, {_limit(was)}")
        else:
            fields = [
                f"{key} {_shown(was.get(key))} → {_shown(now.get(key))}"
                for key in sorted(was.keys() | now.keys())
                if was.get(key) != now.get(key)
            ]
            lines.append(f"{rule_id}: limit {n} ({_limit(was)}): {', '.join(fields)}")
    return lines


def _limit(dumped: Mapping[str, Any]) -> str:
    # `diff` holds limits as JSON, dumped from valid plans: read back, each words its
    # condition as the charts do.
    limit = Limit.model_validate(dumped)
    return f"{limit.measure.value} {limit.condition}, {limit.severity.value}"


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value) or "none"
    return repr(value) if isinstance(value, str) else str(value)
