"""From alert changes to SMS rows in the outbox, in the transaction of the change.

The rule engine calls `on_changes` in the transaction that opens or raises alerts, so an
alert and its notifications are committed together; `committed` then wakes the
dispatcher, which sends them at once instead of at its next poll.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from rpm.alerts import notifications
from rpm.alerts.repository import AlertChange, Connection
from rpm.alerts.routing import Policy, route
from rpm.care_teams import registry as care_teams
from rpm.config import AlertsSettings


def policy_of(settings: AlertsSettings) -> Policy:
    deadlines = {
        "critical": settings.ack_deadline_critical_min,
        "high": settings.ack_deadline_high_min,
        "warning": settings.ack_deadline_warning_min,
    }
    return Policy(
        sms_severities=frozenset(settings.sms_severities),
        deadlines={s: timedelta(minutes=m) for s, m in deadlines.items() if m > 0},
        reminder_interval=timedelta(minutes=settings.reminder_interval_min),
        validity=timedelta(minutes=settings.sms_validity_min),
        rate_limit=settings.sms_rate_limit,
        rate_window=timedelta(minutes=settings.sms_rate_window_min),
    )


class Notifier:
    def __init__(self, policy: Policy, wake: Callable[[], None] = lambda: None) -> None:
        self._policy = policy
        self._wake = wake

    async def on_changes(
        self,
        conn: Connection,
        changes: Sequence[AlertChange],
        plan_sms: Mapping[int, Sequence[str] | None],
        now: datetime,
    ) -> int:
        """Route the alerts that opened or got worse; write their SMS rows and when they
        escalate. The caller's transaction. Returns how many SMS rows it wrote."""
        routed = [c for c in changes if c.opened or c.severity_raised]
        if not routed:
            return 0
        on_call = await care_teams.on_call_for_patients(conn, {c.patient_id for c in routed}, now)
        tiers = await _current_tiers(conn, [c.alert_id for c in routed])
        written = 0
        for change in routed:
            result = route(
                change.severity,
                "opened" if change.opened else "severity_raised",
                tiers.get(change.alert_id, 0),
                plan_sms.get(change.patient_id),
                on_call.get(change.patient_id, {}),
                now,
                self._policy,
            )
            await notifications.insert(conn, change.alert_id, result.notifications)
            await conn.execute(
                "UPDATE alert SET escalation_tier = %s, escalate_at = %s WHERE id = %s"
                " AND status = 'open'",
                [result.tier, result.escalate_at, change.alert_id],
            )
            written += len(result.notifications)
        return written

    def committed(self) -> None:
        """After the transaction of `on_changes` committed: send now."""
        self._wake()


async def _current_tiers(conn: Connection, alert_ids: Sequence[int]) -> dict[int, int]:
    """The tier each alert has reached (a raised alert may have been escalated already)."""
    cursor = await conn.execute(
        "SELECT id, escalation_tier FROM alert WHERE id = ANY(%s)", [list(alert_ids)]
    )
    return dict(await cursor.fetchall())
