"""The SQL of the FHIR API: patients' single readings within a window of time, in the
export order (patient, measured_at, device, kind), a page at a time by key; and the
patients, devices and alerts it serves, by id, a page at a time."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row
from psycopg.types.multirange import Multirange
from psycopg.types.range import Range

from rpm.fhir.observations import Measurement, ObservationKey, Position
from rpm.fhir.resources import AlertRow, DeviceRow, PatientRow
from rpm.fhir.search import Interval

Connection = AsyncConnection[TupleRow]
Row = TypeVar("Row")
# No condition on a time: every instant.
ALWAYS: tuple[Interval, ...] = ((None, None),)

_MEASUREMENTS = """
SELECT r.patient_id, r.device_id, d.serial AS device_serial, r.kind, r.measured_at,
       r.measured_utc_offset_min, r.received_at, r.systolic_mmhg, r.diastolic_mmhg,
       r.pulse_bpm, r.weight_kg, r.glucose_mg_dl, r.meal_context
FROM reading r JOIN device d ON d.id = r.device_id
WHERE r.patient_id = ANY(%(patients)s) AND r.statistic IS NULL
  AND r.measured_at <@ %(window)s::tstzmultirange
  -- The window's outer bounds again, as plain comparisons: what an index range scan and
  -- TimescaleDB's chunk exclusion work from.
  AND r.measured_at >= coalesce(lower(%(window)s::tstzmultirange), '-infinity')
  AND r.measured_at < coalesce(upper(%(window)s::tstzmultirange), 'infinity')
  AND r.received_at <@ %(received)s::tstzmultirange
  AND (%(kinds)s::text[] IS NULL OR r.kind = ANY(%(kinds)s::text[]))
  AND (%(devices)s::bigint[] IS NULL
       OR (r.device_id, r.kind, r.measured_at) IN (
           SELECT * FROM unnest(%(devices)s::bigint[], %(key_kinds)s::text[],
                                %(instants)s::timestamptz[])))
  AND (%(at)s::timestamptz IS NULL
       OR (r.patient_id, r.measured_at, r.device_id, r.kind)
          >= (%(patient)s, %(at)s, %(device)s, %(kind)s))
ORDER BY r.patient_id, r.measured_at, r.device_id, r.kind
LIMIT %(limit)s
"""


def _multirange(window: Sequence[Interval]) -> Multirange[Any]:
    return Multirange([Range(low, high, "[)") for low, high in window])


async def measurements(
    conn: Connection,
    patient_ids: Sequence[int],
    window: Sequence[Interval],
    start: Position | None,
    limit: int,
    *,
    received: Sequence[Interval] = ALWAYS,
    kinds: Collection[str] | None = None,
    keys: Collection[ObservationKey] | None = None,
) -> list[Measurement]:
    """At most `limit` single readings (summaries left out) of these patients measured
    within `window` and received within `received`, from `start`'s reading on, that
    reading included; only of `kinds` and of the readings `keys` name, when given."""
    keyed = None if keys is None else sorted(keys, key=lambda k: (k.device_id, k.measured_at))
    async with conn.cursor(row_factory=class_row(Measurement)) as cursor:
        await cursor.execute(
            _MEASUREMENTS,
            {
                "patients": list(patient_ids),
                "window": _multirange(window),
                "received": _multirange(received),
                "kinds": None if kinds is None else sorted(kinds),
                "devices": None if keyed is None else [k.device_id for k in keyed],
                "key_kinds": None if keyed is None else [k.kind for k in keyed],
                "instants": None if keyed is None else [k.measured_at for k in keyed],
                "at": start.measured_at if start else None,
                "patient": start.patient_id if start else None,
                "device": start.device_id if start else None,
                "kind": start.kind if start else None,
                "limit": limit,
            },
        )
        return await cursor.fetchall()


async def measurement(conn: Connection, key: ObservationKey) -> Measurement | None:
    """The single reading a key names (by the reading's primary key), if stored."""
    async with conn.cursor(row_factory=class_row(Measurement)) as cursor:
        await cursor.execute(
            "SELECT r.patient_id, r.device_id, d.serial AS device_serial, r.kind,"
            " r.measured_at, r.measured_utc_offset_min, r.received_at, r.systolic_mmhg,"
            " r.diastolic_mmhg, r.pulse_bpm, r.weight_kg, r.glucose_mg_dl, r.meal_context"
            " FROM reading r JOIN device d ON d.id = r.device_id"
            " WHERE r.device_id = %s AND r.kind = %s AND r.measured_at = %s"
            " AND r.statistic IS NULL",
            [key.device_id, key.kind, key.measured_at],
        )
        return await cursor.fetchone()


# Every list below: by id, after `after`, limited to `ids` (None: any), to those changed
# within `updated`, and to the care teams `teams` (None: every team, and none).
_PATIENTS = """
SELECT id, external_ref, given_name, family_name, birth_date, status, care_team_id,
       updated_at
FROM patient p
WHERE id > %(after)s AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
  AND (%(refs)s::text[] IS NULL OR external_ref = ANY(%(refs)s::text[]))
  AND updated_at <@ %(updated)s::tstzmultirange
  AND (%(teams)s::bigint[] IS NULL OR care_team_id = ANY(%(teams)s::bigint[]))
ORDER BY id LIMIT %(limit)s
"""

_DEVICES = """
SELECT d.id, d.serial, d.kind, d.model, d.status, d.firmware, a.patient_id,
       p.care_team_id, d.updated_at
FROM device d
LEFT JOIN device_assignment a ON a.device_id = d.id AND a.unassigned_at IS NULL
LEFT JOIN patient p ON p.id = a.patient_id
WHERE d.id > %(after)s AND (%(ids)s::bigint[] IS NULL OR d.id = ANY(%(ids)s::bigint[]))
  AND (%(patients)s::bigint[] IS NULL OR a.patient_id = ANY(%(patients)s::bigint[]))
  AND d.updated_at <@ %(updated)s::tstzmultirange
  AND (%(teams)s::bigint[] IS NULL OR p.care_team_id = ANY(%(teams)s::bigint[]))
ORDER BY d.id LIMIT %(limit)s
"""

_ALERTS = """
SELECT a.id, a.patient_id, a.severity, a.status, a.message, a.opened_at, a.resolved_at,
       a.updated_at
FROM alert a JOIN patient p ON p.id = a.patient_id
WHERE a.id > %(after)s AND (%(ids)s::bigint[] IS NULL OR a.id = ANY(%(ids)s::bigint[]))
  AND (%(open)s = false OR a.status <> 'resolved')
  AND (%(patients)s::bigint[] IS NULL OR a.patient_id = ANY(%(patients)s::bigint[]))
  AND a.updated_at <@ %(updated)s::tstzmultirange
  AND (%(teams)s::bigint[] IS NULL OR p.care_team_id = ANY(%(teams)s::bigint[]))
ORDER BY a.id LIMIT %(limit)s
"""


async def _rows(conn: Connection, row: type[Row], query: str, params: dict[str, Any]) -> list[Row]:
    async with conn.cursor(row_factory=class_row(row)) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchall()


def _ids(values: Collection[int] | None) -> list[int] | None:
    return None if values is None else sorted(values)


async def patients(
    conn: Connection,
    *,
    after: int = 0,
    limit: int,
    ids: Collection[int] | None = None,
    refs: Collection[str] | None = None,
    updated: Sequence[Interval] = ALWAYS,
    teams: Collection[int] | None = None,
) -> list[PatientRow]:
    params = {"after": after, "ids": _ids(ids), "refs": None if refs is None else sorted(refs),
              "updated": _multirange(updated), "teams": _ids(teams), "limit": limit}  # fmt: skip
    return await _rows(conn, PatientRow, _PATIENTS, params)


async def devices(
    conn: Connection,
    *,
    after: int = 0,
    limit: int,
    ids: Collection[int] | None = None,
    patient_ids: Collection[int] | None = None,
    updated: Sequence[Interval] = ALWAYS,
    teams: Collection[int] | None = None,
) -> list[DeviceRow]:
    params = {"after": after, "ids": _ids(ids), "patients": _ids(patient_ids),
              "updated": _multirange(updated), "teams": _ids(teams), "limit": limit}  # fmt: skip
    return await _rows(conn, DeviceRow, _DEVICES, params)


async def alerts(
    conn: Connection,
    *,
    after: int = 0,
    limit: int,
    open_only: bool,
    ids: Collection[int] | None = None,
    patient_ids: Collection[int] | None = None,
    updated: Sequence[Interval] = ALWAYS,
    teams: Collection[int] | None = None,
) -> list[AlertRow]:
    params = {"after": after, "ids": _ids(ids), "open": open_only, "patients": _ids(patient_ids),
              "updated": _multirange(updated), "teams": _ids(teams), "limit": limit}  # fmt: skip
    return await _rows(conn, AlertRow, _ALERTS, params)
