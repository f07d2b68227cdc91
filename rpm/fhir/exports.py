"""Bulk Data export jobs and their NDJSON files: the SQL, in one place (migration 0015)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row
from psycopg.types.json import Jsonb

from rpm.fhir.bulk import TYPES, OutputFile

Connection = AsyncConnection[TupleRow]


@dataclass(frozen=True)
class ExportJob:
    id: uuid.UUID
    owner: str
    request: str
    group_id: int | None
    patient_ids: list[int]
    types: list[str]
    since: datetime | None
    transaction_time: datetime
    status: str
    progress: dict[str, Any]
    error: str | None
    expires_at: datetime | None


_JOB = (
    "SELECT id, owner, request, group_id, patient_ids, types, since, transaction_time, status,"
    " progress, error, expires_at FROM bulk_export"
)


async def create(
    conn: Connection,
    owner: str,
    request: str,
    group_id: int | None,
    patient_ids: Sequence[int],
    types: Sequence[str],
    since: datetime | None,
) -> ExportJob:
    async with conn.cursor(row_factory=class_row(ExportJob)) as cursor:
        await cursor.execute(
            "INSERT INTO bulk_export (owner, request, group_id, patient_ids, types, since)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id, owner, request, group_id,"
            " patient_ids, types, since, transaction_time, status, progress, error, expires_at",
            [owner, request, group_id, sorted(patient_ids), list(types), since],
        )
        job = await cursor.fetchone()
    assert job is not None
    return job


async def get(conn: Connection, export_id: uuid.UUID, owner: str) -> ExportJob | None:
    """The owner's job, unless it has expired (its files then are as good as gone)."""
    async with conn.cursor(row_factory=class_row(ExportJob)) as cursor:
        await cursor.execute(
            _JOB + " WHERE id = %s AND owner = %s AND (expires_at IS NULL OR expires_at > now())",
            [export_id, owner],
        )
        return await cursor.fetchone()


async def delete(conn: Connection, export_id: uuid.UUID, owner: str) -> bool:
    """Cancel or discard the owner's job, its files with it; False: no such job."""
    cursor = await conn.execute(
        "DELETE FROM bulk_export WHERE id = %s AND owner = %s", [export_id, owner]
    )
    return cursor.rowcount > 0


async def files(conn: Connection, export_id: uuid.UUID) -> list[OutputFile]:
    async with conn.cursor(row_factory=class_row(OutputFile)) as cursor:
        await cursor.execute(
            "SELECT type, seq, count FROM bulk_export_file WHERE export_id = %s"
            " ORDER BY array_position(%s::text[], type), seq",
            [export_id, list(TYPES)],
        )
        return await cursor.fetchall()


@dataclass(frozen=True)
class FileBody:
    patient_ids: list[int]
    body: str


async def file(
    conn: Connection, export_id: uuid.UUID, owner: str, resource_type: str, seq: int
) -> FileBody | None:
    """A file of the owner's complete job, unless expired."""
    async with conn.cursor(row_factory=class_row(FileBody)) as cursor:
        await cursor.execute(
            "SELECT f.patient_ids, f.body FROM bulk_export_file f"
            " JOIN bulk_export e ON e.id = f.export_id"
            " WHERE f.export_id = %s AND e.owner = %s AND f.type = %s AND f.seq = %s"
            " AND e.status = 'complete' AND e.expires_at > now()",
            [export_id, owner, resource_type, seq],
        )
        return await cursor.fetchone()


# The exporters' side.


@dataclass(frozen=True)
class Claimed:
    job: ExportJob
    claim: uuid.UUID


async def claim(conn: Connection, lease_s: float) -> Claimed | None:
    """The oldest pending job nobody holds (never held, or its lease run out: its exporter
    died), with a lease and a claim token of this exporter's own."""
    token = uuid.uuid4()
    async with conn.transaction(), conn.cursor(row_factory=class_row(ExportJob)) as cursor:
        await cursor.execute(
            "UPDATE bulk_export SET claim = %s, lease_until = now() + make_interval(secs => %s)"
            " WHERE id = (SELECT id FROM bulk_export WHERE status = 'pending'"
            "  AND (lease_until IS NULL OR lease_until < now())"
            "  ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
            " RETURNING id, owner, request, group_id, patient_ids, types, since,"
            " transaction_time, status, progress, error, expires_at",
            [token, lease_s],
        )
        job = await cursor.fetchone()
    return None if job is None else Claimed(job, token)


async def held_progress(conn: Connection, held: Claimed) -> dict[str, Any] | None:
    """Within the caller's transaction: the job's progress, its row locked, if this
    exporter still holds it (None: cancelled, or taken up by another after the lease)."""
    cursor = await conn.execute(
        "SELECT progress FROM bulk_export WHERE id = %s AND claim = %s AND status = 'pending'"
        " FOR UPDATE",
        [held.job.id, held.claim],
    )
    row = await cursor.fetchone()
    return None if row is None else dict(row[0])


async def add_file(
    conn: Connection,
    export_id: uuid.UUID,
    resource_type: str,
    seq: int,
    count: int,
    patient_ids: Sequence[int],
    body: str,
) -> None:
    await conn.execute(
        "INSERT INTO bulk_export_file (export_id, type, seq, count, patient_ids, body)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        [export_id, resource_type, seq, count, sorted(set(patient_ids)), body],
    )


async def advance(
    conn: Connection, held: Claimed, progress: dict[str, Any], lease_s: float
) -> None:
    """The progress past the file just added, and the lease renewed."""
    await conn.execute(
        "UPDATE bulk_export SET progress = %s, lease_until = now() + make_interval(secs => %s)"
        " WHERE id = %s",
        [Jsonb(progress), lease_s, held.job.id],
    )


async def complete(conn: Connection, held: Claimed, expiry_hours: int) -> None:
    await conn.execute(
        "UPDATE bulk_export SET status = 'complete', completed_at = now(), claim = NULL,"
        " lease_until = NULL, expires_at = now() + make_interval(hours => %s)"
        " WHERE id = %s AND claim = %s",
        [expiry_hours, held.job.id, held.claim],
    )


async def fail(conn: Connection, held: Claimed, error: str, expiry_hours: int) -> None:
    await conn.execute(
        "UPDATE bulk_export SET status = 'failed', error = %s, completed_at = now(),"
        " claim = NULL, lease_until = NULL, expires_at = now() + make_interval(hours => %s)"
        " WHERE id = %s AND claim = %s",
        [error, expiry_hours, held.job.id, held.claim],
    )


async def prune(conn: Connection) -> int:
    """Delete the exports past their expiry, their files with them."""
    cursor = await conn.execute("DELETE FROM bulk_export WHERE expires_at <= now()")
    return cursor.rowcount
