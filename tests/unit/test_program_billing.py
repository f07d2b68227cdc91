"""Which codes the data and the logged time support: the 16-day boundary, codes that
exclude each other, once-per-episode set-up, and month bounds of logged time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rpm.program.billing import (
    TimeSpent,
    bill_episode,
    management_codes,
    month_time,
    supply_code,
    time_within,
)
from rpm.program.periods import Month, Period

NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("days", "code"),
    [(0, None), (1, None), (2, "99445"), (15, "99445"), (16, "99454"), (30, "99454")],
)
def test_device_supply_codes_exclude_each_other(days: int, code: str | None) -> None:
    assert supply_code(days) == code


@pytest.mark.parametrize(
    ("minutes", "interactive", "codes"),
    [
        (9, True, ()),
        (10, True, ("99470",)),
        (19, True, ("99470",)),
        (20, True, ("99457",)),
        (39, True, ("99457",)),
        (40, True, ("99457", "99458")),
        (59, True, ("99457", "99458")),
        (60, True, ("99457", "99458", "99458")),
        (60, False, ()),
    ],
)
def test_management_codes_by_whole_minutes(
    minutes: int, interactive: bool, codes: tuple[str, ...]
) -> None:
    assert management_codes(timedelta(minutes=minutes), interactive) == codes
    # 19 min 59 s is 19 whole minutes: time is not rounded up.
    assert management_codes(timedelta(minutes=minutes, seconds=59), interactive) == (
        management_codes(timedelta(minutes=minutes), interactive)
    )


def test_99470_and_99457_never_together() -> None:
    for minutes in range(0, 200):
        codes = management_codes(timedelta(minutes=minutes), True)
        assert not {"99470", "99457"} <= set(codes)
        assert "99458" not in codes or "99457" in codes


def _spent(
    start: datetime, minutes: int, interactive: bool = False, physician: bool = False
) -> TimeSpent:
    return TimeSpent(start, start + timedelta(minutes=minutes), interactive, physician)


def test_time_across_midnight_at_month_end_counts_in_each_month() -> None:
    # 23:50 on 30 November in New York to 00:15 on 1 December.
    call = _spent(datetime(2026, 12, 1, 4, 50, tzinfo=UTC), 25, interactive=True)
    november, december = Month(2026, 11), Month(2026, 12)
    assert time_within(
        [call], november.starts_at(NEW_YORK), november.ends_at(NEW_YORK)
    ) == timedelta(minutes=10)
    assert time_within(
        [call], december.starts_at(NEW_YORK), december.ends_at(NEW_YORK)
    ) == timedelta(minutes=15)


def test_a_month_needs_an_interactive_communication() -> None:
    month = Month(2026, 11)
    start, end = month.starts_at(NEW_YORK), month.ends_at(NEW_YORK)
    review = _spent(datetime(2026, 11, 3, 15, tzinfo=UTC), 25)
    without = month_time(month, [review], start, end)
    assert without.codes == ()
    assert without.reason == "25 min but no interactive communication in the month"
    call = _spent(datetime(2026, 11, 20, 15, tzinfo=UTC), 5, interactive=True)
    with_call = month_time(month, [review, call], start, end)
    assert with_call.codes == ("99457",)
    assert with_call.minutes == 30
    assert with_call.reason == "30 min with an interactive communication"
    # An interactive call in October does not count for November.
    october_call = _spent(datetime(2026, 10, 20, 15, tzinfo=UTC), 5, interactive=True)
    assert month_time(month, [review, october_call], start, end).codes == ()
    assert month_time(month, [], start, end).reason == "no time logged"


def _periods(count: int) -> list[Period]:
    return [
        Period(n, date(2026, 1, 1) + timedelta(days=30 * (n - 1)), NEW_YORK)
        for n in range(1, count + 1)
    ]


def test_set_up_is_billed_once_per_episode_with_its_first_supplied_period() -> None:
    billed = bill_episode(
        _periods(3), {1: 1, 2: 15, 3: 16}, {}, {}, datetime(2026, 6, 1, tzinfo=UTC)
    )
    assert [b.codes for b in billed] == [(), ("99445", "99453"), ("99454",)]
    assert billed[0].reasons == ("no device supply: readings on 1 of 30 days (2 needed)",)
    assert all(b.complete for b in billed)


def test_a_running_period_is_not_complete() -> None:
    billed = bill_episode(_periods(1), {1: 16}, {}, {}, datetime(2026, 1, 20, tzinfo=UTC))
    assert billed[0].codes == ("99454", "99453")
    assert not billed[0].complete


def test_99091_is_not_billable_with_99457_in_an_overlapping_month() -> None:
    physician = {1: timedelta(minutes=30), 2: timedelta(minutes=45)}
    # Period 1 is 1 to 30 January; period 2 is 31 January to 1 March.
    month_codes = {Month(2026, 2): ("99457",)}
    billed = bill_episode(
        _periods(2), {1: 16, 2: 16}, physician, month_codes, datetime(2026, 6, 1, tzinfo=UTC)
    )
    assert "99091" in billed[0].codes
    assert "99091" not in billed[1].codes
    assert "99091 not billable: 99457/99458 supported in 2026-02" in billed[1].reasons
    # 99470 does not exclude it.
    billed = bill_episode(
        _periods(2), {}, physician, {Month(2026, 2): ("99470",)}, datetime(2026, 6, 1, tzinfo=UTC)
    )
    assert billed[1].codes == ("99091",)
    # Under 30 minutes: nothing.
    billed = bill_episode(
        _periods(1),
        {},
        {1: timedelta(minutes=29, seconds=59)},
        {},
        datetime(2026, 6, 1, tzinfo=UTC),
    )
    assert billed[0].codes == ()
