"""Charts of a patient's readings, drawn on the server as inline SVG: the geometry and the
words (the template `_chart.html` writes the markup). Pure.

A chart shows one kind of reading over a period from the downsampled series: per bucket
the mean (a line with markers) and the lowest and highest reading (a whisker), with the
care plan's limits drawn across it as labelled lines, one style per severity. The same
numbers are given as a table beside it, for screen readers and for anyone who wants them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rpm.devices.model import ReadingKind
from rpm.rules.plan import (
    CarePlan,
    ChangeRule,
    CountRule,
    MeanRule,
    Measure,
    Severity,
    SlopeRule,
    number,
    rounded,
    span,
)
from rpm.web.format import label


@dataclass(frozen=True)
class Metric:
    """One line of a chart: a measure as the series names it (`systolic_mmhg`)."""

    field: str
    measure: Measure
    # Told apart by shape as well as colour.
    marker: str


@dataclass(frozen=True)
class ChartKind:
    title: str
    # The store's canonical unit, which the series is in.
    unit: str
    metrics: tuple[Metric, ...]


CHART_KINDS: dict[ReadingKind, ChartKind] = {
    ReadingKind.BLOOD_PRESSURE: ChartKind(
        "Blood pressure",
        "mmHg",
        (
            Metric("systolic_mmhg", Measure.SYSTOLIC, "circle"),
            Metric("diastolic_mmhg", Measure.DIASTOLIC, "square"),
        ),
    ),
    ReadingKind.BODY_WEIGHT: ChartKind(
        "Weight", "kg", (Metric("weight_kg", Measure.WEIGHT, "circle"),)
    ),
    ReadingKind.BLOOD_GLUCOSE: ChartKind(
        "Glucose", "mg/dL", (Metric("glucose_mg_dl", Measure.GLUCOSE, "circle"),)
    ),
    ReadingKind.HEART_RATE: ChartKind(
        "Heart rate", "bpm", (Metric("pulse_bpm", Measure.PULSE, "circle"),)
    ),
}


@dataclass(frozen=True)
class Bucket:
    """One bucket of the series for one measure, in the canonical unit."""

    start: datetime
    count: int
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Threshold:
    """A limit of the care plan that a line can show: a value the readings themselves
    (or their mean) are held against, in the canonical unit."""

    measure: Measure
    value: float
    severity: Severity
    # "≥ 180 mmHg", as the care manager wrote it (3 lb stays 3 lb).
    condition: str
    # An upper limit (readings at or above it fire) rather than a lower one.
    upward: bool
    rule_id: str
    rule_title: str
    # What the rule holds against the limit: "any one reading", "the mean over 7 days
    # (at least 4 readings)"; and in short, for the line's label ("" for one reading).
    applies_to: str
    basis: str


def _plan_limits(plan: CarePlan, measures: set[Measure]) -> tuple[list[Threshold], list[str]]:
    """The plan's limits on these measures: those of its enabled threshold, count and
    mean rules as lines; those of its change and slope rules in words, since a change is a
    difference, not a level on the chart's scale."""
    lines, words = [], []
    for rule in plan.reading_rules():
        limits = [limit for limit in rule.limits if limit.measure in measures]
        if isinstance(rule, ChangeRule | SlopeRule):
            words += [
                f"{rule.title or rule.id}: {limit.measure.value} {limit.condition},"
                f" {rule.held_against} ({limit.severity.value})"
                for limit in limits
            ]
            continue
        applies_to = rule.held_against
        # The label's short form of it (one reading: nothing).
        basis = []
        if isinstance(rule, CountRule):
            basis.append(rule.held_against)
        elif isinstance(rule, MeanRule):
            basis.append(f"mean over {span(rule.window_hours)}")
        if rule.meal_contexts:
            contexts = [label(c.value) for c in rule.meal_contexts]
            basis += contexts
            applies_to += f", {', '.join(contexts)} readings only"
        lines += [
            Threshold(
                limit.measure,
                limit.canonical_value(),
                limit.severity,
                limit.condition,
                limit.op.upward,
                rule.id,
                rule.title or rule.id,
                applies_to,
                "; ".join(basis),
            )
            for limit in limits
        ]
    return lines, words


# The drawing's own units (the SVG's viewBox): it scales to the page's width, and at
# 768 px (a tablet held upright) it is drawn at about its own size.
WIDTH = 720
HEIGHT = 260
# The right margin holds the limits' tags (their values), beside the plot: never over a
# reading. Their words are in the legend under the chart.
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 56, 14, 30
# Tags closer than this are moved apart (the lines stay where they are): room for the
# phone's larger text (rpm.css draws the chart's text at 22 units below 40rem).
_LABEL_GAP = 22
_Y_TICKS = 7
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Mark:
    """A bucket as drawn: its mean, and its lowest and highest reading."""

    x: float
    y: float
    y_low: float
    y_high: float
    bucket: Bucket


@dataclass(frozen=True)
class Line:
    metric: Metric
    marks: list[Mark]

    @property
    def points(self) -> str:
        """The mean's polyline."""
        return " ".join(f"{m.x:.1f},{m.y:.1f}" for m in self.marks)

    @property
    def readings(self) -> int:
        return sum(m.bucket.count for m in self.marks)


@dataclass(frozen=True)
class ThresholdLine:
    threshold: Threshold
    y: float
    # Where its tag (`tag`, the limit's value) sits in the right margin: at its line, or
    # moved off it to keep tags apart.
    label_y: float
    tag: str

    @property
    def label(self) -> str:
        t = self.threshold
        words = f"{t.severity.value.capitalize()} {t.condition} {t.measure.value}"
        return f"{words} ({t.basis})" if t.basis else words


@dataclass(frozen=True)
class Row:
    """A line of the chart's table: a bucket's numbers for each measure (None: no reading
    of that measure in it)."""

    start: datetime
    count: int
    values: list[Bucket | None]


@dataclass(frozen=True)
class Chart:
    kind: ReadingKind
    title: str
    unit: str
    since: datetime
    until: datetime
    bucket: timedelta
    lines: list[Line]
    thresholds: list[ThresholdLine]
    # Limits on this kind's measures with no line: changes and slopes.
    undrawn: list[str]
    x_ticks: list[Tick]
    y_ticks: list[Tick]

    width: int = WIDTH
    height: int = HEIGHT
    left: int = _LEFT
    right: int = WIDTH - _RIGHT
    top: int = _TOP
    bottom: int = HEIGHT - _BOTTOM

    @property
    def empty(self) -> bool:
        return not any(line.marks for line in self.lines)

    @property
    def readings(self) -> int:
        """Readings in the period (a blood pressure is one reading of two measures)."""
        return max((line.readings for line in self.lines), default=0)

    @property
    def rows(self) -> list[Row]:
        by_start: dict[datetime, list[Bucket | None]] = {}
        for n, line in enumerate(self.lines):
            for mark in line.marks:
                row = by_start.setdefault(mark.bucket.start, [None] * len(self.lines))
                row[n] = mark.bucket
        return [
            Row(start, max(b.count for b in values if b), values)
            for start, values in sorted(by_start.items())
        ]

    @property
    def per(self) -> str:
        """A bucket's width in words: "15 min", "6 h", "1 day"."""
        minutes = int(self.bucket.total_seconds() // 60)
        if minutes < 60:
            return f"{minutes} min"
        if minutes % (24 * 60) == 0:
            days = minutes // (24 * 60)
            return f"{days} day{'s' if days != 1 else ''}"
        return f"{minutes / 60:g} h"

    def shown(self, value: float) -> str:
        """A value of this chart to its unit's decimals: "182", "81.4"."""
        return rounded(value, self.unit)

    @property
    def description(self) -> str:
        """What a chart with readings shows, in words: for its SVG's description (an empty
        chart draws no SVG; the page says it has no readings)."""
        parts = [f"{self.readings} reading{'s' if self.readings != 1 else ''}."]
        for line in self.lines:
            if line.marks:
                buckets = [m.bucket for m in line.marks]
                mean = sum(b.mean * b.count for b in buckets) / sum(b.count for b in buckets)
                low, high = min(b.low for b in buckets), max(b.high for b in buckets)
                parts.append(
                    f"{line.metric.measure.label}: mean {self.shown(mean)}, lowest"
                    f" {self.shown(low)}, highest {self.shown(high)} {self.unit}."
                )
        if self.thresholds:
            drawn = "; ".join(f"{t.label} ({t.threshold.rule_id})" for t in self.thresholds)
            parts.append(f"Care-plan limits drawn: {drawn}.")
        return " ".join(parts)


def chart(
    kind: ReadingKind,
    buckets: Mapping[str, Sequence[Bucket]],
    plan: CarePlan | None,
    since: datetime,
    until: datetime,
    bucket: timedelta,
    zone: ZoneInfo,
) -> Chart:
    """The chart of one kind of reading from `since` to `until`: `buckets` per metric
    field (`systolic_mmhg`: its buckets, oldest first), each `bucket` wide; the plan's
    limits on this kind's measures drawn across it; its days marked on the reader's clock
    (`zone`)."""
    spec = CHART_KINDS[kind]
    measures = {m.measure for m in spec.metrics}
    shown, undrawn = _plan_limits(plan, measures) if plan else ([], [])
    values = [v for m in spec.metrics for b in buckets.get(m.field, ()) for v in (b.low, b.high)]
    low, high, step = _scale([*values, *(t.value for t in shown)])
    top, bottom = _TOP, HEIGHT - _BOTTOM
    left, right = _LEFT, WIDTH - _RIGHT
    span_s = (until - since).total_seconds()

    # To a tenth of a unit of the drawing: finer is invisible, and only makes the page longer.
    def x(at: datetime) -> float:
        return round(left + (right - left) * (at - since).total_seconds() / span_s, 1)

    def y(value: float) -> float:
        return round(bottom - (bottom - top) * (value - low) / (high - low), 1)

    lines = [
        Line(
            metric,
            [
                Mark(x(b.start + bucket / 2), y(b.mean), y(b.low), y(b.high), b)
                for b in buckets.get(metric.field, ())
            ],
        )
        for metric in spec.metrics
    ]
    # Top to bottom; at one value, the upper limit's tag above the lower one's (each on
    # the side where the readings it is about lie).
    wanted = sorted(((y(t.value), t) for t in shown), key=lambda p: (p[0], not p[1].upward))
    label_ys = _spread([at for at, _ in wanted], top, bottom)
    return Chart(
        kind,
        spec.title,
        spec.unit,
        since,
        until,
        bucket,
        lines,
        [
            ThresholdLine(t, y(t.value), at, rounded(t.value, spec.unit))
            for (_, t), at in zip(wanted, label_ys, strict=True)
        ],
        undrawn,
        [Tick(x(at), label) for at, label in _days(since, until, zone)],
        [Tick(y(v), number(round(v, 6))) for v in _steps(low, high, step)],
    )


def _scale(values: Sequence[float]) -> tuple[float, float, float]:
    """A range holding every value with a little room each side (for the labels of the
    lines at its edges), on round numbers, and its tick step: 1, 2 or 5 times a power of
    ten, at most `_Y_TICKS` steps over the values."""
    if not values:
        return 0.0, 1.0, 0.2
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    room = (high - low) * 0.05
    power = 10 ** math.floor(math.log10((high - low) / _Y_TICKS))
    step = next(s * power for s in (1, 2, 5, 10) if (high - low) / (s * power) <= _Y_TICKS)
    start = math.floor((low - room) / step) * step
    end = math.ceil((high + room) / step) * step
    return start, end, step


def _steps(low: float, high: float, step: float) -> list[float]:
    count = round((high - low) / step)
    return [low + n * step for n in range(count + 1)]


def _spread(ys: list[float], top: float, bottom: float) -> list[float]:
    """Label positions near `ys` (ascending) at least `_LABEL_GAP` apart, within the plot."""
    placed: list[float] = []
    for wanted in ys:
        at = max(wanted, top, placed[-1] + _LABEL_GAP if placed else top)
        placed.append(at)
    # Pushed past the bottom: back up, keeping the gaps.
    for n in range(len(placed) - 1, -1, -1):
        limit = bottom if n == len(placed) - 1 else placed[n + 1] - _LABEL_GAP
        placed[n] = min(placed[n], limit)
    return placed


def _days(since: datetime, until: datetime, zone: ZoneInfo) -> list[tuple[datetime, str]]:
    """Midnights on the reader's clock to mark on the time axis: every day, or every 2, 7
    or 14 days, at most eight marks. (A day added to a zoned time is a day on its wall
    clock, so a mark stays at midnight across a change to or from summer time.)"""
    days = (until - since) / _DAY
    every = next((n for n in (1, 2, 7, 14) if days / n <= 8), 28)
    first = since.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0) + _DAY
    marks = []
    at = first
    while at < until:
        marks.append((at, f"{at.day} {at:%b}"))
        at += every * _DAY
    return marks
