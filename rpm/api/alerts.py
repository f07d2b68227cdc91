"""Alerts over HTTP: what is waiting, most severe first. (The worklist, with its filters,
paging and actions, is the alerts issue's.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from rpm.alerts import repository as alerts
from rpm.alerts.repository import AlertRecord, TriggerReading
from rpm.api.deps import Conn

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])


@router.get("", summary="Open and acknowledged alerts, most severe first, then oldest")
async def unresolved(
    conn: Conn, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AlertRecord]:
    return await alerts.unresolved(conn, limit)


class AlertDetail(BaseModel):
    alert: AlertRecord
    readings: list[TriggerReading]


@router.get(
    "/{alert_id}",
    summary="One alert, with the readings that fired its rule",
    responses={404: {"description": "No such alert"}},
)
async def get(conn: Conn, alert_id: int) -> AlertDetail:
    return AlertDetail(
        alert=await alerts.get(conn, alert_id), readings=await alerts.triggers(conn, alert_id)
    )
