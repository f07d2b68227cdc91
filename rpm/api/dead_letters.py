"""The dead letter over HTTP, for administrators: list, inspect, replay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rpm.api import problems
from rpm.api.deps import Audit, AuditTrail, Conn, Ingest, ManagesDeadLetters, PageLimit, RequestBody
from rpm.devices.model import Reason
from rpm.ingest import dead_letters
from rpm.ingest.dead_letters import DeadLetterFilter, DeadLetterMessage, DeadLetterRecord
from rpm.ingest.service import IngestService, ReplayOutcome

router = APIRouter(
    prefix="/api/v1/dead-letters",
    tags=["dead letters"],
    responses=problems.errors(
        {
            404: "No such dead letter",
            409: "The dead letter was already replayed",
        }
    ),
)

MAX_REPLAY = 1000


class ReplayRequest(RequestBody):
    """Either `ids`, or a filter (`reason`, `device_serial`) with a `limit`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"reason": "unknown_device", "device_serial": "BP-000123", "limit": 100},
                {"ids": [41, 42]},
            ]
        }
    )

    ids: list[int] = Field(default_factory=list, max_length=MAX_REPLAY)
    reason: Reason | None = None
    device_serial: str | None = None
    limit: int = Field(100, ge=1, le=MAX_REPLAY)

    @model_validator(mode="after")
    def _ids_or_filter(self) -> ReplayRequest:
        if self.ids and (self.reason or self.device_serial):
            raise ValueError("give either ids or a filter (reason, device_serial), not both")
        if not self.ids and not (self.reason or self.device_serial):
            raise ValueError(
                "give ids, or a reason or device_serial to replay all that match;"
                " replaying every dead letter at once is not offered"
            )
        return self


class ReplayResult(BaseModel):
    dead_letter_id: int
    stored: int
    duplicates: int
    new_dead_letter_id: int | None
    reason: str | None
    result: str

    @classmethod
    def of(cls, outcome: ReplayOutcome) -> ReplayResult:
        return cls(
            dead_letter_id=outcome.dead_letter_id,
            stored=outcome.stored,
            duplicates=outcome.duplicates,
            new_dead_letter_id=outcome.new_dead_letter_id,
            reason=outcome.reason,
            result=outcome.describe(),
        )


async def read_dead_letters(
    conn: AsyncConnection[TupleRow],
    record: AuditTrail,
    matching: DeadLetterFilter,
    include_replayed: bool,
    before_id: int | None,
    limit: int,
) -> list[DeadLetterRecord]:
    """A page of dead letters, newest first; audited, as their raw bytes may be someone's
    readings: for the API and the dead-letters page alike."""
    letters = await dead_letters.list_dead_letters(
        conn, matching, include_replayed=include_replayed, before_id=before_id, limit=limit
    )
    await record("read", "dead_letters", details={"ids": [d.id for d in letters]})
    return letters


async def inspect_dead_letter(
    conn: AsyncConnection[TupleRow], record: AuditTrail, dead_letter_id: int
) -> DeadLetterMessage:
    """One dead letter with its raw bytes, the read audited: for the API and the dead
    letters page alike."""
    message = await dead_letters.get(conn, dead_letter_id)
    # Its raw bytes may be a reading of someone's, whose device is not yet theirs.
    await record("read", "dead_letter", dead_letter_id)
    return message


async def replay_dead_letter(
    ingest: IngestService, record: AuditTrail, dead_letter_id: int
) -> ReplayOutcome:
    """One dead letter through the pipeline again, audited with its outcome: for the API
    and the dead letters page alike."""
    (outcome,) = await ingest.replay([dead_letter_id])
    await record("replay", "dead_letter", dead_letter_id, details={"result": outcome.describe()})
    return outcome


async def replay_dead_letters(
    ingest: IngestService,
    record: AuditTrail,
    ids: Sequence[int],
    matching: DeadLetterFilter,
    limit: int,
) -> list[ReplayOutcome]:
    """Dead letters by id, or (without ids) up to `limit` of those matching, through the
    pipeline again, audited naming each: for the API and the dead letters page alike."""
    outcomes = await ingest.replay(ids, matching, limit)
    await record("replay", "dead_letters", details={"ids": [o.dead_letter_id for o in outcomes]})
    return outcomes


@router.get("", summary="Dead letters, newest first")
async def list_dead_letters(
    conn: Conn,
    admin: ManagesDeadLetters,
    record: Audit,
    reason: Reason | None = None,
    device_serial: str | None = None,
    include_replayed: bool = False,
    # At most the id column's (bigint) largest.
    before_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Paging: the last id seen")
    ] = None,
    limit: PageLimit = 100,
) -> list[DeadLetterRecord]:
    return await read_dead_letters(
        conn, record, DeadLetterFilter(reason, device_serial), include_replayed, before_id, limit
    )


@router.get("/{dead_letter_id}", summary="One dead letter with its raw bytes")
async def inspect(
    conn: Conn, admin: ManagesDeadLetters, record: Audit, dead_letter_id: int
) -> DeadLetterMessage:
    return await inspect_dead_letter(conn, record, dead_letter_id)


@router.post(
    "/{dead_letter_id}/replay",
    summary="Feed one dead letter through the pipeline again",
)
async def replay_one(
    ingest: Ingest, admin: ManagesDeadLetters, record: Audit, dead_letter_id: int
) -> ReplayResult:
    return ReplayResult.of(await replay_dead_letter(ingest, record, dead_letter_id))


@router.post(
    "/replay",
    summary="Replay dead letters by id, or all that match a filter (e.g. after assigning)",
)
async def replay(
    ingest: Ingest, admin: ManagesDeadLetters, record: Audit, request: ReplayRequest
) -> list[ReplayResult]:
    matching = DeadLetterFilter(request.reason, request.device_serial)
    outcomes = await replay_dead_letters(ingest, record, request.ids, matching, request.limit)
    return [ReplayResult.of(outcome) for outcome in outcomes]
