"""Who hears of an alert, when, and in how many SMS: routing by severity and plan, quiet
hours across midnight and DST, escalation up the tiers, and the rate limit's digests."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from rpm.alerts.routing import (
    Due,
    Policy,
    Recipient,
    body,
    escalate,
    plan_dispatch,
    quiet_until,
    route,
)

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # 08:00 in Chicago
POLICY = Policy(
    sms_severities=frozenset({"critical"}),
    deadlines={"critical": timedelta(minutes=15), "high": timedelta(minutes=60)},
    reminder_interval=timedelta(minutes=15),
    validity=timedelta(minutes=30),
    rate_limit=3,
    rate_window=timedelta(minutes=15),
)
NURSE = Recipient(1, "+15555550101", "America/Chicago", time(22, 0), time(7, 0))
BACKUP = Recipient(2, "+15555550102", "America/Chicago")
PHYSICIAN = Recipient(3, "+15555550103", "America/Chicago")
ON_CALL = {1: NURSE, 2: BACKUP, 3: PHYSICIAN}


def test_a_critical_alert_texts_tier_1_and_is_due_to_escalate_after_its_deadline() -> None:
    routed = route("critical", "opened", 0, None, ON_CALL, NOW, POLICY)
    [sms] = routed.notifications
    assert (sms.staff_id, sms.tier, sms.purpose, sms.not_before) == (1, 1, "opened", NOW)
    assert sms.expires_at == NOW + timedelta(minutes=30)
    assert (routed.tier, routed.escalate_at) == (1, NOW + timedelta(minutes=15))


def test_lower_severities_go_to_the_worklist_unless_the_plan_says_sms() -> None:
    routed = route("high", "opened", 0, None, ON_CALL, NOW, POLICY)
    assert routed.notifications == []
    assert (routed.tier, routed.escalate_at) == (0, NOW + timedelta(minutes=60))
    assert route("warning", "opened", 0, None, ON_CALL, NOW, POLICY).escalate_at is None
    by_plan = route("high", "opened", 0, ["high", "critical"], ON_CALL, NOW, POLICY)
    assert [n.staff_id for n in by_plan.notifications] == [1]
    # A plan may also keep critical alerts off SMS.
    assert route("critical", "opened", 0, [], ON_CALL, NOW, POLICY).notifications == []


def test_nobody_on_call_leaves_the_worklist_and_escalation() -> None:
    routed = route("critical", "opened", 0, None, {}, NOW, POLICY)
    assert routed.notifications == []
    assert routed.escalate_at == NOW + timedelta(minutes=15)
    # With tier 1 unstaffed, the first tier on call is told.
    assert route("critical", "opened", 0, None, {2: BACKUP}, NOW, POLICY).tier == 2


def test_quiet_hours_hold_back_all_but_critical_until_they_end_across_midnight() -> None:
    night = datetime(2026, 11, 24, 5, 30, tzinfo=UTC)  # 23:30 in Chicago
    assert quiet_until(NURSE, "critical", night) is None
    ends = quiet_until(NURSE, "high", night)
    assert ends is not None
    assert ends.astimezone(UTC) == datetime(2026, 11, 24, 13, 0, tzinfo=UTC)  # 07:00 CST
    early = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)  # 05:00 in Chicago: same night
    assert quiet_until(NURSE, "high", early) == ends
    assert quiet_until(NURSE, "high", NOW) is None  # 08:00: awake
    assert quiet_until(BACKUP, "high", night) is None  # no quiet hours
    held = route("high", "opened", 0, ["high"], ON_CALL, night, POLICY).notifications[0]
    assert (held.not_before, held.expires_at) == (ends, ends + timedelta(minutes=30))


def test_quiet_hours_end_at_local_time_across_a_dst_change() -> None:
    # The night clocks fall back in Chicago (1 November 2026): 07:00 CST is 13:00 UTC.
    night = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 23:00 CDT on 31 October
    ends = quiet_until(NURSE, "warning", night)
    assert ends is not None
    assert ends.astimezone(UTC) == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)


def test_escalation_climbs_the_tiers_then_reminds_the_highest() -> None:
    action, routed = escalate("critical", 1, ON_CALL, NOW, POLICY)
    assert (action, routed.tier, [n.staff_id for n in routed.notifications]) == (
        "escalated",
        2,
        [2],
    )
    action, routed = escalate("critical", 2, ON_CALL, NOW, POLICY)
    assert (action, routed.tier, routed.notifications[0].purpose) == ("escalated", 3, "escalated")
    action, routed = escalate("critical", 3, ON_CALL, NOW, POLICY)
    assert (action, routed.tier, [n.staff_id for n in routed.notifications]) == ("reminded", 3, [3])
    assert routed.escalate_at == NOW + timedelta(minutes=15)
    # A tier with nobody on call is skipped.
    assert escalate("critical", 1, {1: NURSE, 3: PHYSICIAN}, NOW, POLICY)[1].tier == 3


def _due(n: int, staff: int = 1, severity: str = "critical") -> Due:
    return Due(n, staff, "+15555550101", 100 + n, severity, NOW + timedelta(minutes=30))


def test_within_the_rate_limit_each_alert_is_its_own_sms() -> None:
    plan = plan_dispatch([_due(1), _due(2)], {}, NOW, POLICY)
    assert [(s.id, s.counted) for s in plan.sends] == [(1, ()), (2, ())]


def test_a_burst_becomes_singles_then_one_digest_most_severe_first() -> None:
    due = [_due(1, severity="warning"), _due(2), _due(3, severity="high"), _due(4), _due(5)]
    plan = plan_dispatch(due, {}, NOW, POLICY)
    assert [(s.id, s.counted, s.critical) for s in plan.sends] == [
        (2, (), 0),
        (4, (), 0),
        (5, (3, 1), 1),
    ]
    digest = body(
        plan.sends[-1],
        "{severity} #{alert_id} {link}",
        "{count} ({critical}) {link}",
        "https://rpm.example/",
    )
    assert digest == "3 (1) https://rpm.example/ui/worklist"


def test_a_full_window_defers_until_a_slot_frees_and_expired_rows_are_dropped() -> None:
    sent = {"staff:1": [NOW - timedelta(minutes=m) for m in (10, 5, 1)]}
    stale = Due(9, 1, "+15555550101", 109, "critical", NOW - timedelta(seconds=1))
    plan = plan_dispatch([_due(1), stale], sent, NOW, POLICY)
    assert plan.sends == []
    assert plan.expired == [9]
    assert plan.deferred == {1: NOW + timedelta(minutes=5)}
    # Another recipient is not held back by this one's window.
    assert [s.id for s in plan_dispatch([_due(2, staff=2)], sent, NOW, POLICY).sends] == [2]
