"""Where the rule engine receives readings: inside the ingest transaction that stores them.

The readings are queued in that transaction, so their evaluation is as durable as they
are; right after the commit they are evaluated (before the batch is acknowledged to the
broker, so a slow rule engine slows ingest down instead of piling readings up in memory).
An evaluation that fails leaves its batch queued for the sweeper: a rule-engine fault
never stops ingest, and never loses an evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prometheus_client import Counter

from rpm.ingest.pipeline import ReadingRow
from rpm.ingest.repository import Connection
from rpm.ingest.service import AfterCommit
from rpm.rules.engine import RuleEngine
from rpm.rules.evaluate import HistoryRow, ReadingKey
from rpm.rules.repository import NewReading

logger = logging.getLogger(__name__)

READINGS_QUEUED = Counter(
    "rpm_rules_readings_queued",
    "Readings committed to the evaluation queue with the transaction storing them",
)
EVALUATION_FAILURES = Counter(
    "rpm_rules_evaluation_failures", "Batch evaluations that failed and were left to the sweeper"
)


class RulesHandoff:
    def __init__(self, engine: RuleEngine) -> None:
        self._engine = engine

    async def __call__(self, conn: Connection, rows: Sequence[ReadingRow]) -> AfterCommit | None:
        # Summaries (an Open mHealth statistic) are stored but not evaluated.
        readings = [_new_reading(row) for row in rows if row.reading.statistic is None]
        if not readings:
            return None
        ticket = await self._engine.enqueue(conn, readings)

        async def evaluate() -> None:
            READINGS_QUEUED.inc(len(readings))  # here, once the queue row is committed
            try:
                await self._engine.evaluate(ticket, readings)
            except Exception:
                EVALUATION_FAILURES.inc()
                logger.exception("rule evaluation failed; the sweeper will retry the batch",
                                 extra={"ticket": ticket})  # fmt: skip

        return evaluate


def _new_reading(row: ReadingRow) -> NewReading:
    r = row.reading
    key = ReadingKey(row.device_id, r.kind.value, r.measured_at)
    values = HistoryRow(
        key,
        r.systolic_mmhg,
        r.diastolic_mmhg,
        r.pulse_bpm,
        r.weight_kg,
        r.glucose_mg_dl,
        r.meal_context.value if r.meal_context else None,
    )
    return NewReading(row.patient_id, key, values)
