"""A patient's readings over HTTP: pages of single readings, and a downsampled series
for charts."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import BaseModel

from rpm.api import problems
from rpm.api.deps import Audit, AuditTrail, Conn, PageLimit, ReadsPatients, patient_in_view
from rpm.api.values import Instant
from rpm.auth.access import Principal
from rpm.ingest import readings
from rpm.ingest.readings import ReadingCursor, StoredReading

router = APIRouter(
    prefix="/api/v1/patients/{patient_id}/readings",
    tags=["readings"],
    responses=problems.errors(
        {
            404: "No such patient",
        }
    ),
)


class Kind(StrEnum):
    BLOOD_PRESSURE = "blood_pressure"
    BODY_WEIGHT = "body_weight"
    BLOOD_GLUCOSE = "blood_glucose"
    HEART_RATE = "heart_rate"


class ReadingsPage(BaseModel):
    readings: list[StoredReading]
    # Pass as `after` for the next (older) page; null on the last page.
    next: str | None


@router.get("", summary="The patient's readings, newest first")
async def list_readings(
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    patient_id: int,
    kind: Annotated[list[Kind] | None, Query(description="Repeatable; default: all")] = None,
    since: Instant | None = None,
    until: Instant | None = None,
    after: Annotated[str | None, Query(description="The previous page's `next`")] = None,
    limit: PageLimit = 100,
) -> ReadingsPage:
    await patient_in_view(conn, user, record, patient_id)
    await record("read", "readings", patient_ids=[patient_id])
    kinds = [k.value for k in kind] if kind else None
    cursor = _decode(after) if after else None
    page = await readings.for_patient(conn, patient_id, kinds, since, until, cursor, limit + 1)
    more = len(page) > limit
    page = page[:limit]
    return ReadingsPage(readings=page, next=_encode(page[-1]) if more else None)


def _encode(last: StoredReading) -> str:
    key = f"{last.measured_at.isoformat()}|{last.device_id}|{last.kind}"
    return base64.urlsafe_b64encode(key.encode()).decode()


def _decode(token: str) -> ReadingCursor:
    try:
        measured_at, device_id, kind = base64.urlsafe_b64decode(token).decode().split("|")
        return ReadingCursor(datetime.fromisoformat(measured_at), int(device_id), Kind(kind).value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(
            422, "`after` is not a page token of these readings: pass the previous page's `next`"
        ) from None


class Width(StrEnum):
    """Bucket widths a chart asks for; `auto` picks the narrowest giving <= 400 buckets."""

    AUTO = "auto"
    MIN_15 = "15m"
    HOUR_1 = "1h"
    HOUR_6 = "6h"
    DAY_1 = "1d"
    DAY_7 = "7d"


BUCKET_WIDTHS = {
    Width.MIN_15: timedelta(minutes=15),
    Width.HOUR_1: timedelta(hours=1),
    Width.HOUR_6: timedelta(hours=6),
    Width.DAY_1: timedelta(days=1),
    Width.DAY_7: timedelta(days=7),
}
MAX_BUCKETS = 400


class Stats(BaseModel):
    mean: float
    min: float
    max: float


class SeriesBucket(BaseModel):
    start: datetime
    count: int
    systolic_mmhg: Stats | None = None
    diastolic_mmhg: Stats | None = None
    pulse_bpm: Stats | None = None
    weight_kg: Stats | None = None
    glucose_mg_dl: Stats | None = None


class Series(BaseModel):
    kind: Kind
    since: datetime
    until: datetime
    width: Width
    buckets: list[SeriesBucket]


@router.get(
    "/series",
    summary="A downsampled series for a chart: per bucket, count, mean, min and max",
)
async def series(
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    patient_id: int,
    kind: Kind,
    since: Instant,
    until: Instant,
    width: Width = Width.AUTO,
) -> Series:
    return await read_series(conn, user, record, patient_id, kind, since, until, width)


async def read_series(
    conn: AsyncConnection[TupleRow],
    user: Principal,
    record: AuditTrail,
    patient_id: int,
    kind: Kind,
    since: datetime,
    until: datetime,
    width: Width = Width.AUTO,
) -> Series:
    """The downsampled series of one kind of the patient's readings, if in the user's
    view, the read audited: for the API and the patient page's charts alike."""
    if until <= since:
        raise HTTPException(422, "`until` must be after `since`")
    span = until - since
    if width is Width.AUTO:
        width = next(
            (w for w, size in BUCKET_WIDTHS.items() if span / size <= MAX_BUCKETS), Width.DAY_7
        )
    if span / BUCKET_WIDTHS[width] > MAX_BUCKETS:
        raise HTTPException(
            422, f"{span} in buckets of {width.value} is more than {MAX_BUCKETS}: widen the bucket"
        )
    await patient_in_view(conn, user, record, patient_id)
    await record("read", "readings", patient_ids=[patient_id], details={"kind": kind.value})
    buckets = await readings.series(
        conn, patient_id, kind.value, since, until, BUCKET_WIDTHS[width]
    )
    return Series(
        kind=kind,
        since=since,
        until=until,
        width=width,
        buckets=[
            SeriesBucket(
                start=b.start,
                count=b.count,
                **{
                    metric: Stats(mean=stats[0], min=stats[1], max=stats[2])
                    for metric, stats in vars(b).items()
                    if metric not in ("start", "count") and stats is not None
                },
            )
            for b in buckets
        ],
    )
