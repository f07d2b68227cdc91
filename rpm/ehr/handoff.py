"""Where the EHR outbox receives readings: inside the ingest transaction that stores them,
so that a reading is queued for every active EHR exactly when it is stored; once the
transaction has committed, the pusher is woken to send it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rpm.ehr import repository
from rpm.ingest.pipeline import ReadingRow
from rpm.ingest.repository import Connection
from rpm.ingest.service import AfterCommit


class EhrHandoff:
    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    async def __call__(self, conn: Connection, rows: Sequence[ReadingRow]) -> AfterCommit | None:
        # Summaries (an Open mHealth statistic) are no Observation: not pushed.
        singles = [row for row in rows if row.reading.statistic is None]
        # No server to feed (most deployments): the batch's three arrays, dumped item by
        # item, cost some 2 µs of the ingest's CPU a reading (`make bench`'s profile).
        if not singles or not await repository.any_active(conn):
            return None
        queued = await repository.enqueue(
            conn,
            [row.device_id for row in singles],
            [row.reading.kind.value for row in singles],
            [row.reading.measured_at for row in singles],
        )
        if not queued:
            return None

        async def wake() -> None:
            self._wake()

        return wake
