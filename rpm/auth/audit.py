"""The audit trail: who read or changed what, of which patient, when, from where.

One row per patient touched: a worklist page of 50 alerts over 30 patients is 30 rows,
so that "who looked at this patient" is one indexed query. The table is append-only
(migration 0007): nothing here or elsewhere can change or delete a row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row
from psycopg.types.json import Jsonb

Connection = AsyncConnection[TupleRow]


@dataclass(frozen=True)
class Context:
    """The request an audit row comes from."""

    user_id: int | None
    username: str
    role: str | None
    method: str
    path: str
    client_ip: str | None


async def record(
    conn: Connection,
    context: Context,
    action: str,
    resource: str,
    resource_id: str | None = None,
    patient_ids: Iterable[int | None] = (None,),
    status: int = 200,
    details: dict[str, Any] | None = None,
) -> None:
    """Rows for the patients touched (None: the action touched no patient's data)."""
    patients: list[int | None] = [*sorted({p for p in patient_ids if p is not None})] or [None]
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO audit_event (user_id, username, role, action, resource, resource_id,"
            " patient_id, method, path, status, client_ip, details)"
            " SELECT %s, %s, %s, %s, %s, %s, p, %s, %s, %s, %s, %s"
            " FROM unnest(%s::bigint[]) AS p",
            [
                context.user_id,
                context.username,
                context.role,
                action,
                resource,
                resource_id,
                context.method,
                context.path,
                status,
                context.client_ip,
                Jsonb(details or {}),
                patients,
            ],
        )


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    user_id: int | None
    username: str
    role: str | None
    action: str
    resource: str
    resource_id: str | None
    patient_id: int | None
    method: str | None
    path: str | None
    status: int | None
    client_ip: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class AuditFilter:
    patient_id: int | None = None
    username: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def query(
    conn: Connection, where: AuditFilter, before_id: int | None, limit: int
) -> list[AuditRecord]:
    """Newest first; `before_id` pages back."""
    async with conn.cursor(row_factory=class_row(AuditRecord)) as cursor:
        await cursor.execute(
            "SELECT id, at, user_id, username, role, action, resource, resource_id,"
            " patient_id, method, path, status, host(client_ip) AS client_ip, details"
            " FROM audit_event"
            " WHERE (%(patient)s::bigint IS NULL OR patient_id = %(patient)s)"
            " AND (%(username)s::text IS NULL OR username = %(username)s)"
            " AND (%(action)s::text IS NULL OR action = %(action)s)"
            " AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)"
            " AND (%(until)s::timestamptz IS NULL OR at < %(until)s)"
            " AND (%(before)s::bigint IS NULL OR id < %(before)s)"
            " ORDER BY id DESC LIMIT %(limit)s",
            {
                "patient": where.patient_id,
                "username": where.username,
                "action": where.action,
                "since": where.since,
                "until": where.until,
                "before": before_id,
                "limit": limit,
            },
        )
        return await cursor.fetchall()
