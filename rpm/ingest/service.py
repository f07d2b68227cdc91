"""Ingest a batch of messages: decode, attribute, store in one transaction, hand off.

Shared by the MQTT consumer, the HTTP webhook and dead-letter replay, so that all three
give the same guarantees: when `ingest` returns, every message of the batch is
committed, as readings or as dead letters, and only then may the caller acknowledge it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from rpm.devices.checks import TimeLimits
from rpm.ingest import dead_letters, metrics, pipeline, repository
from rpm.ingest.dead_letters import DeadLetterFilter
from rpm.ingest.pipeline import BatchPlan, DecodedMessage, Envelope, ReadingRow
from rpm.ingest.repository import Connection, StoredBatch

logger = logging.getLogger(__name__)

# The rule engine's entry point, in two steps. Called inside the ingest transaction with
# the readings it inserted, so that their evaluation is queued durably with them; what
# it returns is run once the transaction has committed, to evaluate them at once.
AfterCommit = Callable[[], Awaitable[None]]
Handoff = Callable[[Connection, Sequence[ReadingRow]], Awaitable[AfterCommit | None]]


def chain(*handoffs: Handoff) -> Handoff:
    """Several receivers of the stored readings (the rule engine, the EHR outbox), in
    order, in the same transaction; what each returns runs after the commit, in order."""

    async def handoff(conn: Connection, rows: Sequence[ReadingRow]) -> AfterCommit | None:
        after = [a for h in handoffs if (a := await h(conn, rows)) is not None]
        if not after:
            return None

        async def run_all() -> None:
            for after_commit in after:
                await after_commit()

        return run_all

    return handoff


@dataclass(frozen=True)
class BatchResult:
    messages: int
    stored: int
    duplicates: int
    rejected_messages: int
    # What the first few dead letters of the batch said, for a webhook's reply.
    rejections: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplayOutcome:
    dead_letter_id: int
    stored: int
    duplicates: int
    # Set when the message failed again: the new dead letter and why.
    new_dead_letter_id: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        readings = f"stored {self.stored} reading(s), {self.duplicates} already stored"
        if self.reason is None:
            return readings
        again = self.new_dead_letter_id
        return f"{readings}; failed again ({self.reason}): see dead letter {again}"


class IngestService:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        limits: TimeLimits,
        handoff: Handoff | None = None,
    ) -> None:
        self._pool = pool
        self._limits = limits
        self._handoff = handoff

    async def ingest(self, envelopes: Sequence[Envelope]) -> BatchResult:
        return await self.store(await self.plan([self.decode(e) for e in envelopes]))

    # The three steps, apart so that the MQTT consumer can work on the next batch while
    # the last one is being written.

    def decode(self, envelope: Envelope) -> DecodedMessage:
        """What a message says: CPU only."""
        return pipeline.decode(envelope, self._limits)

    async def plan(self, decoded: Sequence[DecodedMessage]) -> BatchPlan:
        """Attribute each reading to its device and patient, as the registry says now.

        A look-up of its own, before the write's transaction: under READ COMMITTED each
        statement sees the registry as last committed anyway, so reading it first changes
        nothing but when.
        """
        async with self._pool.connection() as conn, conn.transaction():
            return await _resolve(conn, decoded)

    async def store(self, plan: BatchPlan) -> BatchResult:
        """Write the plan in one transaction and commit it; then hand the readings off."""
        started = time.perf_counter()
        async with self._pool.connection() as conn, conn.transaction():
            stored = await repository.store(conn, plan)
            after_commit = await self._hand_off(conn, stored.inserted)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(plan.messages)
        self._count(plan, stored)
        if after_commit is not None:
            await after_commit()
        return BatchResult(
            plan.messages,
            len(stored.inserted),
            stored.duplicates,
            stored.dead_letters,
            tuple(f"{d.reason.value}: {d.detail}" for d in plan.dead_letters[:10]),
        )

    async def replay(
        self, ids: Sequence[int] = (), matching: DeadLetterFilter | None = None, limit: int = 100
    ) -> list[ReplayOutcome]:
        """Feed dead letters through the pipeline again, by id or all that match a filter.

        Each keeps its original receive time, so the time checks judge it as they did
        when it arrived. Raises `DeadLetterError` when an id is unknown or already replayed.
        """
        outcomes = []
        stored_again: list[ReadingRow] = []
        async with self._pool.connection() as conn, conn.transaction():
            if ids:
                claimed = await dead_letters.claim_ids(conn, ids)
            else:
                claimed = await dead_letters.claim(conn, matching or DeadLetterFilter(), limit)
            # One message at a time, so that each outcome names its own readings.
            for dead_letter_id, envelope in claimed:
                plan, stored = await self._store(conn, [envelope])
                outcome = ReplayOutcome(dead_letter_id, len(stored.inserted), stored.duplicates)
                if plan.dead_letters:
                    outcome = ReplayOutcome(
                        dead_letter_id,
                        len(stored.inserted),
                        stored.duplicates,
                        await dead_letters.pending_id(conn, envelope),
                        plan.dead_letters[0].reason.value,
                    )
                await dead_letters.record_result(conn, dead_letter_id, outcome.describe())
                outcomes.append(outcome)
                stored_again += stored.inserted
            after_commit = await self._hand_off(conn, stored_again)
        metrics.READINGS_STORED.inc(len(stored_again))
        logger.info(
            "replayed %d dead letter(s): %d stored again as readings",
            len(outcomes),
            sum(1 for o in outcomes if o.reason is None),
        )
        if after_commit is not None:
            await after_commit()
        return outcomes

    async def _store(
        self, conn: Connection, envelopes: Sequence[Envelope]
    ) -> tuple[BatchPlan, StoredBatch]:
        """All three steps in the caller's transaction (a replay's)."""
        plan = await _resolve(conn, [self.decode(envelope) for envelope in envelopes])
        return plan, await repository.store(conn, plan)

    async def _hand_off(self, conn: Connection, rows: list[ReadingRow]) -> AfterCommit | None:
        if self._handoff is None or not rows:
            return None
        return await self._handoff(conn, rows)

    def _count(self, plan: BatchPlan, stored: StoredBatch) -> None:
        metrics.READINGS_STORED.inc(len(stored.inserted))
        metrics.READINGS_DUPLICATE.inc(stored.duplicates)
        for letter in plan.dead_letters:
            metrics.MESSAGES_REJECTED.labels(letter.reason.value).inc()
            logger.info(
                "dead-lettered a message: %s",
                letter.reason.value,
                extra={"device_serial": letter.device_serial, "reason": letter.reason.value},
            )


async def _resolve(conn: Connection, decoded: Sequence[DecodedMessage]) -> BatchPlan:
    """Look the batch's devices up, and attribute each reading (`pipeline.resolve`)."""
    devices = await repository.load_devices(conn, pipeline.serials(decoded))
    return pipeline.resolve(decoded, devices)
