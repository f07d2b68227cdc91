"""The huddle board's decisions: a measure's trend, a last value against the plan's
limits, why a patient is worth discussing, and who comes first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpm.program.adherence import Adherence, assess
from rpm.program.huddle import (
    STEADY_WITHIN,
    MeasureSummary,
    OpenAlert,
    PatientOnBoard,
    Trend,
    board,
    breached_limit,
    trend,
)
from rpm.program.periods import period_on
from rpm.rules.plan import Measure, Severity
from rpm.rules.templates import plan_from_templates

NOW = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)
PLAN = plan_from_templates(["hypertension"])
CHICAGO = ZoneInfo("America/Chicago")


@given(st.sampled_from(list(Measure)), st.floats(20, 400))
def test_a_level_that_does_not_move_is_steady(measure: Measure, level: float) -> None:
    assert trend(measure, level, level) is Trend.STEADY
    assert trend(measure, level + STEADY_WITHIN[measure] * 0.9, level) is Trend.STEADY


def test_a_trend_says_which_way_once_past_the_noise() -> None:
    assert trend(Measure.SYSTOLIC, 150, 140) is Trend.UP
    assert trend(Measure.WEIGHT, 80, 82) is Trend.DOWN
    assert trend(Measure.WEIGHT, 80, None) is Trend.UNKNOWN
    assert Trend.UP.mark == "↑"


@pytest.mark.parametrize(
    ("measure", "value", "severity"),
    [
        (Measure.SYSTOLIC, 185, Severity.CRITICAL),
        (Measure.SYSTOLIC, 180, Severity.CRITICAL),  # at the limit is past it (at or above)
        (Measure.SYSTOLIC, 150, None),  # stage 2 is a mean's limit, not one reading's
        (Measure.SYSTOLIC, 85, Severity.HIGH),
        (Measure.DIASTOLIC, 121, Severity.CRITICAL),
        (Measure.PULSE, 130, Severity.HIGH),
    ],
)
def test_the_last_value_is_held_against_the_plans_one_reading_limits(
    measure: Measure, value: float, severity: Severity | None
) -> None:
    found = breached_limit(PLAN, measure, value)
    assert (found.severity if found else None) is severity


def test_no_plan_no_limit() -> None:
    assert breached_limit(None, Measure.SYSTOLIC, 250) is None


def _adherence(days: int, elapsed: int) -> Adherence:
    start = NOW - timedelta(days=elapsed)
    today = NOW.astimezone(CHICAGO).date()
    period = period_on(start, today, CHICAGO)
    reading_days = {today - timedelta(days=d) for d in range(days)}
    return assess(period, reading_days, NOW, today)


def _patient(
    ref: str,
    measures: Sequence[MeasureSummary] = (),
    alerts: Sequence[OpenAlert] = (),
    adherence: Adherence | None = None,
    silent: int | None = 0,
) -> PatientOnBoard:
    return PatientOnBoard(
        patient_id=hash(ref) % 1000, external_ref=ref, name="Test Patient",
        time_zone="America/Chicago", plan=PLAN, measures=measures, open_alerts=alerts,
        adherence=adherence or _adherence(10, 10), minutes_this_month=0, follow_up=None,
        silent_days=silent,
    )  # fmt: skip


def _systolic(
    value: float, recent: float | None = None, previous: float | None = None
) -> MeasureSummary:
    return MeasureSummary(Measure.SYSTOLIC, value, NOW, recent, previous)


def test_who_comes_first_and_why() -> None:
    rows = board([
        _patient("STABLE", [_systolic(128, 127, 126)]),
        _patient("QUIET", silent=5),
        _patient("WARNING", alerts=[OpenAlert(1, "missed_readings", Severity.WARNING, "m")]),
        _patient("CRISIS", [_systolic(190, 165, 140)]),
        _patient("NEVER", silent=None),
        _patient("HIGH", alerts=[OpenAlert(2, "systolic_low", Severity.HIGH, "m"),
                                 OpenAlert(3, "missed_readings", Severity.WARNING, "m")]),
    ])  # fmt: skip
    order = [r.patient.external_ref for r in rows]
    assert order[:3] == ["CRISIS", "HIGH", "WARNING"]
    assert set(order[3:5]) == {"QUIET", "NEVER"}
    assert order[-1] == "STABLE"
    by_ref = {r.patient.external_ref: r for r in rows}
    assert by_ref["STABLE"].reasons == []
    assert not by_ref["STABLE"].needs_discussion
    crisis = by_ref["CRISIS"]
    assert crisis.reasons == ["last systolic 190 mmHg: ≥ 180 mmHg (critical)"]
    assert crisis.marks[0].trend is Trend.UP
    assert by_ref["HIGH"].reasons == ["2 open alerts (high)"]
    assert by_ref["QUIET"].reasons == ["no reading for 5 days"]
    assert by_ref["NEVER"].reasons == ["no reading yet"]


def test_a_period_that_will_not_reach_16_days_is_a_reason() -> None:
    [row] = board([_patient("LOW", adherence=_adherence(2, 20))])
    assert row.reasons == ["days with readings out of reach: 2 of 16 days with 9 days left"]
    assert row.severity is None


def test_less_slack_comes_first_among_equals() -> None:
    rows = board([_patient("EASY", adherence=_adherence(10, 10)),
                  _patient("TIGHT", adherence=_adherence(5, 12))])  # fmt: skip
    assert [r.patient.external_ref for r in rows] == ["TIGHT", "EASY"]
