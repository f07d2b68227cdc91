"""The on-call rota as a week: for each day on the reader's clock and each escalation
tier, who covers which hours, and the gaps where nobody does. Pure.

A gap matters: an alert raised then goes to the next tier up, or to nobody (only the
worklist), so the rota page shows gaps as plainly as cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

DAYS_IN_WEEK = 7


class Shift(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def staff_id(self) -> int: ...
    @property
    def tier(self) -> int: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime: ...


@dataclass(frozen=True)
class Stretch:
    """Part of one day at one tier: covered by a shift, or a gap (`shift_id` None)."""

    starts_at: datetime
    ends_at: datetime
    shift_id: int | None = None
    staff_id: int | None = None

    @property
    def is_gap(self) -> bool:
        return self.shift_id is None


@dataclass(frozen=True)
class RotaDay:
    on: date
    # Tier -> its stretches in time order, covering the whole day.
    tiers: dict[int, list[Stretch]]

    @property
    def gaps(self) -> int:
        return sum(s.is_gap for stretches in self.tiers.values() for s in stretches)


def week_start(on: date) -> date:
    """The Monday of the week holding that day."""
    return on - timedelta(days=on.weekday())


def local_midnight(on: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(on, time(), zone)


def week(
    shifts: Iterable[Shift], tiers: Sequence[int], first_day: date, zone: ZoneInfo
) -> list[RotaDay]:
    """Seven days from `first_day` on `zone`'s clock (a day is 23 or 25 hours when the
    clocks change), each tier's day cut into covered stretches and gaps."""
    by_tier: dict[int, list[Shift]] = {tier: [] for tier in tiers}
    for shift in shifts:
        if shift.tier in by_tier:
            by_tier[shift.tier].append(shift)
    for tier_shifts in by_tier.values():
        tier_shifts.sort(key=lambda s: s.starts_at)
    days = []
    for offset in range(DAYS_IN_WEEK):
        on = first_day + timedelta(days=offset)
        start = local_midnight(on, zone)
        end = local_midnight(on + timedelta(days=1), zone)
        days.append(RotaDay(on, {tier: cover(by_tier[tier], start, end) for tier in tiers}))
    return days


def cover(shifts: Sequence[Shift], start: datetime, end: datetime) -> list[Stretch]:
    """[start, end) as stretches: each shift's part of it, and gaps between. The shifts
    are one tier's, in start order; they never overlap (the store refuses overlaps)."""
    stretches = []
    at = start
    for shift in shifts:
        if shift.ends_at <= start or shift.starts_at >= end:
            continue
        begins, ends = max(shift.starts_at, start), min(shift.ends_at, end)
        if begins > at:
            stretches.append(Stretch(at, begins))
        stretches.append(Stretch(begins, ends, shift.id, shift.staff_id))
        at = max(at, ends)
    if at < end:
        stretches.append(Stretch(at, end))
    return stretches
