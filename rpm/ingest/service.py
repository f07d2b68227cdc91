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
from rpm.ingest.pipeline import DecodedMessage, Envelope, ReadingRow

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
        return await self.store([self.decode(envelope) for envelope in envelopes])

    def decode(self, envelope: Envelope) -> DecodedMessage:
        """The first, CPU-only step, apart so that a caller can overlap it with `store`."""
        return pipeline.decode(envelope, self._limits)

    async def store(self, decoded: Sequence[DecodedMessage]) -> BatchResult:
        """Attribute, write and commit the decoded messages in one transaction; hand off."""
        started = time.perf_counter()
        async with self._pool.connection() as conn, conn.transaction():
            devices = await repository.load_devices(conn, pipeline.serials(decoded))
            plan = pipeline.resolve(decoded, devices)
            stored = await repository.store(conn, plan)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(decoded))
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
            len(decoded), len(stored.inserted), stored.duplicates, stored.dead_letters
        )
