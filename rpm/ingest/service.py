"""Ingest a batch of messages: decode, attribute, store in one transaction, hand off.

Shared by the MQTT consumer and the HTTP webhook, so that both give the same guarantees:
when `ingest` returns, every message of the batch is committed, as readings or as dead
letters, and only then may the caller acknowledge it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from rpm.devices.checks import TimeLimits
from rpm.ingest import metrics, pipeline, repository
from rpm.ingest.pipeline import BatchPlan, DecodedMessage, Envelope, ReadingRow

logger = logging.getLogger(__name__)

# The rule engine's entry point: called after each commit with the readings it inserted.
ReadingsStored = Callable[[Sequence[ReadingRow]], Awaitable[None]]


@dataclass(frozen=True)
class BatchResult:
    messages: int
    stored: int
    duplicates: int
    rejected_messages: int


class IngestService:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        limits: TimeLimits,
        on_stored: ReadingsStored | None = None,
    ) -> None:
        self._pool = pool
        self._limits = limits
        self._on_stored = on_stored

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
            devices = await repository.load_devices(conn, pipeline.serials(decoded))
        return pipeline.resolve(decoded, devices)

    async def store(self, plan: BatchPlan) -> BatchResult:
        """Write the plan in one transaction and commit it; then hand the readings off."""
        started = time.perf_counter()
        async with self._pool.connection() as conn, conn.transaction():
            stored = await repository.store(conn, plan)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(plan.messages)
        metrics.READINGS_STORED.inc(len(stored.inserted))
        metrics.READINGS_DUPLICATE.inc(stored.duplicates)
        for letter in plan.dead_letters:
            metrics.MESSAGES_REJECTED.labels(letter.reason.value).inc()
            logger.info(
                "dead-lettered a message: %s",
                letter.reason.value,
                extra={"device_serial": letter.device_serial, "reason": letter.reason.value},
            )
        if self._on_stored is not None and stored.inserted:
            await self._on_stored(stored.inserted)
        return BatchResult(
            plan.messages, len(stored.inserted), stored.duplicates, stored.dead_letters
        )
