"""Readings, limits and histories for the rule-engine unit tests, one line each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rpm.devices.checks import KG_PER_LB
from rpm.rules.evaluate import (
    Context,
    Finding,
    History,
    HistoryRow,
    ReadingKey,
    findings,
    trace,
)
from rpm.rules.plan import Limit, ReadingRule

# A Monday afternoon in UTC, well away from any DST change.
T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")
IN_UTC = Context(plan_version=3, time_zone=ZoneInfo("UTC"))


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def limit(
    measure: str, op: str, value: float, unit: str, severity: str = "high", **more: Any
) -> Limit:
    return Limit.model_validate(
        {"measure": measure, "op": op, "value": value, "unit": unit, "severity": severity, **more}
    )


def bp(when: datetime, systolic: float, diastolic: float = 80.0, device: int = 1) -> HistoryRow:
    key = ReadingKey(device, "blood_pressure", when)
    return HistoryRow(key, systolic, diastolic, 70.0, None, None, None)


def weight(when: datetime, kg: float) -> HistoryRow:
    return HistoryRow(ReadingKey(2, "body_weight", when), None, None, None, kg, None, None)


def weight_lb(when: datetime, lb: float) -> HistoryRow:
    """A scale that reads in pounds: the store keeps kilograms, converted as ingest does."""
    return weight(when, lb * KG_PER_LB)


def glucose(when: datetime, mg_dl: float, meal: str | None = None) -> HistoryRow:
    key = ReadingKey(3, "blood_glucose", when)
    return HistoryRow(key, None, None, None, None, mg_dl, meal)


def evaluate(rule: ReadingRule, rows: list[HistoryRow], context: Context = IN_UTC) -> list[Finding]:
    history = History.of(rows)
    return findings(trace(rule, history), history, context)


def fired_at(rule: ReadingRule, rows: list[HistoryRow]) -> list[datetime]:
    return [f.at for f in evaluate(rule, rows)]
