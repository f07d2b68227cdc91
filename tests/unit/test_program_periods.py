"""30-day periods and calendar months on the patient's clock: time zones, daylight-saving
changes, skipped midnights and month ends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpm.program.periods import Month, Period, local_day, period_on, periods, start_of_day

NEW_YORK = ZoneInfo("America/New_York")
SANTIAGO = ZoneInfo("America/Santiago")
KATHMANDU = ZoneInfo("Asia/Kathmandu")


def test_the_first_period_starts_on_the_local_day_of_enrolment() -> None:
    # 02:30 UTC on 1 March is still 28 February in New York.
    enrolled = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)
    first = periods(enrolled, None, date(2026, 3, 1), NEW_YORK)[0]
    assert first.first_day == date(2026, 2, 28)
    assert first.last_day == date(2026, 3, 29)
    assert first.starts_at == datetime(2026, 2, 28, 5, 0, tzinfo=UTC)


def test_a_period_across_spring_forward_is_one_hour_shorter() -> None:
    period = Period(1, date(2026, 3, 1), NEW_YORK)  # DST begins 8 March 2026
    assert period.starts_at == datetime(2026, 3, 1, 5, tzinfo=UTC)
    assert period.ends_at == datetime(2026, 3, 31, 4, tzinfo=UTC)
    assert period.ends_at - period.starts_at == timedelta(days=30) - timedelta(hours=1)


def test_a_period_across_fall_back_is_one_hour_longer() -> None:
    period = Period(1, date(2026, 10, 20), NEW_YORK)  # DST ends 1 November 2026
    assert period.ends_at - period.starts_at == timedelta(days=30, hours=1)


def test_a_skipped_midnight_starts_the_day_at_its_first_instant() -> None:
    # Chile moves its clocks from 00:00 to 01:00 on 6 September 2026.
    start = start_of_day(date(2026, 9, 6), SANTIAGO)
    assert start == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert local_day(start, SANTIAGO) == date(2026, 9, 6)
    assert local_day(start - timedelta(microseconds=1), SANTIAGO) == date(2026, 9, 5)


def test_quarter_hour_offsets_keep_their_midnight() -> None:
    assert start_of_day(date(2026, 11, 24), KATHMANDU) == datetime(2026, 11, 23, 18, 15, tzinfo=UTC)


def test_periods_follow_each_other_without_gaps_and_stop_at_the_discharge() -> None:
    enrolled = datetime(2026, 1, 31, 15, tzinfo=UTC)
    found = periods(enrolled, None, date(2026, 5, 1), NEW_YORK)
    assert [p.number for p in found] == [1, 2, 3, 4]
    assert [p.first_day for p in found] == [
        date(2026, 1, 31),
        date(2026, 3, 2),
        date(2026, 4, 1),
        date(2026, 5, 1),
    ]
    for before, after in pairwise(found):
        assert before.ends_at == after.starts_at
    discharged = datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert [p.number for p in periods(enrolled, discharged, date(2026, 5, 1), NEW_YORK)] == [1, 2]
    assert periods(enrolled, None, date(2026, 1, 30), NEW_YORK) == []


def test_the_period_on_a_day() -> None:
    enrolled = datetime(2026, 1, 31, 15, tzinfo=UTC)
    assert period_on(enrolled, date(2026, 3, 1), NEW_YORK).number == 1
    assert period_on(enrolled, date(2026, 3, 2), NEW_YORK).number == 2
    with pytest.raises(ValueError, match="before the episode's first day"):
        period_on(enrolled, date(2026, 1, 30), NEW_YORK)


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(min_value=0, max_value=2000),
    st.sampled_from(
        [
            "America/New_York",
            "America/Santiago",
            "Europe/London",
            "Asia/Kathmandu",
            "Pacific/Chatham",
            "Australia/Lord_Howe",
            "Pacific/Apia",
        ]
    ),
)
def test_every_instant_falls_in_exactly_one_period(
    enrolled: datetime, offset_hours: int, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    at = enrolled + timedelta(hours=offset_hours)
    period = period_on(enrolled, local_day(at, zone), zone)
    assert period.starts_at <= at < period.ends_at
    assert local_day(period.starts_at, zone) == period.first_day


def test_months_parse_print_and_bound() -> None:
    month = Month.parse("2026-12")
    assert str(month) == "2026-12"
    assert month.next() == Month(2027, 1)
    assert Month.of(date(2026, 2, 28)) == Month(2026, 2)
    assert Month(2026, 3).starts_at(NEW_YORK) == datetime(2026, 3, 1, 5, tzinfo=UTC)
    assert Month(2026, 3).ends_at(NEW_YORK) == datetime(2026, 4, 1, 4, tzinfo=UTC)
    # February of a leap year, on the patient's clock.
    assert Month(2028, 2).ends_at(ZoneInfo("UTC")) - Month(2028, 2).starts_at(
        ZoneInfo("UTC")
    ) == timedelta(days=29)


@pytest.mark.parametrize(
    "text", ["2026-13", "2026-00", "26-11", "2026-1", "0000-01", "9999-12", ""]
)
def test_a_bad_month_is_refused_in_words(text: str) -> None:
    with pytest.raises(ValueError, match="a month is written YYYY-MM"):
        Month.parse(text)
