"""The EHR push's SQL: the FHIR servers to push to, and the outbox of readings for each.

A row per reading per active server is written in the ingest transaction that stores
the reading (`enqueue`), so that it is as durable as the reading. Pushers claim due rows
with SKIP LOCKED, taking a lease (`next_attempt_at` moved past the send), and record each
answer; a row never leaves the table unanswered: `sent`, `pending` again with a later
time and the reason, or `dead` with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

from rpm.ehr.bundle import PushItem
from rpm.fhir.observations import Measurement

Connection = AsyncConnection[TupleRow]


class EhrError(Exception):
    """A change to the EHR feeds that cannot be made, with a message saying why."""


class EndpointNotFound(EhrError):
    pass


class EndpointConflict(EhrError):
    pass


@dataclass(frozen=True)
class NewEndpoint:
    name: str
    base_url: str
    patient_identifier_system: str
    bearer_token: str | None = None


@dataclass(frozen=True)
class Endpoint:
    id: int
    name: str
    base_url: str
    patient_identifier_system: str
    bearer_token: str | None
    active: bool
    created_at: datetime
    pending: int
    sent: int
    dead: int
    oldest_pending_at: datetime | None


@dataclass(frozen=True)
class Push:
    """An outbox row as admins see it."""

    id: int
    endpoint_id: int
    device_id: int
    kind: str
    measured_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    enqueued_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class Claimed:
    """A claimed row: which server, how many tries so far (this one included), and its
    reading (None: no longer stored, a retention policy having dropped it)."""

    endpoint_id: int
    attempts: int
    push_id: int
    item: PushItem | None


_ENDPOINTS = """
SELECT e.id, e.name, e.base_url, e.patient_identifier_system, e.bearer_token, e.active,
       e.created_at,
       count(*) FILTER (WHERE p.status = 'pending') AS pending,
       count(*) FILTER (WHERE p.status = 'sent') AS sent,
       count(*) FILTER (WHERE p.status = 'dead') AS dead,
       min(p.enqueued_at) FILTER (WHERE p.status = 'pending') AS oldest_pending_at
FROM ehr_endpoint e LEFT JOIN ehr_push p ON p.endpoint_id = e.id
WHERE %(id)s::bigint IS NULL OR e.id = %(id)s
GROUP BY e.id ORDER BY e.id
"""

# Binary parameters (%b), as for the rule engine's queue: the ingest batch's arrays.
_ENQUEUE = """
INSERT INTO ehr_push (endpoint_id, device_id, kind, measured_at)
SELECT e.id, k.device_id, k.kind, k.measured_at
FROM ehr_endpoint e
CROSS JOIN unnest(%b::bigint[], %b::text[], %b::timestamptz[]) AS k (device_id, kind, measured_at)
WHERE e.active
ON CONFLICT DO NOTHING
"""

_BACKFILL = """
INSERT INTO ehr_push (endpoint_id, device_id, kind, measured_at)
SELECT %s, device_id, kind, measured_at FROM reading
WHERE statistic IS NULL AND measured_at >= %s
ON CONFLICT DO NOTHING
"""

# Due rows of active servers, oldest first; the lease is taken in the same statement.
_CLAIM = """
WITH claimed AS (
    UPDATE ehr_push SET attempts = attempts + 1,
                        next_attempt_at = now() + make_interval(secs => %(lease_s)s)
    WHERE id IN (SELECT p.id FROM ehr_push p JOIN ehr_endpoint e ON e.id = p.endpoint_id
                 WHERE p.status = 'pending' AND p.next_attempt_at <= now() AND e.active
                 ORDER BY p.next_attempt_at, p.id
                 LIMIT %(limit)s FOR UPDATE OF p SKIP LOCKED)
    RETURNING id, endpoint_id, attempts, device_id, kind, measured_at
)
SELECT c.id, c.endpoint_id, c.attempts, r.patient_id, c.device_id, d.serial, c.kind,
       c.measured_at, r.measured_utc_offset_min, r.received_at, r.systolic_mmhg,
       r.diastolic_mmhg, r.pulse_bpm, r.weight_kg, r.glucose_mg_dl, r.meal_context,
       pt.external_ref
FROM claimed c
JOIN device d ON d.id = c.device_id
LEFT JOIN reading r
       ON (r.device_id, r.kind, r.measured_at) = (c.device_id, c.kind, c.measured_at)
LEFT JOIN patient pt ON pt.id = r.patient_id
ORDER BY c.endpoint_id, c.id
"""

_SENT = """
UPDATE ehr_push SET status = 'sent', sent_at = now(), last_error = NULL
WHERE id = ANY(%s) AND status = 'pending'
"""

_RETRY_LATER = """
UPDATE ehr_push SET next_attempt_at = now() + make_interval(secs => %s), last_error = %s
WHERE id = ANY(%s) AND status = 'pending'
"""

_DEAD = "UPDATE ehr_push SET status = 'dead', last_error = %s WHERE id = ANY(%s)"

_PUSHES = """
SELECT id, endpoint_id, device_id, kind, measured_at, status, attempts, next_attempt_at,
       last_error, enqueued_at, sent_at
FROM ehr_push
WHERE (%(endpoint)s::bigint IS NULL OR endpoint_id = %(endpoint)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(before)s::bigint IS NULL OR id < %(before)s)
ORDER BY id DESC LIMIT %(limit)s
"""

_REVIVE = """
UPDATE ehr_push SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL
WHERE status = 'dead' AND (id = ANY(%(ids)s) OR endpoint_id = %(endpoint)s)
RETURNING id
"""

_PRUNE_SENT = """
DELETE FROM ehr_push WHERE status = 'sent' AND sent_at < now() - make_interval(days => %s)
"""


async def add_endpoint(
    conn: Connection, endpoint: NewEndpoint, backfill_since: datetime | None = None
) -> tuple[int, int]:
    """The new server's id, and how many stored readings were queued for it (those
    measured since `backfill_since`; none without it)."""
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO ehr_endpoint (name, base_url, patient_identifier_system,"
                " bearer_token) VALUES (%s, %s, %s, %s) RETURNING id",
                [
                    endpoint.name,
                    endpoint.base_url,
                    endpoint.patient_identifier_system,
                    endpoint.bearer_token,
                ],
            )
            (endpoint_id,) = await cursor.fetchone()  # type: ignore[misc]
            queued = 0
            if backfill_since is not None:
                queued = (await conn.execute(_BACKFILL, [endpoint_id, backfill_since])).rowcount
    except psycopg.errors.UniqueViolation:
        raise EndpointConflict(f"an EHR endpoint named {endpoint.name!r} exists already") from None
    return endpoint_id, queued


async def endpoints(conn: Connection, endpoint_id: int | None = None) -> list[Endpoint]:
    async with conn.cursor(row_factory=class_row(Endpoint)) as cursor:
        await cursor.execute(_ENDPOINTS, {"id": endpoint_id})
        return await cursor.fetchall()


async def endpoint(conn: Connection, endpoint_id: int) -> Endpoint:
    found = await endpoints(conn, endpoint_id)
    if not found:
        raise EndpointNotFound(f"no EHR endpoint with id {endpoint_id}")
    return found[0]


async def change(
    conn: Connection, endpoint_id: int, active: bool | None, bearer_token: str | None
) -> Endpoint:
    """Pause or resume a server's feed (paused, its readings still queue: nothing is
    lost, none is sent until it is resumed), or renew its token; None leaves it be."""
    await conn.execute(
        "UPDATE ehr_endpoint SET active = coalesce(%s, active),"
        " bearer_token = coalesce(%s, bearer_token) WHERE id = %s",
        [active, bearer_token, endpoint_id],
    )
    return await endpoint(conn, endpoint_id)


async def any_active(conn: Connection) -> bool:
    """Whether any server is fed: without one, the ingest builds and sends no arrays."""
    cursor = await conn.execute("SELECT EXISTS (SELECT FROM ehr_endpoint WHERE active)")
    row = await cursor.fetchone()
    return bool(row and row[0])


async def enqueue(
    conn: Connection,
    device_ids: Sequence[int],
    kinds: Sequence[str],
    measured_ats: Sequence[datetime],
) -> int:
    """Queue these stored readings for every active server; in the ingest transaction."""
    cursor = await conn.execute(_ENQUEUE, [list(device_ids), list(kinds), list(measured_ats)])
    return cursor.rowcount


async def claim(conn: Connection, limit: int, lease_s: float) -> list[Claimed]:
    cursor = await conn.execute(_CLAIM, {"limit": limit, "lease_s": lease_s})
    claimed = []
    for row in await cursor.fetchall():
        push_id, endpoint_id, attempts, patient_id, *reading, external_ref = row
        item = None
        if patient_id is not None:
            measurement = Measurement(patient_id, *reading)
            item = PushItem(push_id, measurement, external_ref)
        claimed.append(Claimed(endpoint_id, attempts, push_id, item))
    return claimed


async def mark_sent(conn: Connection, push_ids: Sequence[int]) -> None:
    await conn.execute(_SENT, [list(push_ids)])


async def retry_later(
    conn: Connection, push_ids: Sequence[int], delay_s: float, reason: str
) -> None:
    await conn.execute(_RETRY_LATER, [delay_s, reason, list(push_ids)])


async def mark_dead(conn: Connection, push_ids: Sequence[int], reason: str) -> None:
    await conn.execute(_DEAD, [reason, list(push_ids)])


async def pushes(
    conn: Connection,
    endpoint_id: int | None,
    status: str | None,
    before_id: int | None,
    limit: int,
) -> list[Push]:
    """A page of outbox rows, newest first."""
    async with conn.cursor(row_factory=class_row(Push)) as cursor:
        await cursor.execute(
            _PUSHES,
            {"endpoint": endpoint_id, "status": status, "before": before_id, "limit": limit},
        )
        return await cursor.fetchall()


async def revive(conn: Connection, push_ids: Sequence[int], endpoint_id: int | None) -> list[int]:
    """Dead rows (these, or all of a server's) due again at once, their count reset."""
    cursor = await conn.execute(_REVIVE, {"ids": list(push_ids), "endpoint": endpoint_id})
    return [push_id for (push_id,) in await cursor.fetchall()]


async def prune_sent(conn: Connection, older_than_days: int) -> int:
    return (await conn.execute(_PRUNE_SENT, [older_than_days])).rowcount
