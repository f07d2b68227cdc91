"""The device registry over HTTP, for administrators (the same calls as `rpm devices`).
A device names the patient who has it, so reading or changing one is audited like any
patient data, naming the patients; the devices page calls the same functions.

Where rpm manages the broker's device identities (`rpm.devices.provisioning`), a
registration, a move to another patient and a rotation answer with the device's new MQTT
password, this once: rpm keeps no copy (the broker keeps a salted hash) and never logs
or audits it. A change and its audit row commit together, after the broker's answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import ConfigDict, Field

from rpm.api import problems
from rpm.api.deps import (
    Audit,
    AuditTrail,
    Conn,
    DeviceIdentities,
    ManagesDevices,
    PageLimit,
    RequestBody,
)
from rpm.api.values import Instant
from rpm.devices import provisioning, registry
from rpm.devices.identities import Identities
from rpm.devices.model import DeviceKind
from rpm.devices.registry import AssignmentRecord, DeviceRecord

router = APIRouter(
    prefix="/api/v1/devices",
    tags=["devices"],
    responses=problems.errors(
        {
            404: "No such device or patient",
            409: "The change conflicts with the device's state or history",
            502: "The MQTT broker refused the change of the device's broker identity:"
            " nothing was changed",
            503: "The database, or the MQTT broker that keeps the devices' identities, is not"
            " available at the moment: nothing was changed; retry after Retry-After",
        }
    ),
)


@dataclass(frozen=True)
class DeviceWithSecret(DeviceRecord):
    mqtt_password: Annotated[
        str | None,
        Field(
            description="The device's new MQTT password (its username and client id are its"
            " serial), shown this once: rpm keeps no copy. Null when none was issued (rpm"
            " does not manage the broker's identities, or the change needs no new one)."
        ),
    ]

    @classmethod
    def of(cls, issued: provisioning.Issued) -> DeviceWithSecret:
        return cls(**asdict(issued.device), mqtt_password=issued.secret)


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
    conn: AsyncConnection[TupleRow],
    record: AuditTrail,
    identities: Identities | None,
    serial: str,
    kind: DeviceKind,
    model: str,
) -> provisioning.Issued:
    async with conn.transaction():
        issued = await provisioning.register(conn, identities, serial, kind, model)
        await record("register", "device", issued.device.serial, details=_issued(issued))
    return issued


async def deactivate_device(
    conn: AsyncConnection[TupleRow], record: AuditTrail, identities: Identities | None, serial: str
) -> DeviceRecord:
    """Retire the device, which ends its assignment and revokes its broker identity:
    audited naming the patient who had it."""
    async with conn.transaction():
        before = await registry.get(conn, serial)
        device = await provisioning.deactivate(conn, identities, serial)
        await record("deactivate", "device", serial, [before.patient_id])
    return device


async def assign_device(
    conn: AsyncConnection[TupleRow],
    record: AuditTrail,
    identities: Identities | None,
    serial: str,
    patient_id: int,
    at: datetime | None,
) -> provisioning.Issued:
    """Give the device to the patient from `at` (None: now), audited naming the patient:
    for the API and the devices page alike. From another patient, it gets a new secret."""
    async with conn.transaction():
        issued = await provisioning.assign(conn, identities, serial, patient_id, at)
        await record("assign", "device", serial, [patient_id], details=_issued(issued))
    return issued


async def rotate_device_secret(
    conn: AsyncConnection[TupleRow], record: AuditTrail, identities: Identities | None, serial: str
) -> provisioning.Issued:
    async with conn.transaction():
        issued = await provisioning.rotate(conn, identities, serial)
        await record("rotate_secret", "device", serial, [issued.device.patient_id], _issued(issued))
    return issued


def _issued(issued: provisioning.Issued) -> dict[str, object]:
    # That a secret was issued, never the secret.
    return {"secret_issued": issued.secret is not None}


async def unassign_device(
    conn: AsyncConnection[TupleRow], record: AuditTrail, serial: str, at: datetime | None
) -> DeviceRecord:
    """End the device's assignment at `at` (None: now), audited naming the patient who had
    it: for the API and the devices page alike. Its broker identity stays: it may still
    send readings, dead-lettered until it is assigned again."""
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
    limit: PageLimit = 100,
    patient_id: Annotated[int | None, Query(description="Only this patient's devices")] = None,
    unassigned: Annotated[
        bool, Query(description="Only active devices nobody has: those a patient can be given")
    ] = False,
) -> list[DeviceRecord]:
    return await read_devices(conn, record, after, limit, patient_id, unassigned)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a device (and make its broker identity: its password, shown once)",
)
async def register(
    conn: Conn,
    admin: ManagesDevices,
    record: Audit,
    identities: DeviceIdentities,
    device: NewDevice,
) -> DeviceWithSecret:
    issued = await register_device(
        conn, record, identities, device.serial, device.kind, device.model
    )
    return DeviceWithSecret.of(issued)


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
    conn: Conn,
    admin: ManagesDevices,
    record: Audit,
    identities: DeviceIdentities,
    serial: str,
    assignment: DeviceAssignment,
) -> DeviceWithSecret:
    issued = await assign_device(
        conn, record, identities, serial, assignment.patient_id, assignment.at
    )
    return DeviceWithSecret.of(issued)


@router.post(
    "/{serial}/rotate-secret",
    summary="A new MQTT password for the device, shown once; the old one stops working now",
)
async def rotate_secret(
    conn: Conn, admin: ManagesDevices, record: Audit, identities: DeviceIdentities, serial: str
) -> DeviceWithSecret:
    return DeviceWithSecret.of(await rotate_device_secret(conn, record, identities, serial))


@router.post("/{serial}/unassign", summary="End the device's assignment")
async def unassign(
    conn: Conn, admin: ManagesDevices, record: Audit, serial: str, body: Unassignment
) -> DeviceRecord:
    return await unassign_device(conn, record, serial, body.at)


@router.post(
    "/{serial}/deactivate",
    summary="Retire the device: the broker refuses it, and its messages are dead-lettered,"
    " from now on",
)
async def deactivate(
    conn: Conn, admin: ManagesDevices, record: Audit, identities: DeviceIdentities, serial: str
) -> DeviceRecord:
    return await deactivate_device(conn, record, identities, serial)
