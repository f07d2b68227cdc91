"""The calendars an RPM program bills by, on the patient's own clock: 30-day periods from
the start of an episode of care, and calendar months. Pure: plain dates and instants.

A day is a calendar day in the patient's time zone, so a day can last 23 or 25 hours
across a daylight-saving change, and a period or month starts at the first instant of
its first local day (where a zone skips midnight, the first instant that exists).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PERIOD_DAYS = 30


def local_day(at: datetime, zone: ZoneInfo) -> date:
    """The patient's calendar day at that instant."""
    return at.astimezone(zone).date()


def start_of_day(day: date, zone: ZoneInfo) -> datetime:
    """The day's first instant, in UTC. A midnight skipped by a daylight-saving change is
    read with the offset before the change (as PostgreSQL's AT TIME ZONE does), which is
    the day's first instant."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Period:
    """A 30-day period of an episode of care: local days `first_day` to `last_day`."""

    # 1 for the episode's first period.
    number: int
    first_day: date
    zone: ZoneInfo

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=PERIOD_DAYS - 1)

    @property
    def starts_at(self) -> datetime:
        return start_of_day(self.first_day, self.zone)

    @property
    def ends_at(self) -> datetime:
        """The first instant after the period."""
        return start_of_day(self.last_day + timedelta(days=1), self.zone)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first_day <= day <= self.last_day


def period_on(episode_start: datetime, day: date, zone: ZoneInfo) -> Period:
    """The period of the episode that holds `day` (a day on or after its first)."""
    first = local_day(episode_start, zone)
    if day < first:
        raise ValueError(f"{day} is before the episode's first day, {first}")
    number = (day - first).days // PERIOD_DAYS + 1
    return Period(number, first + timedelta(days=PERIOD_DAYS * (number - 1)), zone)


def periods(
    episode_start: datetime, episode_end: datetime | None, today: date, zone: ZoneInfo
) -> list[Period]:
    """The episode's periods that have begun by `today`, up to its end (a discharge ends
    the period it falls in: no period starts after it)."""
    first = local_day(episode_start, zone)
    last = today if episode_end is None else min(today, local_day(episode_end, zone))
    if last < first:
        return []
    return [
        Period(number, first + timedelta(days=PERIOD_DAYS * (number - 1)), zone)
        for number in range(1, (last - first).days // PERIOD_DAYS + 2)
    ]


_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month, "2026-11"."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        match = _MONTH.fullmatch(text)
        # The year stops at 9998 so that the month after it can be written too.
        if match is None or not 1 <= int(match[2]) <= 12 or not 1 <= int(match[1]) <= 9998:
            raise ValueError(f"a month is written YYYY-MM (e.g. 2026-11), not {text!r}")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def starts_at(self, zone: ZoneInfo) -> datetime:
        return start_of_day(self.first_day, zone)

    def ends_at(self, zone: ZoneInfo) -> datetime:
        """The first instant of the next month."""
        return self.next().starts_at(zone)
