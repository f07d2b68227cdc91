"""Which US Medicare remote physiologic monitoring (RPM) codes a patient's data and logged
time support, under the CMS Physician Fee Schedule in force from 1 January 2026
(docs/program-operations.md cites the sources). Pure: periods, day counts and time
entries in; codes, each with the reason in words, out.

The service reports what the record supports; the billing practitioner decides what to
claim (one practitioner per period, the patient's consent, medical necessity).

- Device supply, per 30-day period: 99454 for 16 to 30 days with readings, 99445 for 2 to
  15; never both.
- Set-up and education, 99453: once per episode of care, with its first period that
  supports a device-supply code.
- Management time, per calendar month, only with a real-time interactive communication in
  the month: 99470 for the first 10 minutes or 99457 for the first 20 (never both), and
  99458 for each further full 20.
- 99091, a physician's (or other qualified health care professional's) 30 minutes of
  collecting and interpreting the data per 30-day period; not with 99457 or 99458.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rpm.program.periods import Month, Period

SUPPLY_16_TO_30_DAYS = "99454"
SUPPLY_2_TO_15_DAYS = "99445"
SET_UP = "99453"
MANAGEMENT_FIRST_10_MIN = "99470"
MANAGEMENT_FIRST_20_MIN = "99457"
MANAGEMENT_EACH_FURTHER_20_MIN = "99458"
PHYSICIAN_30_MIN = "99091"

FULL_SUPPLY_DAYS = 16
LEAST_SUPPLY_DAYS = 2
SHORT_MANAGEMENT = timedelta(minutes=10)
MANAGEMENT = timedelta(minutes=20)
PHYSICIAN_TIME = timedelta(minutes=30)


def supply_code(days_with_readings: int) -> str | None:
    """99454 or 99445 (they exclude each other), or None under 2 days."""
    if days_with_readings >= FULL_SUPPLY_DAYS:
        return SUPPLY_16_TO_30_DAYS
    if days_with_readings >= LEAST_SUPPLY_DAYS:
        return SUPPLY_2_TO_15_DAYS
    return None


@dataclass(frozen=True)
class TimeSpent:
    """One stopped time-log entry."""

    started_at: datetime
    ended_at: datetime
    interactive: bool
    by_physician: bool


def time_within(entries: Iterable[TimeSpent], start: datetime, end: datetime) -> timedelta:
    """The entries' time inside [start, end): an entry across midnight at the end of a
    month counts in each month for the part spent in it."""
    total = timedelta()
    for entry in entries:
        overlap = min(entry.ended_at, end) - max(entry.started_at, start)
        if overlap > timedelta():
            total += overlap
    return total


def management_codes(time: timedelta, interactive: bool) -> tuple[str, ...]:
    """A calendar month's time codes: only whole minutes count, and none without an
    interactive communication in the month."""
    minutes = int(time.total_seconds()) // 60
    if not interactive:
        return ()
    if minutes >= MANAGEMENT.total_seconds() // 60:
        further = (minutes - int(MANAGEMENT.total_seconds() // 60)) // 20
        return (MANAGEMENT_FIRST_20_MIN,) + (MANAGEMENT_EACH_FURTHER_20_MIN,) * further
    if minutes >= SHORT_MANAGEMENT.total_seconds() // 60:
        return (MANAGEMENT_FIRST_10_MIN,)
    return ()


@dataclass(frozen=True)
class MonthTime:
    """A patient's logged management time in one calendar month, and what it supports."""

    month: Month
    # How many entries fall in the month, wholly or in part.
    entries: int
    minutes: int
    physician_minutes: int
    interactive: bool
    codes: tuple[str, ...]
    reason: str


def month_time(
    month: Month, entries: Sequence[TimeSpent], start: datetime, end: datetime
) -> MonthTime:
    """`start` and `end`: the month's bounds on the patient's clock."""
    inside = [e for e in entries if e.started_at < end and e.ended_at > start]
    return month_time_of(
        month,
        len(inside),
        time_within(inside, start, end),
        time_within((e for e in inside if e.by_physician), start, end),
        any(e.interactive for e in inside),
    )


def month_time_of(
    month: Month, entries: int, spent: timedelta, physician: timedelta, interactive: bool
) -> MonthTime:
    """The month's codes from its totals: `entries` in the month (wholly or in part), the
    time of theirs inside it (`physician`: a physician's part), and whether any was an
    interactive communication."""
    codes = management_codes(spent, interactive)
    minutes = int(spent.total_seconds()) // 60
    if codes:
        reason = f"{minutes} min with an interactive communication"
    elif not entries:
        reason = "no time logged"
    elif not interactive and minutes >= SHORT_MANAGEMENT.total_seconds() // 60:
        reason = f"{minutes} min but no interactive communication in the month"
    else:
        reason = f"{minutes} min: under the 10 min of {MANAGEMENT_FIRST_10_MIN}"
    return MonthTime(
        month,
        entries,
        minutes,
        int(physician.total_seconds()) // 60,
        interactive,
        codes,
        reason,
    )


@dataclass(frozen=True)
class PeriodBilling:
    """One 30-day period: its days with readings and the codes they (and a physician's
    time in it) support, each reason in words."""

    period: Period
    days_with_readings: int
    physician_minutes: int
    codes: tuple[str, ...]
    reasons: tuple[str, ...]
    # Whether the period is over: until then its codes can still change.
    complete: bool


def bill_episode(
    periods: Sequence[Period],
    days_with_readings: Mapping[int, int],
    physician_time: Mapping[int, timedelta],
    month_codes: Mapping[Month, tuple[str, ...]],
    now: datetime,
    episode_ended_at: datetime | None = None,
) -> list[PeriodBilling]:
    """The periods of one episode of care, in order. `days_with_readings` and
    `physician_time` are keyed by period number, counted within the episode; `month_codes`
    holds each calendar month's management codes (a period's 99091 is excluded by 99457
    or 99458 in a month the period overlaps). A period is complete once over, or once the
    episode has ended (a discharge ends it early)."""
    billed: list[PeriodBilling] = []
    set_up_billed = False
    for period in periods:
        days = days_with_readings.get(period.number, 0)
        codes: list[str] = []
        reasons: list[str] = []
        supply = supply_code(days)
        if supply is not None:
            codes.append(supply)
            reasons.append(f"{supply}: readings on {days} of 30 days")
            if not set_up_billed:
                codes.append(SET_UP)
                reasons.append(f"{SET_UP}: the episode's first period with device supply")
                set_up_billed = True
        else:
            reasons.append(f"no device supply: readings on {days} of 30 days (2 needed)")
        physician = physician_time.get(period.number, timedelta())
        if physician >= PHYSICIAN_TIME:
            clashing = _months_with_management(period, month_codes)
            if clashing:
                reasons.append(
                    f"{PHYSICIAN_30_MIN} not billable: {MANAGEMENT_FIRST_20_MIN}/"
                    f"{MANAGEMENT_EACH_FURTHER_20_MIN} supported in {', '.join(clashing)}"
                )
            else:
                codes.append(PHYSICIAN_30_MIN)
                reasons.append(
                    f"{PHYSICIAN_30_MIN}: {int(physician.total_seconds()) // 60} min of"
                    " physician time"
                )
        billed.append(
            PeriodBilling(
                period,
                days,
                int(physician.total_seconds()) // 60,
                tuple(codes),
                tuple(reasons),
                complete=now >= period.ends_at
                or (episode_ended_at is not None and now >= episode_ended_at),
            )
        )
    return billed


def _months_with_management(
    period: Period, month_codes: Mapping[Month, tuple[str, ...]]
) -> list[str]:
    clashing = []
    month, last = Month.of(period.first_day), Month.of(period.last_day)
    while month <= last:  # a period can touch three months (31 January to 1 March)
        if {MANAGEMENT_FIRST_20_MIN, MANAGEMENT_EACH_FURTHER_20_MIN} & set(
            month_codes.get(month, ())
        ):
            clashing.append(str(month))
        month = month.next()
    return clashing
