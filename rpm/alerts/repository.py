"""The alert SQL the rule engine needs: what is open, and raising or updating alerts.

One open (or acknowledged) alert per patient and rule is the database's to guarantee
(`alert_one_open_idx`): writes are `INSERT ... ON CONFLICT ... DO UPDATE`, so two workers
evaluating the same patient at once end with one alert, updated twice.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row
from psycopg.types.json import Jsonb

from rpm.alerts.feedback import OutcomeCount
from rpm.alerts.lifecycle import AlertState, Event, Outcome, Status
from rpm.rules.policy import AlertWrite, LatestAlert

Connection = AsyncConnection[TupleRow]

# `save_transition`: leave the alert's next escalation time as it is.
KEEP = object()


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
    assigned_to: int | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_by: str | None
    outcome: str | None
    resolution_note: str | None
    escalation_tier: int
    # An SMS about it that Twilio refused or could not deliver: the worklist flags it, and
    # the alert's detail says why.
    sms_failed: bool = False


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


async def outcome_counts(conn: Connection, patient_id: int, since: datetime) -> list[OutcomeCount]:
    """The patient's alerts resolved since then, counted per rule and outcome."""
    cursor = await conn.execute(
        "SELECT rule_id, outcome, count(*) FROM alert WHERE patient_id = %s"
        " AND status = 'resolved' AND resolved_at >= %s GROUP BY rule_id, outcome",
        [patient_id, since],
    )
    return [
        OutcomeCount(rule_id, Outcome(outcome), int(n))
        for rule_id, outcome, n in await cursor.fetchall()
    ]


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
    await _log_rule_events(conn, changes)
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


async def _log_rule_events(conn: Connection, changes: Sequence[AlertChange]) -> None:
    """The rule engine's part of each alert's history: its opening and severity raises
    (a recurrence that only counts a reading is not an event)."""
    logged = [c for c in changes if c.opened or c.severity_raised]
    if logged:
        await conn.execute(
            "INSERT INTO alert_event (alert_id, actor, action, from_status, to_status, details)"
            " SELECT a.id, 'system:rules', e.action, e.from_status, a.status,"
            "        jsonb_build_object('severity', a.severity)"
            " FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS e(alert_id, action, from_status)"
            " JOIN alert a ON a.id = e.alert_id",
            [
                [c.alert_id for c in logged],
                ["opened" if c.opened else "severity_raised" for c in logged],
                [None if c.opened else "open" for c in logged],
            ],
        )


_SELECT = (
    "SELECT a.id, a.patient_id, a.rule_id, a.plan_version, a.severity, a.status, a.message,"
    " a.latest_message, a.occurrences, a.first_triggered_at, a.last_triggered_at, a.opened_at,"
    " a.updated_at, a.resolved_at, a.assigned_to, a.acknowledged_at, a.acknowledged_by,"
    " a.resolved_by, a.outcome, a.resolution_note, a.escalation_tier"
    " FROM alert a"
)


async def _alerts(conn: Connection, query: str, params: Sequence[object]) -> list[AlertRecord]:
    """The alerts a query of `_SELECT` finds, with their failed SMS flagged. A query of its
    own: a subquery beside the worklist's changed the plan of its pages."""
    async with conn.cursor(row_factory=class_row(AlertRecord)) as cursor:
        await cursor.execute(query, params)
        records = await cursor.fetchall()
    if not records:
        return records
    failures = await conn.execute(
        "SELECT DISTINCT alert_id FROM notification"
        " WHERE alert_id = ANY(%s) AND status IN ('failed', 'undelivered')",
        [[r.id for r in records]],
    )
    failed = {row[0] for row in await failures.fetchall()}
    return [replace(r, sms_failed=True) if r.id in failed else r for r in records]


async def for_patient(
    conn: Connection,
    patient_id: int,
    include_resolved: bool = False,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AlertRecord]:
    """The patient's history: newest first, in the order rpm raised them (by id, which
    also pages it: `before_id`, the last id of the previous page)."""
    return await _alerts(
        conn,
        _SELECT + " WHERE a.patient_id = %s AND (%s OR a.status <> 'resolved')"
        " AND (%s::bigint IS NULL OR a.id < %s) ORDER BY a.id DESC LIMIT %s",
        [patient_id, include_resolved, before_id, before_id, limit],
    )


async def unresolved_for_patients(
    conn: Connection, patient_ids: Collection[int]
) -> dict[int, list[AlertRecord]]:
    """Each of these patients' open and acknowledged alerts, most severe first."""
    records = await _alerts(
        conn,
        _SELECT + " WHERE a.patient_id = ANY(%s) AND a.status <> 'resolved'"
        " ORDER BY a.severity_rank DESC, a.opened_at, a.id",
        [list(patient_ids)],
    )
    found: dict[int, list[AlertRecord]] = {}
    for record in records:
        found.setdefault(record.patient_id, []).append(record)
    return found


@dataclass(frozen=True)
class WorklistFilter:
    # The care teams whose patients' alerts to list; None: every patient's.
    care_team_ids: tuple[int, ...] | None = None
    assigned_to: int | None = None
    patient_id: int | None = None
    severities: tuple[str, ...] = ()
    # Open and acknowledged (the default), or one of them.
    status: str | None = None


@dataclass(frozen=True)
class WorklistCursor:
    """Where a page ended: the next page starts after this alert, in worklist order."""

    severity_rank: int
    opened_at: datetime
    id: int


async def worklist(
    conn: Connection,
    where: WorklistFilter,
    after: WorklistCursor | None = None,
    limit: int = 50,
) -> list[AlertRecord]:
    """Unresolved alerts, most severe first, then oldest first: a page of them.

    Keyset paging on (severity rank, opened at, id), which `alert_worklist_idx` serves in
    order as ranges, so a page costs the same however deep it is and however many alerts
    wait; `alert_assignee_worklist_idx` does the same for one assignee's alerts.
    """
    conditions = ["a.status <> 'resolved'"]
    params: list[object] = []
    if where.status is not None:
        conditions.append("a.status = %s")
        params.append(where.status)
    if where.care_team_ids is not None:
        conditions.append(
            "a.patient_id IN (SELECT id FROM patient WHERE care_team_id = ANY(%s::bigint[]))"
        )
        params.append(list(where.care_team_ids))
    if where.assigned_to is not None:
        conditions.append("a.assigned_to = %s")
        params.append(where.assigned_to)
    if where.patient_id is not None:
        conditions.append("a.patient_id = %s")
        params.append(where.patient_id)
    if where.severities:
        # On the rank, the index's first column, the filter is a range of the index; on
        # the text it was a filter, and the scan walked past every more severe alert.
        conditions.append(
            "a.severity_rank = ANY(ARRAY(SELECT severity_rank(s) FROM unnest(%s::text[]) s))"
        )
        params.append(list(where.severities))
    filtered = _SELECT + " WHERE " + " AND ".join(conditions)
    if after is None:
        query = filtered + " ORDER BY a.severity_rank DESC, a.opened_at, a.id LIMIT %s"
        arguments = [*params, limit]
    else:
        # Descending rank, then ascending time and id: no one row comparison says that,
        # and an OR of two is no range to the index, whose scan then started at the top
        # of the list on every page (37 ms at 56,000 deep; docs/benchmarks.md). So two
        # ranges: the rest of the cursor's rank, then the ranks below it.
        query = (
            "SELECT * FROM (("  # noqa: S608 (constants and placeholders only)
            + filtered
            + " AND a.severity_rank = %s AND (a.opened_at, a.id) > (%s, %s)"
            " ORDER BY a.opened_at, a.id LIMIT %s) UNION ALL ("
            + filtered
            + " AND a.severity_rank < %s"
            " ORDER BY a.severity_rank DESC, a.opened_at, a.id LIMIT %s)) AS a"
            " ORDER BY severity_rank(a.severity) DESC, a.opened_at, a.id LIMIT %s"
        )
        rank = after.severity_rank
        arguments = [*params, rank, after.opened_at, after.id, limit]
        arguments += [*params, rank, limit, limit]
    return await _alerts(conn, query, arguments)


async def get(conn: Connection, alert_id: int) -> AlertRecord:
    records = await _alerts(conn, _SELECT + " WHERE a.id = %s", [alert_id])
    if not records:
        raise AlertNotFound(f"no alert with id {alert_id}")
    return records[0]


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


@dataclass(frozen=True)
class AlertEventRecord:
    id: int
    alert_id: int
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str
    reason: str
    details: dict[str, Any]


_STATE = (
    "SELECT id, status, assigned_to, acknowledged_by, acknowledged_at, resolved_by,"
    " resolved_at, outcome, resolution_note, escalation_tier"
)


def _state(row: tuple[Any, ...]) -> AlertState:
    return AlertState(
        id=row[0],
        status=Status(row[1]),
        assigned_to=row[2],
        acknowledged_by=row[3],
        acknowledged_at=row[4],
        resolved_by=row[5],
        resolved_at=row[6],
        outcome=Outcome(row[7]) if row[7] else None,
        resolution_note=row[8],
        escalation_tier=row[9],
    )


async def lock_state(conn: Connection, alert_id: int) -> AlertState:
    """The alert's lifecycle state, its row locked until the caller's transaction ends, so
    that two nurses acting at once take turns (the second sees the first's change)."""
    cursor = await conn.execute(_STATE + " FROM alert WHERE id = %s FOR UPDATE", [alert_id])
    row = await cursor.fetchone()
    if row is None:
        raise AlertNotFound(f"no alert with id {alert_id}")
    return _state(row)


@dataclass(frozen=True)
class EscalationDue:
    state: AlertState
    patient_id: int
    severity: str


async def lock_escalation_due(conn: Connection, now: datetime, limit: int) -> list[EscalationDue]:
    """Open alerts whose escalation time has come, locked until the caller's transaction
    ends. SKIP LOCKED: another process escalating, or a nurse acknowledging, holds the
    rest; once they commit, the row no longer matches (acknowledged, or a later time)."""
    cursor = await conn.execute(
        _STATE + ", patient_id, severity FROM alert"
        " WHERE status = 'open' AND escalate_at <= %s"
        " ORDER BY escalate_at LIMIT %s FOR UPDATE SKIP LOCKED",
        [now, limit],
    )
    return [EscalationDue(_state(row), row[10], row[11]) for row in await cursor.fetchall()]


async def reschedule_escalation(conn: Connection, alert_id: int, at: datetime | None) -> None:
    """Look at the alert again then, with nothing changed (nobody was on call to tell)."""
    await conn.execute("UPDATE alert SET escalate_at = %s WHERE id = %s", [at, alert_id])


async def save_transition(
    conn: Connection, state: AlertState, event: Event, actor: str, escalate_at: object = KEEP
) -> None:
    """Write the state `lifecycle.apply` returned and log its event; the caller's
    transaction, which holds the row lock of `lock_state`. `escalate_at`: when the
    escalation job looks at the alert next (None: never), or KEEP."""
    await conn.execute(
        "UPDATE alert SET status = %s, assigned_to = %s, acknowledged_by = %s,"
        " acknowledged_at = %s, resolved_by = %s, resolved_at = %s, outcome = %s,"
        " resolution_note = %s, escalation_tier = %s, updated_at = now(),"
        " escalate_at = CASE WHEN %s THEN escalate_at ELSE %s::timestamptz END"
        " WHERE id = %s",
        [
            state.status.value,
            state.assigned_to,
            state.acknowledged_by,
            state.acknowledged_at,
            state.resolved_by,
            state.resolved_at,
            state.outcome.value if state.outcome else None,
            state.resolution_note,
            state.escalation_tier,
            escalate_at is KEEP,
            None if escalate_at is KEEP else escalate_at,
            state.id,
        ],
    )
    await conn.execute(
        "INSERT INTO alert_event (alert_id, actor, action, from_status, to_status, reason,"
        " details) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [
            state.id,
            actor,
            event.action,
            event.from_status.value,
            event.to_status.value,
            event.reason,
            Jsonb(event.details),
        ],
    )


async def events(conn: Connection, alert_id: int) -> list[AlertEventRecord]:
    """The alert's history, oldest first."""
    async with conn.cursor(row_factory=class_row(AlertEventRecord)) as cursor:
        await cursor.execute(
            "SELECT id, alert_id, at, actor, action, from_status, to_status, reason, details"
            " FROM alert_event WHERE alert_id = %s ORDER BY id",
            [alert_id],
        )
        return await cursor.fetchall()


async def care_team_of(conn: Connection, alert_id: int) -> int | None:
    """The care team of the alert's patient, if it has one."""
    cursor = await conn.execute(
        "SELECT p.care_team_id FROM alert a JOIN patient p ON p.id = a.patient_id WHERE a.id = %s",
        [alert_id],
    )
    row = await cursor.fetchone()
    return None if row is None else row[0]
