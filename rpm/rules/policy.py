"""From findings to alert changes: one open alert per patient and rule. Pure.

A finding updates the patient's open (or acknowledged) alert for its rule when there is
one. Otherwise it opens a new alert, unless a nurse has already resolved an alert for
the very episode it belongs to: a weight that stays up after the nurse has acted on it
should not bring the same alert back with every reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rpm.rules.evaluate import Finding, ReadingKey
from rpm.rules.plan import Severity


class Action(StrEnum):
    OPEN = "open"
    UPDATE = "update"
    SUPPRESS = "suppress"


@dataclass(frozen=True)
class LatestAlert:
    """The patient's most recent alert for a rule, as the store has it."""

    id: int
    resolved: bool
    last_triggered_at: datetime


@dataclass(frozen=True)
class AlertWrite:
    """What to write for one patient and rule: open an alert, or update the open one
    (the store decides which, under its one-open-alert constraint)."""

    patient_id: int
    rule_id: str
    plan_version: int
    severity: Severity
    # The sentence of the most severe finding (the latest of those): the alert's headline.
    message: str
    latest_message: str
    first_triggered_at: datetime
    last_triggered_at: datetime
    triggers: tuple[ReadingKey, ...]


def decide(finding: Finding, latest: LatestAlert | None) -> Action:
    if latest is not None and not latest.resolved:
        return Action.UPDATE
    if latest is None or finding.starts_episode:
        return Action.OPEN
    if latest.last_triggered_at >= finding.episode_since:
        return Action.SUPPRESS
    return Action.OPEN


def alert_writes(
    patient_id: int,
    plan_version: int,
    found: Iterable[Finding],
    latest: Mapping[str, LatestAlert],
) -> tuple[list[AlertWrite], int]:
    """Fold a patient's findings, rule by rule in time order, into at most one write per
    rule; and count the findings suppressed."""
    by_rule: dict[str, list[Finding]] = {}
    for finding in sorted(found, key=lambda f: f.at):
        by_rule.setdefault(finding.rule_id, []).append(finding)
    writes = []
    suppressed = 0
    for rule_id, rule_findings in sorted(by_rule.items()):
        kept: list[Finding] = []
        state = latest.get(rule_id)
        for finding in rule_findings:
            if kept or decide(finding, state) is not Action.SUPPRESS:
                # Once this batch has opened or updated the alert, it is open.
                kept.append(finding)
            else:
                suppressed += 1
        if kept:
            writes.append(_write(patient_id, plan_version, rule_id, kept))
    return writes, suppressed


def _write(patient_id: int, plan_version: int, rule_id: str, kept: list[Finding]) -> AlertWrite:
    headline = max(kept, key=lambda f: (f.severity.rank, f.at))
    return AlertWrite(
        patient_id=patient_id,
        rule_id=rule_id,
        plan_version=plan_version,
        severity=headline.severity,
        message=headline.message,
        latest_message=kept[-1].message,
        first_triggered_at=kept[0].at,
        last_triggered_at=kept[-1].at,
        triggers=tuple(f.key for f in kept if f.key is not None),
    )
