"""Is a patient transmitting enough? Days with readings in the current 30-day period
against the 16 that clinical programs and Medicare's 99454 look for, and a projection of
where the period will end; and when an opted-in patient is due an SMS reminder. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from rpm.program.billing import FULL_SUPPLY_DAYS
from rpm.program.periods import Period

# Under this many elapsed days the pace says too little to project from.
DAYS_BEFORE_PROJECTING = 3


class Standing(StrEnum):
    MET = "met"  # 16 days reached
    ON_TRACK = "on_track"  # at the pace so far, the period reaches 16 days
    # At the pace so far it does not, or only with a reading on every day left; it still can.
    AT_RISK = "at_risk"
    OUT_OF_REACH = "out_of_reach"  # too few days left, even with a reading every day


@dataclass(frozen=True)
class Adherence:
    period: Period
    today: date
    days_with_readings: int
    # Days still open for a reading: today (unless it has one already) and those after.
    days_left: int
    last_reading_at: datetime | None
    projected_days: int
    standing: Standing

    @property
    def days_needed(self) -> int:
        return max(FULL_SUPPLY_DAYS - self.days_with_readings, 0)

    @property
    def slack(self) -> int:
        """Days that can still be missed (negative: out of reach)."""
        return self.days_left - self.days_needed

    @property
    def summary(self) -> str:
        """ "8 of 16 days with 9 days left"."""
        left = f"{self.days_left} day{'s' if self.days_left != 1 else ''} left"
        return f"{self.days_with_readings} of {FULL_SUPPLY_DAYS} days with {left}"


def assess(
    period: Period, reading_days: set[date], last_reading_at: datetime | None, today: date
) -> Adherence:
    """`reading_days`: the local days of the period with at least one reading."""
    first, last = period.first_day, min(period.last_day, today)
    days = sum(1 for day in reading_days if first <= day <= last)
    read_today = today in reading_days
    elapsed = (today - period.first_day).days + (1 if read_today else 0)
    days_left = (period.last_day - today).days + (0 if read_today else 1)
    if elapsed >= DAYS_BEFORE_PROJECTING:
        projected = days + round(days_left * days / elapsed)
    else:
        projected = days + days_left
    if days >= FULL_SUPPLY_DAYS:
        standing = Standing.MET
    elif days + days_left < FULL_SUPPLY_DAYS:
        standing = Standing.OUT_OF_REACH
    elif projected < FULL_SUPPLY_DAYS or days + days_left == FULL_SUPPLY_DAYS:
        standing = Standing.AT_RISK
    else:
        standing = Standing.ON_TRACK
    return Adherence(period, today, days, days_left, last_reading_at, min(projected, 30), standing)


def silent_days(last_reading_day: date | None, since: date, today: date) -> int:
    """Whole local days without a reading before today: since the last reading's day, or
    since `since` (the episode's first day) when there is none."""
    quiet_from = since if last_reading_day is None else last_reading_day + timedelta(days=1)
    return max((today - quiet_from).days, 0)


def reminder_due(
    last_reading_day: date | None,
    last_reminder_day: date | None,
    episode_first_day: date,
    today: date,
    after_days: int,
) -> bool:
    """After `after_days` silent days; once per silence, then again only after as many
    more silent days since the last reminder."""
    silent = silent_days(last_reading_day, episode_first_day, today)
    if silent < after_days:
        return False
    if last_reminder_day is None or (
        last_reading_day is not None and last_reminder_day <= last_reading_day
    ):
        return True
    return (today - last_reminder_day).days >= after_days
