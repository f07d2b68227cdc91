"""The audit trail, for admins: read-only, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from rpm.api import problems
from rpm.api.deps import Conn, PageLimit, ReadsAudit
from rpm.api.values import Instant
from rpm.auth import audit
from rpm.auth.audit import AuditFilter, AuditRecord

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=problems.errors())


class AuditPage(BaseModel):
    events: list[AuditRecord]
    # Pass as `before` for the next (older) page; null: no more.
    next: int | None


@router.get("", summary="Who read or changed what, of which patient, when, from where")
async def audit_events(
    conn: Conn,
    admin: ReadsAudit,
    patient_id: int | None = None,
    username: str | None = None,
    action: str | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    before: Annotated[int | None, Query(ge=1, description="The previous page's next")] = None,
    limit: PageLimit = 100,
) -> AuditPage:
    where = AuditFilter(patient_id, username, action, since, until)
    events = await audit.query(conn, where, before, limit + 1)
    more = len(events) > limit
    events = events[:limit]
    return AuditPage(events=events, next=events[-1].id if more else None)
