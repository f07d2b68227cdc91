"""The device registry over HTTP, for administrators (the same calls as `rpm devices`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime, BaseModel, Field

from rpm.api.deps import Conn
from rpm.devices import registry
from rpm.devices.model import DeviceKind
from rpm.devices.registry import AssignmentRecord, DeviceRecord

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

_ERRORS: dict[int | str, dict[str, str]] = {
    404: {"description": "No such device or patient"},
    409: {"description": "The change conflicts with the device's state or history"},
}


class NewDevice(BaseModel):
    serial: str = Field(description="The device's serial: its MQTT identity")
    kind: DeviceKind
    model: str = Field("", description="Make and model, for people")


class Assignment(BaseModel):
    patient_id: int
    at: AwareDatetime | None = Field(None, description="When the patient got it (default now)")


class Unassignment(BaseModel):
    at: AwareDatetime | None = Field(None, description="When it ended (default now)")


@router.get("", summary="Devices with their patient, last-seen time and battery")
async def list_devices(
    conn: Conn,
    after: Annotated[str, Query(description="Start after this serial (paging)")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeviceRecord]:
    return await registry.list_devices(conn, after_serial=after, limit=limit)


@router.post(
    "", status_code=status.HTTP_201_CREATED, summary="Register a device", responses=_ERRORS
)
async def register(conn: Conn, device: NewDevice) -> DeviceRecord:
    return await registry.register(conn, device.serial, device.kind, device.model)


@router.get("/{serial}", summary="One device", responses=_ERRORS)
async def get(conn: Conn, serial: str) -> DeviceRecord:
    return await registry.get(conn, serial)


@router.get("/{serial}/assignments", summary="Who had the device, and when", responses=_ERRORS)
async def assignments(conn: Conn, serial: str) -> list[AssignmentRecord]:
    return await registry.history(conn, serial)


@router.post(
    "/{serial}/assign",
    summary="Give the device to a patient, ending its current assignment",
    responses=_ERRORS,
)
async def assign(conn: Conn, serial: str, assignment: Assignment) -> DeviceRecord:
    return await registry.assign(conn, serial, assignment.patient_id, assignment.at)


@router.post("/{serial}/unassign", summary="End the device's assignment", responses=_ERRORS)
async def unassign(conn: Conn, serial: str, body: Unassignment) -> DeviceRecord:
    return await registry.unassign(conn, serial, body.at)


@router.post(
    "/{serial}/deactivate",
    summary="Retire the device: its messages are dead-lettered from now on",
    responses=_ERRORS,
)
async def deactivate(conn: Conn, serial: str) -> DeviceRecord:
    return await registry.deactivate(conn, serial)
