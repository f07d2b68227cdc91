"""The alert SQL the rule engine needs: what is open, and raising or updating alerts.

One open (or acknowledged) alert per patient and rule is the database's to guarantee
(`alert_one_open_idx`): writes are `INSERT ... ON CONFLICT ... DO UPDATE`, so two workers
evaluating the same patient at once end with one alert, updated twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

from rpm.rules.policy import AlertWrite, LatestAlert

Connection = AsyncConnection[TupleRow]


@dataclass(frozen=True)
class AlertChange:
    """What a write did: opened an alert, or updated the open one (raising its severity?)."""

    alert_id: int
    patient_id: int
    rule_id: str
    severity: str
    opened: bool
    severity_raised: bool


@dataclass(frozen=True)
class AlertRecord:
    id: int
    patient_id: int
    rule_id: str
    plan_version: int
    severity: str
    status: str
    message: str
    latest_message: str
    occurrences: int
    first_triggered_at: datetime
    last_triggered_at: datetime
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class TriggerReading:
    """A reading that fired the alert's rule, with its values in canonical units."""

    device_id: int
    kind: str
    measured_at: datetime
    systolic_mmhg: float | None
    diastolic_mmhg: float | None
    pulse_bpm: float | None
    weight_kg: float | None
    glucose_mg_dl: float | None
    meal_context: str | None


class AlertNotFound(Exception):
    pass


_UPSERT = """
INSERT INTO alert AS a (patient_id, rule_id, plan_version, severity, message, latest_message,
                        first_triggered_at, last_triggered_at, occurrences)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::integer[], %s::text[], %s::text[],
                     %s::text[], %s::timestamptz[], %s::timestamptz[], %s::integer[])
ON CONFLICT (patient_id, rule_id) WHERE status <> 'resolved' DO UPDATE SET
    severity = CASE WHEN severity_rank(EXCLUDED.severity) > a.severity_rank
                    THEN EXCLUDED.severity ELSE a.severity END,
    message = CASE WHEN severity_rank(EXCLUDED.severity) > a.severity_rank
                     OR (severity_rank(EXCLUDED.severity) = a.severity_rank
                         AND EXCLUDED.last_triggered_at >= a.last_triggered_at)
                   THEN EXCLUDED.message ELSE a.message END,
    latest_message = CASE WHEN EXCLUDED.last_triggered_at >= a.last_triggered_at
                          THEN EXCLUDED.latest_message ELSE a.latest_message END,
    first_triggered_at = least(a.first_triggered_at, EXCLUDED.first_triggered_at),
    last_triggered_at = greatest(a.last_triggered_at, EXCLUDED.last_triggered_at),
    severity_raised_at = CASE WHEN severity_rank(EXCLUDED.severity) > a.severity_rank
                              THEN now() ELSE a.severity_raised_at END,
    updated_at = now()
RETURNING a.id, a.patient_id, a.rule_id, a.severity, a.xmax = 0,
          a.severity_raised_at IS NOT DISTINCT FROM now() AND a.xmax <> 0
"""

# A retried evaluation finds its readings already counted: ON CONFLICT DO NOTHING.
_TRIGGERS = """
WITH added AS (
    INSERT INTO alert_trigger (alert_id, device_id, kind, measured_at)
    SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING alert_id
)
UPDATE alert SET occurrences = alert.occurrences + added_per_alert.n
FROM (SELECT alert_id, count(*) AS n FROM added GROUP BY alert_id) AS added_per_alert
WHERE alert.id = added_per_alert.alert_id
"""

_LATEST = """
SELECT DISTINCT ON (patient_id, rule_id)
       patient_id, rule_id, id, status = 'resolved', last_triggered_at
FROM alert
WHERE patient_id = ANY(%s)
ORDER BY patient_id, rule_id, id DESC
"""


async def latest_alerts(
    conn: Connection, patient_ids: Iterable[int]
) -> dict[int, dict[str, LatestAlert]]:
    """Per patient, per rule: the most recent alert."""
    cursor = await conn.execute(_LATEST, [list(patient_ids)])
    latest: dict[int, dict[str, LatestAlert]] = {}
    for patient_id, rule_id, alert_id, resolved, last_triggered_at in await cursor.fetchall():
        latest.setdefault(patient_id, {})[rule_id] = LatestAlert(
            alert_id, resolved, last_triggered_at
        )
    return latest


async def write(conn: Connection, writes: Sequence[AlertWrite]) -> list[AlertChange]:
    """Open or update one alert per write, in (patient, rule) order so that concurrent
    writers lock rows in the same order and cannot deadlock; the caller's transaction."""
    if not writes:
        return []
    ordered = sorted(writes, key=lambda w: (w.patient_id, w.rule_id))
    cursor = await conn.execute(
        _UPSERT,
        [
            [w.patient_id for w in ordered],
            [w.rule_id for w in ordered],
            [w.plan_version for w in ordered],
            [w.severity.value for w in ordered],
            [w.message for w in ordered],
            [w.latest_message for w in ordered],
            [w.first_triggered_at for w in ordered],
            [w.last_triggered_at for w in ordered],
            # A missed-reading alert has no readings to count: it is one occurrence.
            [0 if w.triggers else 1 for w in ordered],
        ],
    )
    changes = [AlertChange(*row) for row in await cursor.fetchall()]
    alert_of = {(c.patient_id, c.rule_id): c.alert_id for c in changes}
    triggers = [(alert_of[w.patient_id, w.rule_id], key) for w in ordered for key in w.triggers]
    if triggers:
        await conn.execute(
            _TRIGGERS,
            [
                [alert_id for alert_id, _ in triggers],
                [key.device_id for _, key in triggers],
                [key.kind for _, key in triggers],
                [key.measured_at for _, key in triggers],
            ],
        )
    return changes


_SELECT = (
    "SELECT id, patient_id, rule_id, plan_version, severity, status, message, latest_message,"
    " occurrences, first_triggered_at, last_triggered_at, opened_at, updated_at, resolved_at"
    " FROM alert"
)


async def for_patient(
    conn: Connection, patient_id: int, include_resolved: bool = False, limit: int = 100
) -> list[AlertRecord]:
    async with conn.cursor(row_factory=class_row(AlertRecord)) as cursor:
        await cursor.execute(
            _SELECT + " WHERE patient_id = %s AND (%s OR status <> 'resolved')"
            " ORDER BY severity_rank DESC, opened_at LIMIT %s",
            [patient_id, include_resolved, limit],
        )
        return await cursor.fetchall()


async def unresolved(conn: Connection, limit: int = 100) -> list[AlertRecord]:
    """Open and acknowledged alerts, most severe first, then oldest first."""
    async with conn.cursor(row_factory=class_row(AlertRecord)) as cursor:
        await cursor.execute(
            _SELECT + " WHERE status <> 'resolved' ORDER BY severity_rank DESC, opened_at, id"
            " LIMIT %s",
            [limit],
        )
        return await cursor.fetchall()


async def get(conn: Connection, alert_id: int) -> AlertRecord:
    async with conn.cursor(row_factory=class_row(AlertRecord)) as cursor:
        await cursor.execute(_SELECT + " WHERE id = %s", [alert_id])
        record = await cursor.fetchone()
    if record is None:
        raise AlertNotFound(f"no alert with id {alert_id}")
    return record


async def triggers(conn: Connection, alert_id: int) -> list[TriggerReading]:
    """The readings that fired the alert's rule, oldest first."""
    async with conn.cursor(row_factory=class_row(TriggerReading)) as cursor:
        await cursor.execute(
            "SELECT r.device_id, r.kind, r.measured_at, r.systolic_mmhg, r.diastolic_mmhg,"
            " r.pulse_bpm, r.weight_kg, r.glucose_mg_dl, r.meal_context"
            " FROM alert_trigger t JOIN reading r ON r.device_id = t.device_id"
            " AND r.kind = t.kind AND r.measured_at = t.measured_at"
            " WHERE t.alert_id = %s ORDER BY t.measured_at",
            [alert_id],
        )
        return await cursor.fetchall()
