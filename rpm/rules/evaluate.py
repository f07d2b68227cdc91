"""Rule evaluation: one patient's recent readings and a care plan in, findings out. Pure.

Each rule is computed over the whole of the patient's recent history at once, with numpy,
as a series: at every reading, did the rule fire, how severely, and is that the start of
a new episode or the continuation of one already running. The caller keeps the points it
asks about: the new readings of a batch (each judged in its own place in time, so a late
reading is checked against the readings before it), or every reading of the last 30 days
for a dry run.

An episode starts when the rule fires after having been clear, and runs while values stay
within the limit's hysteresis of it; a firing within `cooldown_hours` of the last one
belongs to the same episode. One episode is one alert.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple, overload
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from rpm.devices.model import ReadingKind
from rpm.rules.plan import (
    READING_KINDS,
    BaselineRule,
    CarePlan,
    ChangeRule,
    CountRule,
    Limit,
    LimitRule,
    MeanRule,
    Measure,
    MissedRule,
    Op,
    ReadingRule,
    Severity,
    SlopeRule,
    ThresholdRule,
    rounded,
    span,
)

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]

SECONDS_PER_DAY = 86_400.0
# In canonical units (mmHg, bpm, kg, mg/dL, and those per day): far below any device's
# resolution, far above float32 rounding of any value a person can have.
AT_LIMIT = 1e-3


class ReadingKey(NamedTuple):
    """A reading's natural key in the store."""

    device_id: int
    kind: str
    measured_at: datetime


class HistoryRow(NamedTuple):
    key: ReadingKey
    systolic_mmhg: float | None
    diastolic_mmhg: float | None
    pulse_bpm: float | None
    weight_kg: float | None
    glucose_mg_dl: float | None
    meal_context: str | None


@dataclass(frozen=True)
class History:
    """One patient's readings, oldest first, one row per reading: NaN where a reading
    does not carry a measure. Summaries (statistics) are left out before they get here."""

    times: Floats  # epoch seconds
    columns: dict[Measure, Floats]
    meal: npt.NDArray[np.object_]
    keys: tuple[ReadingKey, ...]

    @classmethod
    def of(cls, rows: Iterable[HistoryRow]) -> History:
        ordered = sorted(rows, key=lambda r: (r.key.measured_at, r.key.device_id, r.key.kind))
        columns = {
            measure: np.array(
                [np.nan if (v := getattr(r, field)) is None else v for r in ordered], np.float64
            )
            for measure, field in _FIELD.items()
        }
        return cls(
            times=np.array([r.key.measured_at.timestamp() for r in ordered], np.float64),
            columns=columns,
            meal=np.array([r.meal_context for r in ordered], dtype=object),
            keys=tuple(r.key for r in ordered),
        )

    def index(self) -> dict[ReadingKey, int]:
        return {key: i for i, key in enumerate(self.keys)}

    def last_of(self, kind: ReadingKind, before: float) -> float | None:
        """Time of the last reading of a kind before an instant, or None."""
        times = self.times[[key.kind == kind.value for key in self.keys]]
        earlier = times[times < before]
        return float(earlier[-1]) if earlier.size else None


_FIELD = {
    Measure.SYSTOLIC: "systolic_mmhg",
    Measure.DIASTOLIC: "diastolic_mmhg",
    Measure.PULSE: "pulse_bpm",
    Measure.WEIGHT: "weight_kg",
    Measure.GLUCOSE: "glucose_mg_dl",
}


@dataclass(frozen=True)
class Context:
    """What the alert text needs besides the readings."""

    plan_version: int
    time_zone: ZoneInfo


@dataclass(frozen=True)
class Finding:
    """A rule fired on a reading (or, for missed readings, at a time)."""

    rule_id: str
    severity: Severity
    at: datetime
    key: ReadingKey | None
    # The first firing after the rule was clear: a new alert, unless one is still open.
    starts_episode: bool
    # When the episode this firing belongs to began (as far back as the history reaches).
    episode_since: datetime
    message: str


@dataclass(frozen=True)
class Trace:
    """A rule computed at every reading it applies to."""

    rule: ReadingRule
    rows: Ints  # indices into the history
    times: Floats
    rank: Ints  # the severity rank that fired at each point; 0: did not fire
    starts: Bools
    episode_since: Floats
    # Per limit, the value compared with it at each point (the reading, the mean, ...).
    observed: tuple[Floats, ...]
    # Count rules: how many of the last `of_last` readings were beyond a limit.
    counts: Ints | None
    # Baseline rules: the reading, and the baseline's mean and spread it was judged by.
    baseline: tuple[Floats, Floats, Floats] | None = None


def trace(rule: ReadingRule, history: History) -> Trace:
    rows = _applicable_rows(rule, history)
    if isinstance(rule, BaselineRule):
        return _baseline_trace(rule, history, rows)
    times = history.times[rows]
    columns = {m: history.columns[m][rows] for m in rule.measures}
    per_day = rule.per_day
    observed = tuple(_observed(rule, limit, times, columns[limit.measure]) for limit in rule.limits)
    limits = [(limit, limit.canonical_value(per_day)) for limit in rule.limits]
    hysteresis = [limit.canonical_hysteresis(per_day) for limit in rule.limits]
    rank = _rank(limits, observed)
    held = _rank(
        [(lim, lim.relaxed(v, h)) for (lim, v), h in zip(limits, hysteresis, strict=True)],
        observed,
    )
    counts = None
    if isinstance(rule, CountRule):
        counts = _rolling_count(rank > 0, rule.of_last)
        # A severity fires when n readings reach it: one critical reading among n high
        # ones is not "n readings beyond the critical limit".
        fired = np.zeros_like(rank)
        for level in sorted({limit.severity.rank for limit in rule.limits}):
            reaching = _rolling_count(rank >= level, rule.of_last)
            fired = np.where(reaching >= rule.n, level, fired)
            counts = np.where(reaching >= rule.n, reaching, counts)
        rank = fired
        held = np.where(_rolling_count(held > 0, rule.of_last) >= rule.n, 1, 0)
    # A point whose statistic cannot be computed (too few readings for a mean, nothing
    # earlier for a change) judges nothing: it neither fires nor clears.
    known = np.any([~np.isnan(seen) for seen in observed], axis=0) if len(times) else None
    starts, since = _episodes(times, rank > 0, (held > 0) | (rank > 0), rule.cooldown_hours, known)
    return Trace(rule, rows, times, rank, starts, since, observed, counts)


def applies_to(rule: ReadingRule, kinds: Iterable[str]) -> bool:
    """Whether a reading of one of these kinds can change what the rule says."""
    wanted = set(kinds)
    return any(kind.value in wanted for m in rule.measures for kind in READING_KINDS[m])


def may_fire(rule: ReadingRule, rows: Sequence[HistoryRow]) -> bool:
    """False when the rule certainly does not fire on any of these readings: a threshold
    rule none of them breaches. Any other kind depends on the readings before: True.
    Most readings are in range, so this spares most evaluations their history query."""
    if not isinstance(rule, ThresholdRule):
        return True
    wanted = None if rule.meal_contexts is None else {c.value for c in rule.meal_contexts}
    for limit in rule.limits:
        values = np.array(
            [
                np.nan if (v := getattr(r, _FIELD[limit.measure])) is None else v
                for r in rows
                if wanted is None or r.meal_context in wanted
            ],
            np.float64,
        )
        if _compare(limit.op, values, limit.canonical_value()).any():
            return True
    return False


def lookback_hours(rule: ReadingRule) -> float:
    """How much history before a reading the rule's evaluation needs: its window or
    cooldown, and a day more so that a running episode is seen as running."""
    window = rule.window_hours if isinstance(rule, MeanRule | ChangeRule | SlopeRule) else 0.0
    if isinstance(rule, BaselineRule):
        # The first reading of the recent window is judged against the period before it.
        window = rule.learn_days * 24 + 2 * rule.recent_hours
    return max(window, rule.cooldown_hours) + 24.0


def _applicable_rows(rule: ReadingRule, history: History) -> Ints:
    present = np.zeros(history.times.shape, np.bool_)
    for measure in rule.measures:
        present |= ~np.isnan(history.columns[measure])
    if rule.meal_contexts is not None:
        wanted = {c.value for c in rule.meal_contexts}
        present &= np.array([m in wanted for m in history.meal], np.bool_)
    return np.flatnonzero(present)


def _observed(rule: LimitRule, limit: Limit, times: Floats, values: Floats) -> Floats:
    """What a limit is compared with at each point, in canonical units."""
    if isinstance(rule, ThresholdRule | CountRule):
        return values
    if isinstance(rule, MeanRule):
        return _rolling_mean(times, values, rule.window_hours * 3600, rule.min_readings)
    if isinstance(rule, ChangeRule):
        return _change(times, values, rule.window_hours * 3600, limit.op.upward)
    return _slope_per_day(times, values, rule.window_hours * 3600, rule.min_readings)


def _compare(op: Op, observed: Floats, limit: float) -> Bools:
    with np.errstate(invalid="ignore"):  # NaN compares False: no value, no firing
        return _past(op, observed, limit)


@overload
def _past(op: Op, observed: float, limit: float) -> bool: ...
@overload
def _past(op: Op, observed: Floats, limit: float) -> Bools: ...
def _past(op: Op, observed: float | Floats, limit: float) -> bool | Bools:
    # A value within AT_LIMIT of the limit is at it: a reading of exactly the limit in
    # another unit (3.0 mmol/L, a 3.0 lb gain) comes back from kg or mg/dL, and from the
    # store's float32 columns, a rounding error either side of it.
    match op:
        case Op.AT_OR_ABOVE:
            return observed >= limit - AT_LIMIT
        case Op.ABOVE:
            return observed > limit + AT_LIMIT
        case Op.AT_OR_BELOW:
            return observed <= limit + AT_LIMIT
        case Op.BELOW:
            return observed < limit - AT_LIMIT


def beyond(limit: Limit, value: float) -> bool:
    """Whether one value (canonical unit) is past the limit, as a rule compares it: on a
    plain float, since a numpy array and its error state cost more than the comparison
    (the huddle board makes thousands)."""
    return _past(limit.op, value, limit.canonical_value())


def _rank(limits: Sequence[tuple[Limit, float]], observed: Sequence[Floats]) -> Ints:
    rank = np.zeros(observed[0].shape, np.int64)
    for (limit, value), seen in zip(limits, observed, strict=True):
        rank = np.maximum(rank, np.where(_compare(limit.op, seen, value), limit.severity.rank, 0))
    return rank


def _window_starts(times: Floats, window_s: float) -> Ints:
    """For each point, the first point inside its window (t - window, t]."""
    starts: Ints = np.searchsorted(times, times - window_s, side="right").astype(np.int64)
    return starts


def _rolling_mean(times: Floats, values: Floats, window_s: float, min_readings: int) -> Floats:
    present = ~np.isnan(values)
    sums = np.concatenate(([0.0], np.cumsum(np.where(present, values, 0.0))))
    counts = np.concatenate(([0], np.cumsum(present)))
    ends = np.arange(1, len(times) + 1)
    starts = _window_starts(times, window_s)
    n = counts[ends] - counts[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (sums[ends] - sums[starts]) / n
    return np.where(present & (n >= min_readings), mean, np.nan)


def _change(times: Floats, values: Floats, window_s: float, upward: bool) -> Floats:
    """Each value against the lowest (upward) or highest value of the window before it,
    [t - window, t): NaN where the window holds no earlier value."""
    before = (times[None, :] < times[:, None]) & (times[None, :] >= times[:, None] - window_s)
    before &= ~np.isnan(values)[None, :]
    fill = np.inf if upward else -np.inf
    candidates = np.where(before, values[None, :], fill)
    # `initial`: with no readings at all there is nothing to reduce, and numpy refuses.
    if upward:
        reference = candidates.min(axis=1, initial=fill)
    else:
        reference = candidates.max(axis=1, initial=fill)
    with np.errstate(invalid="ignore"):
        return np.where(before.any(axis=1), values - reference, np.nan)


def _slope_per_day(times: Floats, values: Floats, window_s: float, min_readings: int) -> Floats:
    """Least-squares slope of the window's values, (t - window, t], per day."""
    present = ~np.isnan(values)
    days = (times - (times[0] if len(times) else 0.0)) / SECONDS_PER_DAY
    x, y = np.where(present, days, 0.0), np.where(present, values, 0.0)

    def cumulative(a: Floats | Ints) -> Floats:
        return np.concatenate(([0.0], np.cumsum(a, dtype=np.float64)))

    n_c, x_c, y_c = cumulative(present.astype(np.int64)), cumulative(x), cumulative(y)
    xx_c, xy_c = cumulative(x * x), cumulative(x * y)
    ends = np.arange(1, len(times) + 1)
    starts = _window_starts(times, window_s)

    def window(c: Floats) -> Floats:
        return c[ends] - c[starts]

    n, sx, sy, sxx, sxy = (window(c) for c in (n_c, x_c, y_c, xx_c, xy_c))
    spread = n * sxx - sx * sx
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (n * sxy - sx * sy) / spread
    # A spread this small means readings all at one time: no slope to speak of.
    return np.where(present & (n >= min_readings) & (spread > 1e-9), slope, np.nan)


def _baseline_trace(rule: BaselineRule, history: History, rows: Ints) -> Trace:
    """Page's CUSUM, one-sided: S = max(0, S + z - k) over the readings of the last
    `recent_hours`, z being each reading's distance from the baseline in spreads, signed
    with the rule's direction. Fires at S >= h; the episode runs while S > 0."""
    times = history.times[rows]
    values = history.columns[rule.measure][rows]
    mean, spread = _baseline(rule, times, values)
    sign = 1.0 if rule.direction == "up" else -1.0
    with np.errstate(invalid="ignore"):
        steps = sign * (values - mean) / spread - rule.allowance_sd
    cusum = _windowed_cusum(times, steps, rule.recent_hours * 3600)
    with np.errstate(invalid="ignore"):
        fired = cusum >= rule.decision_sd - AT_LIMIT
        held = cusum > 0
    rank = np.where(fired, rule.severity.rank, 0).astype(np.int64)
    starts, since = _episodes(times, fired, held | fired, rule.cooldown_hours, ~np.isnan(cusum))
    return Trace(rule, rows, times, rank, starts, since, (cusum,), None, (values, mean, spread))


def _baseline(rule: BaselineRule, times: Floats, values: Floats) -> tuple[Floats, Floats]:
    """Each reading's baseline: the mean and standard deviation (at least the rule's
    minimum spread) of the readings in [t - recent - learn, t - recent); NaN while that
    holds fewer than `learn_readings`."""
    recent = rule.recent_hours * 3600
    begins = np.searchsorted(times, times - recent - rule.learn_days * SECONDS_PER_DAY, "left")
    ends = np.searchsorted(times, times - recent, "left")
    sums = np.concatenate(([0.0], np.cumsum(values)))
    squares = np.concatenate(([0.0], np.cumsum(values * values)))
    n = (ends - begins).astype(np.float64)
    learned = n >= rule.learn_readings
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (sums[ends] - sums[begins]) / n
        # Sample variance from the sums; rounding can make a constant's slightly negative.
        variance = ((squares[ends] - squares[begins]) - n * mean * mean) / (n - 1)
    spread = np.maximum(np.sqrt(np.maximum(variance, 0.0)), rule.canonical_min_spread())
    return np.where(learned, mean, np.nan), np.where(learned, spread, np.nan)


def _windowed_cusum(times: Floats, steps: Floats, window_s: float) -> Floats:
    """At each point, the CUSUM started afresh at the window's first point (or after the
    last point without a baseline): max(0, the largest sum of steps ending there). It
    depends only on the window, so ingest and the dry run agree whatever history they
    load. NaN where the point itself has no baseline."""
    n = len(times)
    sums = np.concatenate(([0.0], np.cumsum(np.nan_to_num(steps, nan=0.0))))
    index = np.arange(n)
    unlearned = np.maximum.accumulate(np.where(np.isnan(steps), index, -1))
    first = np.maximum(_window_starts(times, window_s), unlearned + 1)
    # The sum of steps j..i is sums[i + 1] - sums[j]: the CUSUM is sums[i + 1] less the
    # lowest sums[j] for j in [first, i]. Both ends only move forward, so a monotonic queue
    # finds each minimum in one pass (a CGM's 288 readings a day make a matrix too big).
    lowest = np.empty(n)
    queue: deque[int] = deque()
    for i in range(n):
        while queue and sums[queue[-1]] >= sums[i]:
            queue.pop()
        queue.append(i)
        while queue and queue[0] < first[i]:
            queue.popleft()
        lowest[i] = sums[queue[0]] if queue else np.inf
    with np.errstate(invalid="ignore"):
        cusum = np.maximum(sums[1:] - lowest, 0.0)
    return np.where(np.isnan(steps), np.nan, cusum)


def _rolling_count(flags: Bools, last: int) -> Ints:
    sums = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    ends = np.arange(1, len(flags) + 1)
    return sums[ends] - sums[np.maximum(ends - last, 0)]


def _episodes(
    times: Floats,
    fired: Bools,
    held: Bools,
    cooldown_hours: float,
    known: Bools | None = None,
) -> tuple[Bools, Floats]:
    """Which firings start an episode, and when each point's episode began.

    A point is in a running episode when a firing came after the last point that was
    clear of the limits' hysteresis. A firing starts an episode when the point before it
    was in none, and the last firing is at least the cooldown ago.

    A point that is not `known` (its statistic could not be computed) is not clear: it
    carries the state before it. A history that opens with such points may open inside
    an episode (the engine loads it from a resolved alert's last firing, where a 7-day
    mean has too few readings yet): a firing before any clear point then continues the
    episode running at the history's start, and does not start one. Otherwise a
    persistently high mean would look new after every resolve.
    """
    if not len(times):
        return np.zeros(0, np.bool_), np.zeros(0, np.float64)
    if known is None:
        known = np.ones(times.shape, np.bool_)
    index = np.arange(len(times))
    last_fired = np.maximum.accumulate(np.where(fired, index, -1))
    last_clear = np.maximum.accumulate(np.where(held | ~known, -1, index))
    running = (last_fired > last_clear) | (~known[0] & (last_clear < 0))
    running_before = np.concatenate(([False], running[:-1]))
    fired_before = np.concatenate(([-1], last_fired[:-1]))
    long_enough = (fired_before < 0) | (
        times - times[np.maximum(fired_before, 0)] >= cooldown_hours * 3600
    )
    starts = fired & ~running_before & long_enough
    last_start = np.maximum.accumulate(np.where(starts, index, -1))
    # An episode already running when the history begins is dated from its beginning.
    since = np.where(last_start >= 0, times[np.maximum(last_start, 0)], times[0])
    return starts, since


def findings(
    trace: Trace, history: History, context: Context, at_rows: Iterable[int] | None = None
) -> list[Finding]:
    """The trace's firings, at the given history rows (every row when None)."""
    wanted = None if at_rows is None else set(at_rows)
    found = []
    for point in np.flatnonzero(trace.rank > 0):
        row = int(trace.rows[point])
        if wanted is None or row in wanted:
            found.append(_finding(trace, int(point), history.keys[row], context))
    return found


def _finding(trace: Trace, point: int, key: ReadingKey, context: Context) -> Finding:
    rule = trace.rule
    if isinstance(rule, BaselineRule):
        return _baseline_finding(trace, rule, point, key, context)
    severity = Severity.of_rank(int(trace.rank[point]))
    limit_no = _breached_limit(trace, point, severity)
    limit = rule.limits[limit_no]
    observed = float(trace.observed[limit_no][point])
    when = _local_time(key.measured_at, context.time_zone)
    per_day = rule.per_day
    shown = _show(observed / limit.factor(per_day), limit.unit)
    label = limit.measure.label
    match rule:
        case ThresholdRule():
            text = f"{label} {shown} at {when} is {limit.op.phrase} {limit.describe()}"
        case CountRule():
            count = int(trace.counts[point]) if trace.counts is not None else rule.n
            text = (
                f"{label} {limit.op.phrase} {limit.describe()} in {count} of the last"
                f" {rule.of_last} readings (latest {shown} at {when})"
            )
        case MeanRule():
            text = (
                f"Mean {limit.measure.value} {shown} over the {span(rule.window_hours)}"
                f" to {when} is {limit.op.phrase} {limit.describe()}"
            )
        case ChangeRule():
            direction = "up" if observed > 0 else "down"
            shown = _show(abs(observed) / limit.factor(), limit.unit)
            text = (
                f"{label} {direction} {shown} within {span(rule.window_hours)}, at {when}:"
                f" {limit.op.phrase} {limit.describe()}"
            )
        case SlopeRule():
            direction = "rising" if observed > 0 else "falling"
            slope = f"{abs(observed) / limit.factor(per_day):.2f} {limit.unit}"
            text = (
                f"{label} {direction} {slope} over the {span(rule.window_hours)} to {when}:"
                f" {limit.op.phrase} {limit.describe()}"
            )
    return Finding(
        rule_id=rule.id,
        severity=severity,
        at=key.measured_at,
        key=key,
        starts_episode=bool(trace.starts[point]),
        episode_since=datetime.fromtimestamp(float(trace.episode_since[point]), UTC),
        message=_sentence(text, context.plan_version, rule.advice),
    )


def _baseline_finding(
    trace: Trace, rule: BaselineRule, point: int, key: ReadingKey, context: Context
) -> Finding:
    assert trace.baseline is not None
    values, mean, spread = (float(a[point]) for a in trace.baseline)
    unit = rule.unit
    factor = rule.canonical_min_spread() / rule.min_spread
    since = float(trace.episode_since[point])
    readings = int(((trace.times >= since) & (trace.times <= trace.times[point])).sum())
    side = "above" if rule.direction == "up" else "below"
    text = (
        f"{rule.measure.label} {_show(values / factor, unit)} at"
        f" {_local_time(key.measured_at, context.time_zone)} is part of a drift {side} the"
        f" patient's own baseline of {rounded(mean / factor, unit)}"
        f" ± {rounded(spread / factor, unit)} {unit} (the {span(rule.learn_days * 24)} before"
        f" the last {span(rule.recent_hours)}; {_readings(readings)} since it began)"
    )
    return Finding(
        rule_id=rule.id,
        severity=rule.severity,
        at=key.measured_at,
        key=key,
        starts_episode=bool(trace.starts[point]),
        episode_since=datetime.fromtimestamp(since, UTC),
        message=_sentence(text, context.plan_version, rule.advice),
    )


def _readings(n: int) -> str:
    return "1 reading" if n == 1 else f"{n} readings"


# Level 2 hypoglycaemia, < 54 mg/dL (3.0 mmol/L): clinically significant whatever the
# plan calls it (ADA Standards of Care 2024, section 6), so it never waits for a repeat.
LEVEL_2_HYPOGLYCAEMIA_MG_DL = 54.0


def may_wait(rule: ReadingRule, severity: Severity, glucose_mg_dl: float) -> bool:
    """Whether a firing may wait for the patient's repeat reading before it becomes an
    alert: its rule asks for confirmation, it is not critical, and the reading is no
    level 2 hypoglycaemia (NaN: no glucose in it)."""
    if isinstance(rule, BaselineRule) or rule.confirm_within_minutes is None:
        return False
    return severity is not Severity.CRITICAL and not glucose_mg_dl < LEVEL_2_HYPOGLYCAEMIA_MG_DL


def _breached_limit(trace: Trace, point: int, severity: Severity) -> int:
    """The first limit of the firing severity that the point is beyond (for a count
    rule, the first of that severity: its readings are in the window, not at the point)."""
    rule = trace.rule
    for n, limit in enumerate(rule.limits):
        if limit.severity != severity:
            continue
        if isinstance(rule, CountRule):
            return n
        value = np.array([trace.observed[n][point]])
        if _compare(limit.op, value, limit.canonical_value(rule.per_day))[0]:
            return n
    raise AssertionError("a firing point breaches a limit of its severity")


def missed(
    rule: MissedRule,
    last_reading: dict[ReadingKind, datetime | None],
    enrolled_at: datetime,
    now: datetime,
    context: Context,
) -> Finding | None:
    """Whole local days since each kind's last reading (None: since enrolment), in the
    patient's time zone: a day with no reading counts once it is over. `last_reading`
    names the expected kinds to check."""
    tz = context.time_zone
    today = now.astimezone(tz).date()
    gaps = []
    for kind in rule.expects:
        if kind not in last_reading:
            continue
        last = last_reading[kind]
        since = last if last is not None else enrolled_at
        days = (today - since.astimezone(tz).date()).days - 1
        if days >= rule.days:
            gaps.append((kind, last, since, days))
    if not gaps:
        return None
    parts = []
    for kind, last, since, days in gaps:
        what = kind.value.replace("_", " ")
        if last is None:
            parts.append(f"no {what} reading since enrolment on {_local_date(since, tz)}")
        else:
            parts.append(f"no {what} reading for {_days(days)} (last on {_local_date(last, tz)})")
    text = "; ".join(parts) + f": the care plan expects one at least every {_days(rule.days)}"
    return Finding(
        rule_id=rule.id,
        severity=rule.severity,
        at=now,
        key=None,
        starts_episode=False,
        episode_since=max(since for _, _, since, _ in gaps),
        message=_sentence(text[0].upper() + text[1:], context.plan_version, rule.advice),
    )


def dry_run(
    plan: CarePlan, history: History, context: Context, since: datetime, until: datetime
) -> list[Finding]:
    """The alerts a plan would have raised over a period: the firing that started each
    episode, as if each alert was resolved before the rule's next episode began."""
    start, end = since.timestamp(), until.timestamp()
    raised: list[Finding] = []
    for rule in plan.reading_rules():
        traced = trace(rule, history)
        rows = [
            int(traced.rows[point])
            for point in _episode_starts(traced)
            if start <= traced.times[point] <= end and not _unconfirmed(traced, history, int(point))
        ]
        raised += findings(traced, history, context, rows)
    for missed_rule in plan.missed_rules():
        raised += _missed_over(missed_rule, history, context, since, until)
    return sorted(raised, key=lambda f: (f.at, f.rule_id))


def _episode_starts(traced: Trace) -> Ints:
    """The firings that start an episode; and the first firing of an episode the history
    opens in (`_episodes`), which no earlier alert of the dry run can have covered."""
    starts: Ints = np.flatnonzero(traced.starts)
    fired = np.flatnonzero(traced.rank > 0)
    if fired.size and (not starts.size or fired[0] < starts[0]):
        starts = np.concatenate(([fired[0]], starts))
    return starts


def _unconfirmed(traced: Trace, history: History, point: int) -> bool:
    """For the dry run: a firing that would have waited for a repeat, and whose next
    reading, within the rule's confirmation window, did not fire (as if the patient had
    been asked, and had re-measured when they did)."""
    rule = traced.rule
    if isinstance(rule, BaselineRule) or rule.confirm_within_minutes is None:
        return False
    following = point + 1
    if following >= len(traced.times):
        return False
    within = traced.times[following] - traced.times[point] <= rule.confirm_within_minutes * 60
    return bool(within and traced.rank[following] == 0 and waits(traced, history, point))


def waits(traced: Trace, history: History, point: int) -> bool:
    """Whether the firing at this point of the trace may wait for a repeat reading."""
    glucose = float(history.columns[Measure.GLUCOSE][traced.rows[point]])
    return may_wait(traced.rule, Severity.of_rank(int(traced.rank[point])), glucose)


def _missed_over(
    rule: MissedRule, history: History, context: Context, since: datetime, until: datetime
) -> list[Finding]:
    """The missed-readings rule as the scheduler would have run it, each local midnight."""
    tz = context.time_zone
    raised = []
    running = False
    day = since.astimezone(tz).date()
    while (midnight := _midnight(day, tz)) <= until:
        last = {
            kind: None
            if (t := history.last_of(kind, midnight.timestamp())) is None
            else datetime.fromtimestamp(t, UTC)
            for kind in rule.expects
        }
        # The history reaches back no further than the period: count from its start.
        found = missed(rule, last, since, midnight, context)
        if found is not None and not running:
            raised.append(found)
        running = found is not None
        day += timedelta(days=1)
    return raised


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _sentence(text: str, plan_version: int, advice: str) -> str:
    sentence = f"{text} (care plan v{plan_version})."
    return f"{sentence} {advice}" if advice else sentence


def _show(value: float, unit: str) -> str:
    return f"{rounded(value, unit)} {unit}"


def _local_time(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return f"{local:%H:%M} on {local.day} {local:%b}"


def _local_date(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return f"{local.day} {local:%b}"
