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

from rpm.devices.model import ReadingKind
from rpm.rules.plan import (
    BaselineRule,
    CarePlan,
    Limit,
    Measure,
    MissedRule,
    Op,
    Severity,
    number,
    units_of,
)


@dataclass(frozen=True)
class Setting:
    """One field of the form other than a limit's value: a rule's window, count, severity,
    unit, whether it is on; the plan's SMS routing. `kind` says how it is shown and read:
    "number", "whole", "optional" (a whole number or empty: none), "choice" (one of
    `choices`), "flag" (on or off), "checks" (any of `choices`)."""

    name: str
    id: str
    words: str
    kind: str
    # As the form shows it: the plan's value, or what was entered ("checks": unused).
    value: str
    # (value, words) of a choice or of the checks.
    choices: tuple[tuple[str, str], ...] = ()
    # The checks that are ticked.
    ticked: frozenset[str] = frozenset()

    def check_name(self, value: str) -> str:
        return f"{self.name}:{value}"


@dataclass(frozen=True)
class LimitField:
    """One limit's value as a form field, with its unit, condition and severity."""

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
    # Its unit, condition and severity as fields (in `limit_fields`'s words).
    settings: tuple[Setting, ...] = ()


@dataclass(frozen=True)
class RuleFields:
    rule_id: str
    title: str
    held_against: str
    enabled: bool
    fields: list[LimitField]
    # The rule's own settings: whether it is on, its window, counts, severity...
    settings: list[Setting]


# What the form offers of each kind of rule beyond its limits, in the order shown:
# (field, words, how it is read). Every field the plan model has that a care manager
# tunes; ids, titles, advice and sources are the template's.
_FLAG = ("enabled", "On: the rule is checked", "flag")
_COOLDOWN = ("cooldown_hours", "Same episode if it fires again within, hours", "number")
_CONFIRM = (
    "confirm_within_minutes",
    "Ask for a repeat reading and wait, minutes (empty: alert at once)",
    "optional",
)
_WINDOW = ("window_hours", "Window, hours", "number")
_SETTINGS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "threshold": (_FLAG, _CONFIRM, _COOLDOWN),
    "count": (
        _FLAG,
        ("n", "Readings beyond a limit", "whole"),
        ("of_last", "Of the last, readings", "whole"),
        _COOLDOWN,
    ),
    "mean": (_FLAG, _WINDOW, ("min_readings", "At least, readings", "whole"), _COOLDOWN),
    "change": (_FLAG, _WINDOW, _CONFIRM, _COOLDOWN),
    "slope": (_FLAG, _WINDOW, ("min_readings", "At least, readings", "whole"), _COOLDOWN),
    "missed": (
        _FLAG,
        ("expects", "Readings expected", "checks"),
        ("days", "Whole days without one, in the patient's time zone", "whole"),
        ("severity", "Severity", "choice"),
        _COOLDOWN,
    ),
    "baseline": (
        _FLAG,
        ("direction", "Drift", "choice"),
        ("severity", "Severity", "choice"),
        ("min_spread", "Smallest spread counted", "number"),
        ("unit", "Unit of the spread", "choice"),
        ("learn_days", "Learn the baseline over, days", "number"),
        ("learn_readings", "Silent until it has, readings", "whole"),
        ("recent_hours", "Judge the readings of the last, hours", "number"),
        ("allowance_sd", "Allowance, in spreads", "number"),
        ("decision_sd", "Decision interval, in spreads", "number"),
        _COOLDOWN,
    ),
}
_SEVERITIES = tuple((s.value, s.value.capitalize()) for s in Severity)
_OPS = tuple((op.value, op.phrase.capitalize()) for op in Op)
_READING_KINDS = tuple((k.value, k.value.replace("_", " ").capitalize()) for k in ReadingKind)
# The plan's SMS routing: the care team's, or these severities.
SMS_FROM = "notify:sms_from"
SMS = "notify:sms"


def _choices(rule: Any, key: str) -> tuple[tuple[str, str], ...]:
    if key == "severity":
        return _SEVERITIES
    if key == "direction":
        return (("up", "Upwards"), ("down", "Downwards"))
    if key == "unit":
        return tuple((u, u) for u in units_of(rule.measure))
    return _READING_KINDS


def _setting(
    name: str, words: str, kind: str, current: Any, entered: Mapping[str, str], choices: Any = ()
) -> Setting:
    """A field showing what was `entered` (a form sent back), else the plan's `current`."""
    id_ = name.replace(":", "-")
    if kind == "checks":
        if name in entered:  # the group's marker: the form held it
            ticked = frozenset(v for v, _ in choices if f"{name}:{v}" in entered)
        else:
            ticked = frozenset(str(c) for c in current or ())
        return Setting(name, id_, words, kind, "", choices, ticked)
    if kind == "flag":
        shown = entered.get(name, "yes" if current else "no")
    elif current is None:
        shown = entered.get(name, "")
    else:
        shown = entered.get(name, number(current) if kind == "number" else str(current))
    return Setting(name, id_, words, kind, shown, choices)


def limit_fields(plan: CarePlan, entered: Mapping[str, str] | None = None) -> list[RuleFields]:
    """The plan's rules that have limits, each limit a field: showing what was `entered`
    (a form sent back with a refusal), else the plan's value."""
    return [rule for rule in rule_fields(plan, entered) if rule.fields]


def rule_fields(plan: CarePlan, entered: Mapping[str, str] | None = None) -> list[RuleFields]:
    """Every rule of the plan as fields: its limits (value, unit, condition, severity)
    and its settings (`_SETTINGS`)."""
    entered = entered or {}
    rules = []
    for rule in plan.rules:
        fields = []
        limits = () if isinstance(rule, MissedRule) else rule.limits
        for n, limit in enumerate(limits):
            assert not isinstance(rule, MissedRule)
            name = f"limit:{rule.id}:{n}"
            where = f"limit {n + 1} of {rule.title or rule.id} ({limit.measure.value})"
            units = tuple((u, u) for u in units_of(limit.measure, rule.per_day))
            settings = (
                _setting(f"{name}:unit", f"Unit of {where}", "choice", limit.unit, entered, units),
                _setting(f"{name}:op", f"Fires when, {where}", "choice", limit.op.value,
                         entered, _OPS),
                _setting(f"{name}:severity", f"Severity of {where}", "choice",
                         limit.severity.value, entered, _SEVERITIES),
            )  # fmt: skip
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
                    settings,
                )
            )
        settings_of = [
            _setting(
                f"rule:{rule.id}:{key}",
                words,
                kind,
                getattr(rule, key),
                entered,
                _choices(rule, key) if kind in ("choice", "checks") else (),
            )
            for key, words, kind in _SETTINGS[rule.kind]
        ]
        held_against = (
            f"no reading for {rule.days} whole days"
            if isinstance(rule, MissedRule)
            else rule.held_against
        )
        rules.append(
            RuleFields(
                rule.id, rule.title or rule.id, held_against, rule.enabled, fields, settings_of
            )
        )
    return rules


def sms_fields(plan: CarePlan, entered: Mapping[str, str] | None = None) -> tuple[Setting, Setting]:
    """The plan's SMS routing: whose (the care team's, or the plan's), and the plan's
    severities."""
    entered = entered or {}
    sms = plan.notify.sms
    source = (("team", "The care team's routing"), ("plan", "Only the severities ticked here"))
    whose = _setting(SMS_FROM, "Which alerts also go by SMS to the on-call nurse", "choice",
                     "team" if sms is None else "plan", entered, source)  # fmt: skip
    which = _setting(SMS, "Severities sent by SMS", "checks", sms or (), entered, _SEVERITIES)
    return whose, which


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
    """`plan` with the fields of the form (those it holds), validated as any plan:
    `FormRefused` naming the rule and field when a value is not a number or makes a plan
    no care manager means (a lower bound above an upper one, a value no person has)."""
    document = plan.model_dump(mode="json")
    for rule, fields in zip(document["rules"], rule_fields(plan), strict=True):
        for n, field in enumerate(fields.fields):
            limit = rule["limits"][n]
            entered = form.get(field.name)
            if entered is not None:
                where = f"rule {fields.rule_id}, limit {n + 1} ({field.measure})"
                limit["value"] = _number(entered, f"{where}: {entered.strip()!r} is not a"
                                         f" number of {field.unit}")  # fmt: skip
            for setting in field.settings:
                if (chosen := form.get(setting.name)) is not None:
                    limit[setting.name.rsplit(":", 1)[1]] = chosen
        for setting in fields.settings:
            key = setting.name.rsplit(":", 1)[1]
            if setting.name in form:
                rule[key] = _read(setting, form, f"rule {fields.rule_id}, {setting.words}")
    if (whose := form.get(SMS_FROM)) is not None:
        ticked = [s.value for s in Severity if f"{SMS}:{s.value}" in form]
        document["notify"] = {"sms": None if whose == "team" else ticked}
    try:
        return CarePlan.model_validate(document)
    except ValidationError as exc:
        raise FormRefused("; ".join(_said(document, e) for e in exc.errors())) from None


def _number(entered: str, refusal: str) -> float:
    try:
        value = float(entered)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise FormRefused(refusal)
    return value


def _read(setting: Setting, form: Mapping[str, str], where: str) -> Any:
    """A setting's value from the form, as the plan model takes it."""
    entered = form[setting.name].strip()
    match setting.kind:
        case "flag":
            return entered == "yes"
        case "checks":
            return [v for v, _ in setting.choices if setting.check_name(v) in form]
        case "choice":
            return entered
        case "optional" if not entered:
            return None
        case "whole" | "optional":
            value = _number(entered, f"{where}: {entered!r} is not a whole number")
            if not value.is_integer():
                raise FormRefused(f"{where}: {entered!r} is not a whole number")
            return int(value)
        case _:
            return _number(entered, f"{where}: {entered!r} is not a number")


def _said(document: Mapping[str, Any], error: Any) -> str:
    """A validation error in words, naming the rule and field a constraint is on (a rule's
    own checks name them already)."""
    message = str(error["msg"]).removeprefix("Value error, ")
    loc = error["loc"]
    if len(loc) >= 4 and loc[0] == "rules" and isinstance(loc[1], int):
        rule_id = document["rules"][loc[1]]["id"]
        field = ", ".join(str(part) for part in loc[3:])
        return f"rule {rule_id}, {field}: {message[:1].lower()}{message[1:]}"
    return message


def check_reason(reason: str) -> None:
    """`FormRefused` for a change with no reason: every version says why."""
    if not reason.strip():
        raise FormRefused("say why the plan changes: the reason is kept with the version")


def plan_to_save(plan: CarePlan, form: Mapping[str, str], reason: str) -> CarePlan:
    """The proposed plan (`proposed_plan`), if it changes something and says why."""
    check_reason(reason)
    proposed = proposed_plan(plan, form)
    if proposed == plan:
        raise FormRefused("nothing was changed: there is nothing to save")
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
