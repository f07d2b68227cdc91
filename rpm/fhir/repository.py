"""The SQL of the FHIR export: patients' single readings within a window of time, in the
export order (patient, measured_at, device, kind), a page at a time by key."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row
from psycopg.types.multirange import Multirange
from psycopg.types.range import Range

from rpm.fhir.observations import Measurement, Position
from rpm.fhir.search import Interval

Connection = AsyncConnection[TupleRow]

_MEASUREMENTS = """
SELECT r.patient_id, r.device_id, d.serial AS device_serial, r.kind, r.measured_at,
       r.measured_utc_offset_min, r.received_at, r.systolic_mmhg, r.diastolic_mmhg,
       r.pulse_bpm, r.weight_kg, r.glucose_mg_dl
FROM reading r JOIN device d ON d.id = r.device_id
WHERE r.patient_id = ANY(%(patients)s) AND r.statistic IS NULL
  AND r.measured_at <@ %(window)s::tstzmultirange
  -- The window's outer bounds again, as plain comparisons: what an index range scan and
  -- TimescaleDB's chunk exclusion work from.
  AND r.measured_at >= coalesce(lower(%(window)s::tstzmultirange), '-infinity')
  AND r.measured_at < coalesce(upper(%(window)s::tstzmultirange), 'infinity')
  AND (%(at)s::timestamptz IS NULL
       OR (r.patient_id, r.measured_at, r.device_id, r.kind)
          >= (%(patient)s, %(at)s, %(device)s, %(kind)s))
ORDER BY r.patient_id, r.measured_at, r.device_id, r.kind
LIMIT %(limit)s
"""


async def measurements(
    conn: Connection,
    patient_ids: Sequence[int],
    window: Sequence[Interval],
    start: Position | None,
    limit: int,
) -> list[Measurement]:
    """At most `limit` single readings (summaries left out) of these patients measured
    within `window`, from `start`'s reading on, that reading included."""
    async with conn.cursor(row_factory=class_row(Measurement)) as cursor:
        await cursor.execute(
            _MEASUREMENTS,
            {
                "patients": list(patient_ids),
                "window": Multirange([Range(low, high, "[)") for low, high in window]),
                "at": start.measured_at if start else None,
                "patient": start.patient_id if start else None,
                "device": start.device_id if start else None,
                "kind": start.kind if start else None,
                "limit": limit,
            },
        )
        return await cursor.fetchall()
