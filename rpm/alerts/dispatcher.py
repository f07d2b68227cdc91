"""The SMS dispatcher: sends what the outbox holds, once.

Each round: claim the due rows (committed as `sending` before any send, SKIP LOCKED so
that several dispatchers never take the same row), plan the round within each
recipient's rate limit (`routing.plan_dispatch`: digests, deferrals, expiries), send each
SMS through Twilio in a thread of the dispatcher's own bounded executor, and record each
answer in its own transaction. Rounds overlap: the next one claims while earlier sends
wait for Twilio (100s of ms each), so a row committed meanwhile does not wait for a
round's slowest answer; the rate limit counts the rows still `sending` for that.
Rows left `sending` by a crash or an unanswered call are reconciled with Twilio's list of
sent messages before anything is sent again (docs/alerts.md: the window that remains).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool

from rpm.alerts import notifications
from rpm.alerts.routing import Policy, Send, body, plan_dispatch
from rpm.alerts.twilio_sms import SendOutcome
from rpm.backoff import Backoff
from rpm.config import AlertsSettings

logger = logging.getLogger(__name__)

SMS_SENT = Counter("rpm_sms", "SMS dispatch outcomes", ["outcome"])
CLAIM_BATCH = 100
# A row `sending` for longer than this was left by a dead dispatcher or an unanswered call.
RECONCILE_AFTER = timedelta(minutes=2)
RETRY = Backoff(initial=5.0, maximum=300.0)

T = TypeVar("T")


class SmsSender(Protocol):
    def send(self, to: str, body: str, validity_s: int, status_callback: str) -> SendOutcome: ...

    def find_sent(self, to: str, body: str, since: datetime) -> str | None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        sender: SmsSender,
        settings: AlertsSettings,
        policy: Policy,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._settings = settings
        self._policy = policy
        self._clock = clock
        self._wake = asyncio.Event()
        # Its own threads, not the loop's default executor (a few threads, shared with
        # everything else that runs a blocking call): a send waits for Twilio, not CPU.
        self._executor = ThreadPoolExecutor(settings.sms_senders, thread_name_prefix="rpm-sms")
        self._in_flight: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Dispatch whenever woken, and every poll interval (rows from other processes,
        retries and quiet hours coming due); reconcile stale rows now and then. At most
        `sms_senders` SMS are in flight; a send that ends frees its slot and wakes it."""
        rounds = 0
        try:
            while True:
                self._wake.clear()
                try:
                    while (free := self._settings.sms_senders - len(self._in_flight)) > 0:
                        claimed, sends = await self._claim_round(min(free, CLAIM_BATCH))
                        for send in sends:
                            task = asyncio.create_task(send, name="sms-send")
                            self._in_flight.add(task)
                            task.add_done_callback(self._sent)
                        if not claimed:
                            break
                    rounds += 1
                    if rounds % 30 == 1:
                        await self.reconcile()
                except Exception:
                    logger.exception("SMS dispatch round failed; retrying at the next poll")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.dispatch_poll_s)
        finally:
            # On a stop, the sends in flight still record Twilio's answers (bounded by the
            # client's timeout); a row left `sending` is reconciled by the next dispatcher.
            if self._in_flight:
                await asyncio.wait(set(self._in_flight))
            self._executor.shutdown(wait=False)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("SMS send failed", exc_info=task.exception())
        if len(self._in_flight) == self._settings.sms_senders - 1:
            self._wake.set()  # every slot was taken: claim what waited for one

    async def dispatch_once(self) -> int:
        """One round, its sends awaited; returns how many rows it claimed (0: nothing
        was due)."""
        claimed, sends = await self._claim_round(CLAIM_BATCH)
        await asyncio.gather(*sends)
        return claimed

    async def _claim_round(self, limit: int) -> tuple[int, list[Coroutine[Any, Any, None]]]:
        """Claim and plan up to `limit` due rows; how many it claimed, and their sends
        (coroutines, not started: the caller awaits or schedules them)."""
        now = self._clock()
        async with self._pool.connection() as conn:
            async with conn.transaction():
                due = await notifications.claim_due(conn, now, limit)
            if not due:
                return 0, []
            recent = await notifications.sent_in_window(
                conn,
                {d.recipient for d in due},
                now - self._policy.rate_window,
                now,
                [d.id for d in due],
            )
            plan = plan_dispatch(due, recent, now, self._policy)
            async with conn.transaction():
                await notifications.expire(conn, plan.expired)
                await notifications.release(conn, plan.deferred)
            SMS_SENT.labels("expired").inc(len(plan.expired))
        return len(due), [self._send(send, now) for send in plan.sends]

    async def _in_thread(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    async def _send(self, send: Send, now: datetime) -> None:
        text = body(
            send, self._settings.sms_template, self._settings.digest_template,
            self._settings.public_url,
        )  # fmt: skip
        # Kept before the send: a reconciliation looks the message up by its text.
        async with self._pool.connection() as conn, conn.transaction():
            await notifications.record_body(conn, send.id, text, send.counted)
        validity_s = int((send.expires_at - now).total_seconds())
        base = self._settings.public_url.rstrip("/")
        callback = f"{base}/api/v1/twilio/status?notification={send.id}"
        # No connection is held while Twilio answers (100s of ms): the pool is the one
        # ingest and the rule engine use, and a burst of sends held it all
        # (docs/benchmarks.md, "Alerts").
        outcome = await self._in_thread(
            self._sender.send, send.to_phone, text, validity_s, callback
        )
        ids = [send.id, *send.counted]
        async with self._pool.connection() as conn, conn.transaction():
            if outcome.kind == "sent" and outcome.sid:
                await notifications.record_sent(
                    conn, send.id, outcome.sid, self._clock(), send.counted
                )
            elif outcome.kind == "retry":
                later = self._clock() + timedelta(seconds=RETRY.delay(send.attempts - 1))
                await notifications.record_retry(conn, ids, later, outcome.code, outcome.message)
            elif outcome.kind == "failed":
                await notifications.record_failed(conn, ids, outcome.code, outcome.message)
            else:
                await notifications.record_unknown(conn, send.id, outcome.message)
        SMS_SENT.labels(outcome.kind).inc()
        if outcome.kind == "failed":
            logger.warning(
                "SMS refused by Twilio for good (%s): %s",
                outcome.code,
                f"shown on alert {send.alert_id}" if send.alert_id else "an adherence reminder",
                extra={"notification_id": send.id, "alert_id": send.alert_id},
            )

    async def reconcile(self) -> int:
        """Settle rows left `sending`: sent if Twilio has the message, else pending again."""
        now = self._clock()
        settled = 0
        async with self._pool.connection() as conn, conn.transaction():
            for row in await notifications.stale_sending(conn, now - RECONCILE_AFTER, 50):
                sid = None
                if row.body is not None:
                    sid = await self._in_thread(
                        self._sender.find_sent, row.to_phone, row.body, row.claimed_at
                    )
                if sid is not None:
                    await notifications.record_sent(conn, row.id, sid, row.claimed_at, row.counted)
                else:
                    # A digest that never left: what it counted goes back with it.
                    await notifications.record_retry(
                        conn,
                        [row.id, *row.counted],
                        now,
                        None,
                        "not found at Twilio after a lost answer",
                    )
                settled += 1
        if settled:
            logger.warning("reconciled %d SMS left unsettled by a stopped dispatcher", settled)
        return settled
