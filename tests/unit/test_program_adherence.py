"""Adherence in the current period: the projection, its wording, and reminders."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from rpm.program.adherence import Standing, assess, reminder_due, silent_days
from rpm.program.periods import Period

PERIOD = Period(1, date(2026, 11, 1), ZoneInfo("America/Chicago"))


def _days(*numbers: int) -> set[date]:
    return {PERIOD.first_day + timedelta(days=n - 1) for n in numbers}


def test_the_worklist_wording() -> None:
    # Day 22 of 30 with no reading yet today: today and 8 more days are left.
    adherence = assess(PERIOD, _days(*range(1, 9)), None, date(2026, 11, 22))
    assert adherence.summary == "8 of 16 days with 9 days left"
    assert adherence.days_needed == 8
    assert adherence.slack == 1
    assert adherence.standing is Standing.AT_RISK


def test_a_reading_today_uses_up_today() -> None:
    adherence = assess(PERIOD, _days(22), None, date(2026, 11, 22))
    assert adherence.days_with_readings == 1
    assert adherence.days_left == 8
    assert adherence.summary == "1 of 16 days with 8 days left"


@pytest.mark.parametrize(
    ("days", "today", "standing"),
    [
        (range(1, 17), 16, Standing.MET),
        (range(1, 16), 16, Standing.ON_TRACK),  # 15 of 16 with 15 days left
        (range(1, 16, 2), 16, Standing.ON_TRACK),  # 8 days in 15: 16 at this pace
        (range(1, 16, 3), 16, Standing.AT_RISK),  # 5 days in 15: 10 at this pace
        (range(1, 6), 25, Standing.OUT_OF_REACH),  # 5 + 6 left < 16
        ((), 1, Standing.ON_TRACK),  # too early to project
        ((), 2, Standing.ON_TRACK),
        ((), 4, Standing.AT_RISK),
        (range(1, 16), 30, Standing.AT_RISK),  # 15 days: only with a reading today
        (range(1, 16), 31, Standing.OUT_OF_REACH),  # (the day after the period)
    ],
)
def test_standing(days: range | tuple[int, ...], today: int, standing: Standing) -> None:
    adherence = assess(PERIOD, _days(*days), None, PERIOD.first_day + timedelta(days=today - 1))
    assert adherence.standing is standing


def test_readings_outside_the_period_do_not_count() -> None:
    outside = {PERIOD.first_day - timedelta(days=1), PERIOD.last_day + timedelta(days=1)}
    assert assess(PERIOD, outside, None, PERIOD.last_day).days_with_readings == 0


def test_silent_days_count_whole_local_days_before_today() -> None:
    assert silent_days(date(2026, 11, 20), date(2026, 11, 1), date(2026, 11, 21)) == 0
    assert silent_days(date(2026, 11, 20), date(2026, 11, 1), date(2026, 11, 24)) == 3
    assert silent_days(None, date(2026, 11, 1), date(2026, 11, 3)) == 2


def test_a_reminder_once_per_silence_then_again_after_as_many_days() -> None:
    first = date(2026, 11, 1)
    last_reading = date(2026, 11, 10)
    assert not reminder_due(last_reading, None, first, date(2026, 11, 13), after_days=3)
    assert reminder_due(last_reading, None, first, date(2026, 11, 14), after_days=3)
    # Reminded on the 14th: not again on the 15th, again on the 17th.
    assert not reminder_due(
        last_reading, date(2026, 11, 14), first, date(2026, 11, 15), after_days=3
    )
    assert reminder_due(last_reading, date(2026, 11, 14), first, date(2026, 11, 17), after_days=3)
    # A reading after the reminder starts a new silence.
    assert not reminder_due(
        date(2026, 11, 16), date(2026, 11, 14), first, date(2026, 11, 18), after_days=3
    )
    assert reminder_due(
        date(2026, 11, 16), date(2026, 11, 14), first, date(2026, 11, 20), after_days=3
    )
    # A patient who never sent a reading: silent since the episode began.
    assert reminder_due(None, None, first, date(2026, 11, 4), after_days=3)
