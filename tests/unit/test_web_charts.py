"""The charts' geometry and words: the care plan's limits as lines (levels only), a scale
on round numbers that holds readings and limits alike, labels kept apart, the numbers of
the table and the description."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rpm.devices.checks import MG_DL_PER_MMOL_L
from rpm.devices.model import ReadingKind
from rpm.rules.plan import CarePlan, CountRule, Limit, Measure, Op, Severity, ThresholdRule
from rpm.rules.templates import plan_from_templates
from rpm.web.charts import Bucket, chart

SINCE = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
UNTIL = SINCE + timedelta(days=7)
HOUR = timedelta(hours=1)


def _bp(day: int, systolic: float, diastolic: float, count: int = 1) -> dict[str, Bucket]:
    start = SINCE + timedelta(days=day)
    return {
        "systolic_mmhg": Bucket(start, count, systolic, systolic - 4, systolic + 4),
        "diastolic_mmhg": Bucket(start, count, diastolic, diastolic, diastolic),
    }


def _series(*days: dict[str, Bucket]) -> dict[str, list[Bucket]]:
    series: dict[str, list[Bucket]] = {}
    for day in days:
        for field, bucket in day.items():
            series.setdefault(field, []).append(bucket)
    return series


def test_the_plans_levels_are_lines_on_the_scale_and_changes_are_words() -> None:
    plan = plan_from_templates(["hypertension", "heart_failure"])
    drawn = chart(
        ReadingKind.BLOOD_PRESSURE,
        _series(_bp(1, 150, 88, count=2), _bp(3, 186, 95)),
        plan,
        SINCE,
        UNTIL,
        HOUR,
        UTC_ZONE,
    )
    labels = {line.label: line for line in drawn.thresholds}
    assert set(labels) == {
        "Critical ≥ 180 mmHg systolic",
        "Critical ≥ 120 mmHg diastolic",
        "Warning ≥ 140 mmHg systolic (mean over 7 days)",
        "Warning ≥ 90 mmHg diastolic (mean over 7 days)",
        "High < 90 mmHg systolic",
    }
    crisis = labels["Critical ≥ 180 mmHg systolic"]
    assert crisis.threshold.rule_title == "Hypertensive crisis"
    assert crisis.threshold.applies_to == "any one reading"
    # Higher values are higher up the drawing; every line lies within the plot.
    assert drawn.top <= crisis.y < labels["High < 90 mmHg systolic"].y <= drawn.bottom
    # The scale holds every reading and every limit, on round numbers.
    assert [tick.label for tick in drawn.y_ticks] == [
        "80",
        "100",
        "120",
        "140",
        "160",
        "180",
        "200",
    ]
    # The pulse limits belong to the heart-rate chart; weight gain is no level of either.
    assert drawn.undrawn == []
    weight = chart(ReadingKind.BODY_WEIGHT, {}, plan, SINCE, UNTIL, HOUR, UTC_ZONE)
    assert weight.thresholds == []
    assert weight.undrawn == [
        "Weight gain in a day: weight ≥ 3 lb, the change within 24 h (high)",
        "Weight gain in a week: weight ≥ 5 lb, the change within 7 days (high)",
    ]
    assert weight.empty
    pulse = chart(ReadingKind.HEART_RATE, {}, plan, SINCE, UNTIL, HOUR, UTC_ZONE)
    assert sorted(line.label for line in pulse.thresholds) == [
        "High < 40 bpm pulse",
        "High > 120 bpm pulse",
    ]


def test_labels_at_one_value_do_not_collide() -> None:
    drawn = chart(
        ReadingKind.BLOOD_PRESSURE,
        _series(_bp(1, 120, 80)),
        plan_from_templates(["hypertension"]),
        SINCE,
        UNTIL,
        HOUR,
        UTC_ZONE,
    )
    at_90 = [line for line in drawn.thresholds if "90 mmHg" in line.label]
    assert len(at_90) == 2
    assert at_90[0].y == at_90[1].y
    # The upper limit's tag above the lower one's, both saying the value.
    low = next(line for line in at_90 if "<" in line.label)
    high = next(line for line in at_90 if "≥" in line.label)
    assert high.label_y < low.label_y
    assert (high.tag, low.tag) == ("90", "90")
    ys = sorted(line.label_y for line in drawn.thresholds)
    assert all(b - a >= 22 for a, b in itertools.pairwise(ys))
    assert all(drawn.top <= y <= drawn.bottom for y in ys)


def test_limit_tags_sit_in_the_margin_right_of_every_reading() -> None:
    drawn = chart(
        ReadingKind.BLOOD_PRESSURE,
        _series(_bp(1, 185, 95), _bp(2, 140, 90)),
        plan_from_templates(["hypertension"]),
        SINCE,
        UNTIL,
        HOUR,
        UTC_ZONE,
    )
    marks = [m.x for line in drawn.lines for m in line.marks]
    assert drawn.thresholds
    assert max(marks) <= drawn.right < drawn.width - 48
    # The tags start right of the plot (the template writes them at right + 5).
    assert all(line.tag.replace(".", "").isdigit() for line in drawn.thresholds)


def test_a_limit_in_another_unit_is_drawn_at_its_value_in_the_charts_unit() -> None:
    # The line at 3.9 mmol/L in mg/dL; the label keeps the unit it was written in.
    limit = Limit(
        measure=Measure.GLUCOSE, op=Op.BELOW, value=3.9, unit="mmol/L", severity=Severity.HIGH
    )
    plan = CarePlan(
        rules=[
            ThresholdRule(id="glucose_low", limits=[limit], meal_contexts=["fasting"]),
            CountRule(
                id="glucose_high_3",
                n=3,
                of_last=3,
                limits=[
                    Limit(
                        measure=Measure.GLUCOSE,
                        op=Op.ABOVE,
                        value=180,
                        unit="mg/dL",
                        severity=Severity.WARNING,
                    )
                ],
                enabled=False,
            ),
        ]
    )
    start = SINCE + timedelta(days=2)
    drawn = chart(
        ReadingKind.BLOOD_GLUCOSE,
        {"glucose_mg_dl": [Bucket(start, 3, 101.33, 64, 140)]},
        plan,
        SINCE,
        UNTIL,
        HOUR,
        UTC_ZONE,
    )
    # The disabled rule has no line.
    (line,) = drawn.thresholds
    assert line.label == "High < 3.9 mmol/L glucose (fasting)"
    assert line.threshold.value == 3.9 * MG_DL_PER_MMOL_L
    assert line.threshold.applies_to == "any one reading, fasting readings only"
    assert drawn.description == (
        "3 readings. Glucose: mean 101, lowest 64, highest 140 mg/dL."
        " Care-plan limits drawn: High < 3.9 mmol/L glucose (fasting) (glucose_low)."
    )
    (row,) = drawn.rows
    assert (row.start, row.count) == (start, 3)
    (mark,) = drawn.lines[0].marks
    # The mean's mark in the middle of its bucket, its whisker from lowest to highest.
    assert mark.y_high < mark.y < mark.y_low
    assert mark.x > drawn.left


def test_the_time_axis_marks_midnights_and_the_table_joins_the_measures() -> None:
    drawn = chart(
        ReadingKind.BLOOD_PRESSURE,
        _series(_bp(0, 150, 90), _bp(6, 140, 85)),
        None,
        SINCE,
        UNTIL,
        timedelta(hours=6),
        UTC_ZONE,
    )
    assert [tick.label for tick in drawn.x_ticks] == [f"{d} Nov" for d in range(2, 9)]
    assert all(drawn.left < tick.at < drawn.right for tick in drawn.x_ticks)
    assert drawn.thresholds == []
    assert drawn.per == "6 h"
    assert [row.values for row in drawn.rows] == [
        [drawn.lines[0].marks[0].bucket, drawn.lines[1].marks[0].bucket],
        [drawn.lines[0].marks[1].bucket, drawn.lines[1].marks[1].bucket],
    ]
    assert drawn.readings == 2
    assert drawn.lines[0].points.count(",") == 2
    ninety_days = chart(
        ReadingKind.BODY_WEIGHT, {}, None, SINCE, SINCE + timedelta(days=90), HOUR, UTC_ZONE
    )
    assert len(ninety_days.x_ticks) == 7  # every 14 days


def test_the_time_axis_marks_the_readers_midnights_across_a_clock_change() -> None:
    # Chicago moves to summer time on 8 Mar 2026: that day is 23 hours long, and the
    # marks stay at midnight (06:00 UTC before, 05:00 UTC after).
    since = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    chicago = ZoneInfo("America/Chicago")
    drawn = chart(
        ReadingKind.BODY_WEIGHT, {}, None, since, since + timedelta(days=7), HOUR, chicago
    )
    assert [tick.label for tick in drawn.x_ticks] == [f"{d} Mar" for d in range(6, 13)]
    xs = [tick.at for tick in drawn.x_ticks]
    day = xs[1] - xs[0]
    assert xs[3] - xs[2] == pytest.approx(day * 23 / 24, abs=0.2)
    assert xs[4] - xs[3] == pytest.approx(day, abs=0.2)
