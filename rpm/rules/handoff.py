"""Where the rule engine receives readings: right after ingest has committed them.

`IngestService` awaits `readings_stored` once per committed batch, before the batch is
acknowledged to the broker, so a slow rule engine slows ingest down (back-pressure)
rather than piling readings up in memory. The rules issue evaluates care plans here.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter

from rpm.ingest.pipeline import ReadingRow

READINGS_HANDED_OFF = Counter(
    "rpm_rules_readings_received", "Committed readings handed to the rule engine"
)


async def readings_stored(rows: Sequence[ReadingRow]) -> None:
    READINGS_HANDED_OFF.inc(len(rows))
