"""Program operations as the API and the UI ask for them: a patient's adherence, billing
periods and monthly time; the program's patients at risk and its monthly report. Reads
through the repositories, decides with the pure core (periods, billing, adherence).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from rpm.alerts import repository as alert_repository
from rpm.patients import handoff, registry
from rpm.patients.registry import PatientRecord, time_zone
from rpm.program import repository, time_logs
from rpm.program.adherence import Adherence, assess, silent_days
from rpm.program.billing import (
    MonthTime,
    PeriodBilling,
    bill_episode,
    month_time,
    month_time_of,
    time_within,
)
from rpm.program.huddle import HuddleRow, MeasureSummary, OpenAlert, PatientOnBoard, board
from rpm.program.periods import Month, local_day, period_on, periods
from rpm.rules import care_plans
from rpm.rules.plan import Measure, Severity

Connection = AsyncConnection[TupleRow]


@dataclass(frozen=True)
class PatientAdherence:
    """The current period of the patient's open episode: all devices, and each kind."""

    overall: Adherence
    by_device_kind: dict[str, Adherence]


async def patient_adherence(
    conn: Connection, patient: PatientRecord, now: datetime
) -> PatientAdherence | None:
    """None when the patient has no open episode (discharged)."""
    episode = next(
        (e for e in await repository.episodes(conn, patient.id) if e.ended_at is None), None
    )
    if episode is None:
        return None
    zone = time_zone(patient.time_zone)
    today = local_day(now, zone)
    period = period_on(episode.started_at, max(today, local_day(episode.started_at, zone)), zone)
    days = await repository.episode_reading_days(
        conn, patient.id, patient.time_zone, episode, period.starts_at, min(period.ends_at, now)
    )
    last = await repository.last_readings(conn, patient.id)
    every_day = _any_kind(days)
    overall = assess(period, every_day, max(last.values(), default=None), today)
    by_kind = {
        kind: assess(period, days.get(kind, set()), last.get(kind), today)
        for kind in sorted(set(days) | set(last))
    }
    return PatientAdherence(overall, by_kind)


def _any_kind(days: dict[str, set[date]]) -> set[date]:
    """The days with a reading from any device."""
    return set().union(*days.values())


@dataclass(frozen=True)
class PatientAtRisk:
    patient_id: int
    external_ref: str
    care_team_id: int | None
    adherence: Adherence


async def patients_at_risk(
    conn: Connection,
    now: datetime,
    care_team_ids: Collection[int] | None,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[list[PatientAtRisk], int]:
    """Active patients whose current period will not reach 16 days at their pace (or
    cannot), fewest days to spare first: a page of them (from `offset`, at most `limit`;
    None: all), and how many there are in all. The database ranks the programme; only
    the page's patients have their adherence worked out here."""
    ids, total = await repository.at_risk(conn, now, care_team_ids, offset, limit)
    currents = {
        c.patient_id: c for c in await repository.current_periods(conn, now, care_team_ids, ids)
    }
    page = [
        PatientAtRisk(
            current.patient_id,
            current.external_ref,
            current.care_team_id,
            _current_adherence(current, now),
        )
        # A patient discharged between the two reads is no longer at risk: left out.
        for current in (currents[i] for i in ids if i in currents)
    ]
    return page, total


def _current_adherence(current: repository.CurrentPeriod, now: datetime) -> Adherence:
    zone = time_zone(current.time_zone)
    today = local_day(now, zone)
    period = period_on(current.episode_started_at, today, zone)
    return assess(period, set(current.reading_days), current.last_reading_at, today)


@dataclass(frozen=True)
class HuddlePage:
    """A page of a care team's huddle board, and the whole board's counts."""

    rows: list[HuddleRow]
    total: int
    to_discuss: int
    next: int | None  # the next page's offset (None: this is the last)


async def huddle_board(
    conn: Connection,
    care_team_id: int,
    now: datetime,
    plans: care_plans.PlanCache,
    offset: int = 0,
    limit: int | None = None,
) -> HuddlePage:
    """The team's active patients for its huddle, those who need discussion first: a page
    of them (from `offset`, at most `limit`; None: all). The whole board is ranked on what
    orders it (open alerts, last values against the plan, days with readings, silence);
    the 7-day trends order nothing, so they are read for the page's patients only."""
    currents = {
        c.patient_id: c for c in await repository.current_periods(conn, now, [care_team_id])
    }
    ids = list(currents)
    # What orders the board, for every patient on it.
    plan_of = await plans.plans(
        conn,
        [(c.patient_id, v) for c in currents.values() if (v := c.care_plan_version) is not None],
    )
    last = await repository.last_values(conn, ids)
    alerts = await alert_repository.unresolved_for_patients(conn, ids)

    def on_board(current: repository.CurrentPeriod, shown: _PageDetails) -> PatientOnBoard:
        patient_id = current.patient_id
        last_at = current.last_reading_at
        zone = time_zone(current.time_zone)
        today = local_day(now, zone)
        record = shown.records.get(patient_id)
        return PatientOnBoard(
            patient_id,
            current.external_ref,
            f"{record.given_name} {record.family_name}" if record else "",
            current.time_zone,
            plan_of.get((patient_id, current.care_plan_version or 0)),
            [
                MeasureSummary(
                    Measure(m.measure),
                    m.value,
                    m.measured_at,
                    *shown.means.get((patient_id, m.measure), (None, None)),
                )
                for m in last.get(patient_id, [])
            ],
            [
                OpenAlert(a.id, a.rule_id, Severity(a.severity), a.message)
                for a in alerts.get(patient_id, [])
            ],
            _current_adherence(current, now),
            shown.minutes.get(patient_id, 0),
            shown.owners.get(patient_id),
            None if last_at is None else silent_days(local_day(last_at, zone), today, today),
        )

    unshown = _PageDetails({}, {}, {}, {})
    ranked = board([on_board(current, unshown) for current in currents.values()])
    end = len(ranked) if limit is None else min(offset + limit, len(ranked))
    page_ids = [row.patient.patient_id for row in ranked[offset:end]]
    # What the board only shows, for the page's patients: names, trends, minutes, owners.
    month = Month.of(now.date())
    shown = _PageDetails(
        await registry.by_ids(conn, page_ids),
        await repository.fortnight_means(conn, page_ids, now),
        {
            row.patient_id: row.time.minutes
            for row in await program_month(conn, month, [care_team_id], patient_ids=page_ids)
        },
        await handoff.follow_ups(conn, page_ids),
    )
    # The same order: `board` orders on nothing of what the page adds.
    page = board([on_board(currents[patient_id], shown) for patient_id in page_ids])
    return HuddlePage(
        page,
        len(ranked),
        sum(row.needs_discussion for row in ranked),
        end if end < len(ranked) else None,
    )


@dataclass(frozen=True)
class _PageDetails:
    """What a huddle page shows of its patients beyond what orders the board (none of it,
    while the board is ranked)."""

    records: dict[int, PatientRecord]
    means: dict[tuple[int, str], tuple[float | None, float | None]]
    minutes: dict[int, int]
    owners: dict[int, str]


@dataclass(frozen=True)
class PatientBilling:
    periods: list[PeriodBilling]
    months: list[MonthTime]


async def patient_billing(
    conn: Connection, patient: PatientRecord, now: datetime
) -> PatientBilling:
    """Every period of every episode, newest first, and every calendar month since the
    first episode began (newest first) with its logged time and codes."""
    zone = time_zone(patient.time_zone)
    today = local_day(now, zone)
    episodes = await repository.episodes(conn, patient.id)
    if not episodes:
        return PatientBilling([], [])
    first_start = episodes[0].started_at
    entries = [
        spent
        for entry in await time_logs.for_patient(conn, patient.id, first_start, now)
        if (spent := entry.spent()) is not None
    ]
    months = []
    month = Month.of(local_day(first_start, zone))
    while month <= Month.of(today):
        months.append(month_time(month, entries, month.starts_at(zone), month.ends_at(zone)))
        month = month.next()
    month_codes = {m.month: m.codes for m in months}

    billed: list[PeriodBilling] = []
    for episode in episodes:
        # Only what happened within the episode counts for its periods: a discharge ends
        # the last one, and what follows a re-activation belongs to the next episode.
        until = min(episode.ended_at or now, now)
        days = await repository.episode_reading_days(
            conn, patient.id, patient.time_zone, episode, episode.started_at, until
        )
        every_day = _any_kind(days)
        physician = [e for e in entries if e.by_physician]
        found = periods(episode.started_at, episode.ended_at, today, zone)
        billed += bill_episode(
            found,
            {p.number: sum(1 for day in every_day if day in p) for p in found},
            {
                p.number: time_within(
                    physician, max(p.starts_at, episode.started_at), min(p.ends_at, until)
                )
                for p in found
            },
            month_codes,
            now,
            episode.ended_at,
        )
    return PatientBilling(billed[::-1], months[::-1])


@dataclass(frozen=True)
class ProgramMonthRow:
    patient_id: int
    external_ref: str
    time: MonthTime


async def program_month(
    conn: Connection,
    month: Month,
    care_team_ids: Collection[int] | None,
    after: int = 0,
    limit: int | None = None,
    patient_ids: Collection[int] | None = None,
) -> list[ProgramMonthRow]:
    """Every patient with time logged in the month (on their own clock; of these teams,
    None: all; and of these patients, if given), by patient id: from the patient after
    `after`, at most `limit` (None: all)."""
    return [
        ProgramMonthRow(
            t.patient_id,
            t.external_ref,
            month_time_of(month, t.entries, t.spent, t.physician, t.interactive),
        )
        for t in await time_logs.month_totals(
            conn, month.first_day, month.next().first_day, care_team_ids, after, limit, patient_ids
        )
    ]
