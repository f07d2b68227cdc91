"""The on-call rota as a week: cover and gaps per day and tier, on the reader's clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from rpm.care_teams import rota

CHICAGO = ZoneInfo("America/Chicago")


@dataclass(frozen=True)
class Shift:
    id: int
    staff_id: int
    tier: int
    starts_at: datetime
    ends_at: datetime


def _at(day: int, hour: int, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=CHICAGO)


def test_the_week_starts_on_monday() -> None:
    assert rota.week_start(date(2026, 12, 6)) == date(2026, 11, 30)
    assert rota.week_start(date(2026, 11, 30)) == date(2026, 11, 30)


def test_a_night_shift_covers_two_days_and_leaves_the_rest_as_gaps() -> None:
    night = Shift(1, 7, 1, _at(2, 20), _at(3, 8))
    days = rota.week([night], [1, 2], date(2026, 3, 2), CHICAGO)
    monday, tuesday = days[0].tiers[1], days[1].tiers[1]
    assert [(s.starts_at, s.ends_at, s.shift_id) for s in monday] == [
        (_at(2, 0), _at(2, 20), None),
        (_at(2, 20), _at(3, 0), 1),
    ]
    assert [(s.starts_at, s.ends_at, s.shift_id) for s in tuesday] == [
        (_at(3, 0), _at(3, 8), 1),
        (_at(3, 8), _at(4, 0), None),
    ]
    # The other tier, and the other days: a gap all day each.
    assert all(len(day.tiers[2]) == 1 and day.tiers[2][0].is_gap for day in days)
    assert [day.gaps for day in days] == [2, 2, 2, 2, 2, 2, 2]


def test_back_to_back_shifts_leave_no_gap() -> None:
    shifts = [
        Shift(2, 8, 1, _at(4, 8), _at(4, 20)),
        Shift(1, 7, 1, _at(4, 0), _at(4, 8)),
        Shift(3, 7, 1, _at(4, 20), _at(5, 0)),
    ]
    wednesday = rota.week(shifts, [1], date(2026, 3, 2), CHICAGO)[2]
    assert [s.staff_id for s in wednesday.tiers[1]] == [7, 8, 7]
    assert wednesday.gaps == 0


def test_a_day_the_clocks_spring_forward_is_23_hours() -> None:
    """Sunday 8 March 2026 in Chicago: 02:00 CST becomes 03:00 CDT."""
    sunday = rota.week([], [1], date(2026, 3, 2), CHICAGO)[6]
    assert sunday.on == date(2026, 3, 8)
    (gap,) = sunday.tiers[1]
    assert gap.ends_at.astimezone(UTC) - gap.starts_at.astimezone(UTC) == timedelta(hours=23)


def test_shifts_outside_the_week_and_other_tiers_are_left_out() -> None:
    shifts = [
        Shift(1, 7, 1, datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC)),
        Shift(2, 7, 3, _at(2, 8), _at(2, 20)),
    ]
    days = rota.week(shifts, [1], date(2026, 3, 2), CHICAGO)
    assert sum(day.gaps for day in days) == 7
