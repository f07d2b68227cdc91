"""The escalation job against the real PostgreSQL, on a clock of the test's: an open
critical alert climbs the tiers at its deadline, then reminds the highest until someone
acknowledges; nobody on call logs nothing; two processes escalate each alert once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from rpm.alerts import repository, service
from rpm.alerts.escalation import Escalator
from rpm.alerts.lifecycle import Acknowledge, Actor
from rpm.alerts.notifier import Notifier, policy_of
from rpm.care_teams import registry
from rpm.care_teams.registry import NewStaff
from rpm.config import AlertsSettings
from rpm.rules.plan import Severity
from rpm.rules.policy import AlertWrite

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = policy_of(AlertsSettings())  # type: ignore[call-arg]
# tier: (username, phone)
TIERS = {1: ("nurse-1", "+15555550101"), 2: ("backup-1", "+15555550102"),
         3: ("physician-1", "+15555550103")}  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(db_url, min_size=1, max_size=4, open=False) as pool:
        yield pool


async def _team(pool: AsyncConnectionPool, tiers: dict[int, tuple[str, str]]) -> int:
    """A care team with these tiers on call all day around T0."""
    async with pool.connection() as conn:
        team = await registry.create_team(conn, "Cardiology")
        for tier, (username, phone) in tiers.items():
            staff = await registry.add_staff(conn, NewStaff(username, username, "nurse", phone))
            await registry.add_member(conn, team.id, staff.id)
            await registry.add_shift(
                conn, team.id, staff.id, tier, T0 - timedelta(hours=1), T0 + timedelta(days=1)
            )
    return team.id


async def _open_alerts(
    pool: AsyncConnectionPool,
    team_id: int | None,
    count: int = 1,
    severity: str = "critical",
    ref: str = "P-1",
) -> list[int]:
    """Alerts opened as the rule engine opens them: written, then routed by the notifier."""
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(
            "INSERT INTO patient (external_ref, given_name, family_name, care_team_id)"
            " VALUES (%s, 'T', 'P', %s) RETURNING id",
            [ref, team_id],
        )
        patient = (await cursor.fetchone())[0]  # type: ignore[index]
        await conn.execute(
            "INSERT INTO care_plan_version (patient_id, version, document, author, reason)"
            " VALUES (%s, 1, '{}', 'cm', 'test')",
            [patient],
        )
        writes = [
            AlertWrite(patient, f"rule_{i}", 1, Severity(severity), "m", "m", T0, T0, ())
            for i in range(count)
        ]
        changes = await repository.write(conn, writes)
        await Notifier(POLICY).on_changes(conn, changes, {}, T0)
    return [change.alert_id for change in changes]


def _sms(db_url: str, alert_id: int) -> list[tuple[str, str, int]]:
    """(to, purpose, tier) of the alert's SMS rows, oldest first."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(  # type: ignore[return-value]
            "SELECT to_phone, purpose, tier FROM notification WHERE alert_id = %s ORDER BY id",
            [alert_id],
        ).fetchall()


def _events(db_url: str, alert_id: int) -> list[tuple[str, str, str]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(  # type: ignore[return-value]
            "SELECT actor, action, reason FROM alert_event WHERE alert_id = %s ORDER BY id",
            [alert_id],
        ).fetchall()


def _escalation(db_url: str, alert_id: int) -> tuple[int, datetime | None]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(  # type: ignore[return-value]
            "SELECT escalation_tier, escalate_at FROM alert WHERE id = %s", [alert_id]
        ).fetchone()


async def test_an_unacknowledged_critical_alert_climbs_the_tiers_then_reminds_until_acknowledged(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    team = await _team(pool, TIERS)
    [alert] = await _open_alerts(pool, team)
    clock = Clock()
    woken: list[int] = []
    escalator = Escalator(pool, POLICY, lambda: woken.append(1), clock)
    assert _sms(db_url, alert) == [("+15555550101", "opened", 1)]
    assert _escalation(db_url, alert) == (1, T0 + timedelta(minutes=15))

    clock.now = T0 + timedelta(minutes=14, seconds=59)
    assert await escalator.run() == 0  # not yet: the deadline is 15 minutes
    clock.now = T0 + timedelta(minutes=15)
    assert await escalator.run() == 1
    assert _sms(db_url, alert)[-1] == ("+15555550102", "escalated", 2)
    assert _escalation(db_url, alert) == (2, T0 + timedelta(minutes=30))
    assert woken == [1]
    assert await escalator.run() == 0  # once per deadline, however often the job runs

    clock.now = T0 + timedelta(minutes=30)
    assert await escalator.run() == 1
    assert _sms(db_url, alert)[-1] == ("+15555550103", "escalated", 3)
    # Past the physician, reminders to the physician at the reminder interval.
    clock.now = T0 + timedelta(minutes=45)
    assert await escalator.run() == 1
    assert _sms(db_url, alert)[-1] == ("+15555550103", "reminded", 3)
    assert _escalation(db_url, alert) == (3, T0 + timedelta(minutes=60))

    async with pool.connection() as conn:
        backup = await registry.staff_by_username(conn, "backup-1")
        assert backup is not None
        await service.act(
            conn, alert, Acknowledge("calling the patient"), Actor("backup-1", backup.id)
        )
    assert _escalation(db_url, alert) == (3, None)
    clock.now = T0 + timedelta(hours=3)
    assert await escalator.run() == 0
    assert len(_sms(db_url, alert)) == 4
    assert [(actor, action) for actor, action, _ in _events(db_url, alert)] == [
        ("system:rules", "opened"),
        ("system:escalation", "escalated"),
        ("system:escalation", "escalated"),
        ("system:escalation", "reminded"),
        ("backup-1", "acknowledged"),
    ]
    assert _events(db_url, alert)[1][2] == "not acknowledged in time (critical): tier 2 told"


async def test_with_nobody_on_call_the_alert_waits_in_the_worklist_and_nothing_is_logged(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    [alert] = await _open_alerts(pool, team_id=None)
    clock = Clock()
    escalator = Escalator(pool, POLICY, clock=clock)
    assert _escalation(db_url, alert) == (0, T0 + timedelta(minutes=15))
    clock.now = T0 + timedelta(minutes=15)
    assert await escalator.run() == 1
    # Looked at again after the reminder interval; no SMS, no event that told no one.
    assert _escalation(db_url, alert) == (0, T0 + timedelta(minutes=30))
    assert _sms(db_url, alert) == []
    assert [action for _, action, _ in _events(db_url, alert)] == ["opened"]


async def test_a_warning_never_escalates_and_a_high_alert_waits_an_hour(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    team = await _team(pool, TIERS)
    [warning] = await _open_alerts(pool, team, severity="warning")
    assert _escalation(db_url, warning) == (0, None)
    [high] = await _open_alerts(pool, team, severity="high", ref="P-2")
    # High goes to the worklist only (no SMS by default), and escalates after 60 minutes.
    assert _sms(db_url, high) == []
    assert _escalation(db_url, high) == (0, T0 + timedelta(minutes=60))
    clock = Clock()
    escalator = Escalator(pool, POLICY, clock=clock)
    clock.now = T0 + timedelta(minutes=60)
    assert await escalator.run() == 1
    assert _sms(db_url, high) == [("+15555550101", "escalated", 1)]


async def test_several_processes_escalate_each_alert_once(db_url: str) -> None:
    pools = [AsyncConnectionPool(db_url, min_size=1, max_size=2, open=False) for _ in range(3)]
    for each in pools:
        await each.open()
    try:
        team = await _team(pools[0], TIERS)
        alerts = await _open_alerts(pools[0], team, count=450)
        clock = Clock()
        clock.now = T0 + timedelta(minutes=15)
        escalators = [Escalator(each, POLICY, clock=clock) for each in pools]
        counts = await asyncio.gather(*(e.run() for e in escalators))
        assert sum(counts) == len(alerts)
    finally:
        for each in pools:
            await each.close()
    with psycopg.connect(db_url) as conn:
        per_alert = conn.execute(
            "SELECT count(*) FILTER (WHERE action = 'escalated'),"
            " count(DISTINCT alert_id) FILTER (WHERE action = 'escalated')"
            " FROM alert_event"
        ).fetchone()
        escalated_sms = conn.execute(
            "SELECT count(*) FROM notification WHERE purpose = 'escalated'"
        ).fetchone()
    assert per_alert == (450, 450)
    assert escalated_sms == (450,)
