"""The device registry over HTTP, for administrators (the same calls as `rpm devices`).
A device names the patient who has it, so reading or changing one is audited like any
patient data, naming the patients; the devices page calls the same functions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import ConfigDict, Field

from rpm.api import problems
from rpm.api.deps import Audit, AuditTrail, Conn, ManagesDevices, RequestBody
from rpm.api.values import Instant
from rpm.devices import registry
from rpm.devices.model import DeviceKind
from rpm.devices.registry import AssignmentRecord, DeviceRecord

router = APIRouter(
    prefix="/api/v1/devices",
    tags=["devices"],
    responses=problems.errors(
        {
            404: "No such device or patient",
            409: "The change conflicts with the device's state or history",
        }
    ),
)


class NewDevice(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "serial": "BP-000123",
                    "kind": "blood_pressure_cuff",
                    "model": "Cellular BP cuff, test model",
                }
            ]
        }
    )

    serial: str = Field(description="The device's serial: its MQTT identity")
    kind: DeviceKind
    model: str = Field("", description="Make and model, for people")


class DeviceAssignment(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"patient_id": 1, "at": "2025-03-03T09:30:00-06:00"}]}
    )

    patient_id: int
    at: Instant | None = Field(None, description="When the patient got it (default now)")


class Unassignment(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"at": "2025-06-02T12:00:00-05:00"}]})

    at: Instant | None = Field(None, description="When it ended (default now)")


async def read_devices(
    conn: AsyncConnection[TupleRow],
    record: AuditTrail,
    after_serial: str,
    limit: int,
    patient_id: int | None = None,
    unassigned: bool = False,
) -> list[DeviceRecord]:
    """A page of the registry (`registry.list_devices`: the patient's only, or the
    unassigned only), the read audited naming the patients: for the API, the devices page
    and the patient page alike."""
    devices = await registry.list_devices(
        conn, after_serial=after_serial, limit=limit, patient_id=patient_id, unassigned=unassigned
    )
    await record("read", "devices", patient_ids=[d.patient_id for d in devices])
    return devices


async def read_device(
    conn: AsyncConnection[TupleRow], record: AuditTrail, serial: str
) -> DeviceRecord:
    device = await registry.get(conn, serial)
    await record("read", "device", serial, [device.patient_id])
    return device


async def read_assignments(
    conn: AsyncConnection[TupleRow], record: AuditTrail, serial: str
) -> list[AssignmentRecord]:
    periods = await registry.history(conn, serial)
    await record("read", "device_assignments", serial, [p.patient_id for p in periods])
    return periods


async def register_device(
    conn: AsyncConnection[TupleRow], record: AuditTrail, serial: str, kind: DeviceKind, model: str
) -> DeviceRecord:
    device = await registry.register(conn, serial, kind, model)
    await record("register", "device", device.serial)
    return device


async def deactivate_device(
    conn: AsyncConnection[TupleRow], record: AuditTrail, serial: str
) -> DeviceRecord:
    """Retire the device, which ends its assignment: audited naming the patient who had it."""
    before = await registry.get(conn, serial)
    device = await registry.deactivate(conn, serial)
    await record("deactivate", "device", serial, [before.patient_id])
    return device


async def assign_device(
    conn: AsyncConnection[TupleRow],
    record: AuditTrail,
    serial: str,
    patient_id: int,
    at: datetime | None,
) -> DeviceRecord:
    """Give the device to the patient from `at` (None: now), audited naming the patient:
    for the API and the devices page alike."""
    device = await registry.assign(conn, serial, patient_id, at)
    await record("assign", "device", serial, [patient_id])
    return device


async def unassign_device(
    conn: AsyncConnection[TupleRow], record: AuditTrail, serial: str, at: datetime | None
) -> DeviceRecord:
    """End the device's assignment at `at` (None: now), audited naming the patient who had
    it: for the API and the devices page alike."""
    before = await registry.get(conn, serial)
    device = await registry.unassign(conn, serial, at)
    await record("unassign", "device", serial, [before.patient_id])
    return device


@router.get("", summary="Devices with their patient, last-seen time and battery")
async def list_devices(
    conn: Conn,
    admin: ManagesDevices,
    record: Audit,
    after: Annotated[str, Query(description="Start after this serial (paging)")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    patient_id: Annotated[int | None, Query(description="Only this patient's devices")] = None,
    unassigned: Annotated[
        bool, Query(description="Only active devices nobody has: those a patient can be given")
    ] = False,
) -> list[DeviceRecord]:
    return await read_devices(conn, record, after, limit, patient_id, unassigned)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a device")
async def register(
    conn: Conn, admin: ManagesDevices, record: Audit, device: NewDevice
) -> DeviceRecord:
    return await register_device(conn, record, device.serial, device.kind, device.model)


@router.get("/{serial}", summary="One device")
async def get(conn: Conn, admin: ManagesDevices, record: Audit, serial: str) -> DeviceRecord:
    return await read_device(conn, record, serial)


@router.get("/{serial}/assignments", summary="Who had the device, and when")
async def assignments(
    conn: Conn, admin: ManagesDevices, record: Audit, serial: str
) -> list[AssignmentRecord]:
    return await read_assignments(conn, record, serial)


@router.post(
    "/{serial}/assign",
    summary="Give the device to a patient, ending its current assignment",
)
async def assign(
    conn: Conn, admin: ManagesDevices, record: Audit, serial: str, assignment: DeviceAssignment
) -> DeviceRecord:
    return await assign_device(conn, record, serial, assignment.patient_id, assignment.at)


@router.post("/{serial}/unassign", summary="End the device's assignment")
async def unassign(
    conn: Conn, admin: ManagesDevices, record: Audit, serial: str, body: Unassignment
) -> DeviceRecord:
    return await unassign_device(conn, record, serial, body.at)


@router.post(
    "/{serial}/deactivate",
    summary="Retire the device: its messages are dead-lettered from now on",
)
async def deactivate(conn: Conn, admin: ManagesDevices, record: Audit, serial: str) -> DeviceRecord:
    return await deactivate_device(conn, record, serial)
