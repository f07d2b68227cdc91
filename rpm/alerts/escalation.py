"""The escalation job: an open alert nobody acknowledged by its deadline goes up a tier.

Every process runs it on the scheduler. Each run locks the alerts due with SKIP LOCKED
and, in the same transaction, logs the escalation, writes its SMS rows and moves the
alert's next escalation time on; so two processes never escalate one alert twice, and a
nurse acknowledging at that moment either waits for the job or makes it skip the alert.
`routing.escalate` decides who is told; `lifecycle.apply` records it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool

from rpm.alerts import notifications, repository
from rpm.alerts.lifecycle import Actor, Escalate, apply
from rpm.alerts.routing import Policy, Routed, escalate
from rpm.care_teams import registry as care_teams

logger = logging.getLogger(__name__)

ESCALATIONS = Counter("rpm_alert_escalations", "Alerts escalated or reminded", ["action"])
# The job's name in the alert event log (the rule engine's is "system:rules").
SYSTEM_ACTOR = "system:escalation"
BATCH = 200


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Escalator:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        policy: Policy,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._pool = pool
        self._policy = policy
        # Wakes the SMS dispatcher once the escalation's rows are committed.
        self._wake = wake
        self._clock = clock

    async def run(self) -> int:
        """Escalate every alert due now, a batch per transaction; returns how many."""
        total = 0
        while True:
            done = await self.escalate_due()
            total += done
            if done < BATCH:
                return total

    async def escalate_due(self) -> int:
        now = self._clock()
        async with self._pool.connection() as conn, conn.transaction():
            due = await repository.lock_escalation_due(conn, now, BATCH)
            if not due:
                return 0
            on_call = await care_teams.on_call_for_patients(
                conn, {alert.patient_id for alert in due}, now
            )
            for alert in due:
                action, routed = escalate(
                    alert.severity,
                    alert.state.escalation_tier,
                    on_call.get(alert.patient_id, {}),
                    now,
                    self._policy,
                )
                if not routed.notifications:
                    # Nobody on call to tell: the worklist has it; look again later
                    # rather than log a reminder that reached no one.
                    await repository.reschedule_escalation(conn, alert.state.id, routed.escalate_at)
                    continue
                new, event = apply(
                    alert.state,
                    Escalate(routed.tier, _reason(action, alert.severity, routed)),
                    Actor(SYSTEM_ACTOR),
                    now,
                )
                await repository.save_transition(conn, new, event, SYSTEM_ACTOR, routed.escalate_at)
                await notifications.insert(conn, alert.state.id, routed.notifications)
                ESCALATIONS.labels(event.action).inc()
        self._wake()
        logger.info("escalation: %d alert(s) past their deadline handled", len(due))
        return len(due)


def _reason(action: str, severity: str, routed: Routed) -> str:
    told = routed.notifications[0].tier
    if action == "escalated":
        return f"not acknowledged in time ({severity}): tier {told} told"
    return f"still not acknowledged ({severity}): tier {told} reminded"
