"""Property-based: a persistently high mean is one episode, however the history that
judges it is cut (the engine loads it from a resolved alert's last firing); and a step
past a mean rule's limit always fires within its window."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from rpm.rules.engine import EPISODE_MEMORY
from rpm.rules.evaluate import History, findings, lookback_hours, trace
from rpm.rules.policy import Action, LatestAlert, decide
from rpm.rules.templates import HYPERTENSION
from tests.unit.rules_builders import IN_UTC, at, bp

FAST = settings(max_examples=60, deadline=None)
STAGE_2 = next(rule for rule in HYPERTENSION if rule.id == "bp_sustained_stage2")
WINDOW_HOURS = int(STAGE_2.window_hours)

# Reading times within 25 days (inside the engine's episode memory), 2 to 60 readings.
sparse = st.lists(st.integers(0, 25 * 24), min_size=2, max_size=60, unique=True).map(sorted)


@FAST
@given(sparse, st.integers(141, 200), st.data())
def test_a_mean_that_never_clears_is_not_reopened_after_a_resolve(
    hours: list[int], systolic: int, data: st.DataObject
) -> None:
    """Constant above the limit: the alert opens at the first firing and the nurse
    resolves it; each later reading, judged on the window the engine loads (back to the
    resolved alert's last firing), is in the same episode."""
    assert timedelta(hours=25 * 24) < EPISODE_MEMORY
    rows = [bp(at(h), systolic, data.draw(st.integers(60, 89))) for h in hours]
    whole = History.of(rows)
    first = findings(trace(STAGE_2, whole), whole, IN_UTC)
    if not first:
        return  # never 4 readings within 7 days: never a mean to judge
    resolved = LatestAlert(1, resolved=True, last_triggered_at=first[0].at)
    for n, row in enumerate(rows):
        if row.key.measured_at <= resolved.last_triggered_at:
            continue
        when = row.key.measured_at
        since = min(when - timedelta(hours=lookback_hours(STAGE_2)), resolved.last_triggered_at)
        history = History.of([r for r in rows[: n + 1] if r.key.measured_at >= since])
        for finding in findings(trace(STAGE_2, history), history, IN_UTC, [len(history.keys) - 1]):
            assert decide(finding, resolved) is Action.SUPPRESS


@FAST
@given(
    st.integers(4, 20),
    st.lists(st.integers(1, 24), min_size=WINDOW_HOURS // 24 + 1, max_size=40),
    st.integers(100, 130),
    st.integers(150, 220),
)
def test_a_step_past_the_mean_limit_fires_within_the_window(
    days_before: int, gaps: list[int], low: int, high: int
) -> None:
    """Readings at least daily, at `low` for some days then at `high`: once the window
    holds only high readings (its length after the step) the mean is past the limit."""
    before = [bp(at(h), low) for h in range(0, days_before * 24, 24)]
    step = days_before * 24
    after, hour = [], step
    for gap in gaps:
        after.append(bp(at(hour), high))
        hour += gap
    history = History.of([*before, *after])
    fired = [f.at for f in findings(trace(STAGE_2, history), history, IN_UTC)]
    reached = [r.key.measured_at for r in after if r.key.measured_at >= at(step + WINDOW_HOURS)]
    if reached:
        assert fired
        assert fired[0] <= reached[0]
