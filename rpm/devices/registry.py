"""The device registry's SQL: register, assign to a patient and back, deactivate, list.

Assignments are periods, never edited away: moving a device closes the open period and
opens another, so a late reading still belongs to whoever had the device at the time.
Each change locks the device row, so that concurrent changes to one device take turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

from rpm.devices.model import DeviceKind

Connection = AsyncConnection[TupleRow]


class RegistryError(Exception):
    """A registry change that cannot be made, with a message saying why."""


class NotFound(RegistryError):
    pass


class Conflict(RegistryError):
    pass


@dataclass(frozen=True)
class DeviceRecord:
    id: int
    serial: str
    kind: str
    model: str
    status: str
    registered_at: datetime
    last_seen_at: datetime | None
    battery_percent: int | None
    signal_dbm: int | None
    firmware: str | None
    patient_id: int | None
    assigned_at: datetime | None


@dataclass(frozen=True)
class AssignmentRecord:
    patient_id: int
    assigned_at: datetime
    unassigned_at: datetime | None


_SELECT = """
SELECT d.id, d.serial, d.kind, d.model, d.status, d.registered_at, d.last_seen_at,
       d.battery_percent, d.signal_dbm, d.firmware, a.patient_id, a.assigned_at
FROM device d
LEFT JOIN device_assignment a ON a.device_id = d.id AND a.unassigned_at IS NULL
"""


async def register(
    conn: Connection, serial: str, kind: DeviceKind, model: str = ""
) -> DeviceRecord:
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO device (serial, kind, model) VALUES (%s, %s, %s)",
                [serial, kind.value, model],
            )
    except psycopg.errors.UniqueViolation:
        raise Conflict(f"a device with serial {serial!r} is already registered") from None
    except psycopg.errors.CheckViolation:
        raise RegistryError(
            f"serial {serial!r} must be 1 to 64 letters, digits or . _ : -"
        ) from None
    return await get(conn, serial)


async def get(conn: Connection, serial: str) -> DeviceRecord:
    async with conn.cursor(row_factory=class_row(DeviceRecord)) as cursor:
        await cursor.execute(_SELECT + " WHERE d.serial = %s", [serial])
        device = await cursor.fetchone()
    if device is None:
        raise NotFound(f"no device with serial {serial!r} is registered")
    return device


async def list_devices(
    conn: Connection,
    *,
    after_serial: str = "",
    limit: int = 100,
    patient_id: int | None = None,
    unassigned: bool = False,
) -> list[DeviceRecord]:
    """Devices in serial order, a page at a time (keyset: pass the last serial seen); only
    the patient's, with `patient_id`; only the active ones nobody has, with `unassigned`
    (those a patient can be given)."""
    async with conn.cursor(row_factory=class_row(DeviceRecord)) as cursor:
        await cursor.execute(
            _SELECT + " WHERE d.serial > %s"
            " AND (%s::bigint IS NULL OR a.patient_id = %s)"
            " AND (NOT %s OR (a.patient_id IS NULL AND d.status = 'active'))"
            " ORDER BY d.serial LIMIT %s",
            [after_serial, patient_id, patient_id, unassigned, limit],
        )
        return await cursor.fetchall()


async def history(conn: Connection, serial: str) -> list[AssignmentRecord]:
    async with conn.cursor(row_factory=class_row(AssignmentRecord)) as cursor:
        await cursor.execute(
            "SELECT a.patient_id, a.assigned_at, a.unassigned_at FROM device_assignment a"
            " JOIN device d ON d.id = a.device_id WHERE d.serial = %s ORDER BY a.assigned_at",
            [serial],
        )
        periods = await cursor.fetchall()
    if not periods:
        await get(conn, serial)  # no history, or no such device?
    return periods


async def assign(
    conn: Connection, serial: str, patient_id: int, at: datetime | None = None
) -> DeviceRecord:
    """Give the device to a patient from `at` (default now), ending any open assignment."""
    async with conn.transaction():
        device_id, status, when = await _lock(conn, serial, at)
        if status != "active":
            raise Conflict(f"device {serial} is deactivated; it cannot be assigned")
        exists = await conn.execute("SELECT 1 FROM patient WHERE id = %s", [patient_id])
        if await exists.fetchone() is None:
            raise NotFound(f"no patient with id {patient_id}")
        await _close_open_period(conn, device_id, serial, when)
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO device_assignment (device_id, patient_id, assigned_at)"
                    " VALUES (%s, %s, %s)",
                    [device_id, patient_id, when],
                )
        except psycopg.errors.ExclusionViolation:
            raise Conflict(
                f"device {serial} was already assigned after {when.isoformat()}; "
                "an assignment can only start after the device's last one"
            ) from None
    return await get(conn, serial)


async def unassign(conn: Connection, serial: str, at: datetime | None = None) -> DeviceRecord:
    async with conn.transaction():
        device_id, _, when = await _lock(conn, serial, at)
        if not await _close_open_period(conn, device_id, serial, when):
            raise Conflict(f"device {serial} is not assigned to a patient")
    return await get(conn, serial)


async def deactivate(conn: Connection, serial: str) -> DeviceRecord:
    """Retire a device: its assignment ends now and its messages are dead-lettered."""
    async with conn.transaction():
        device_id, _, when = await _lock(conn, serial, None)
        await _close_open_period(conn, device_id, serial, when)
        await conn.execute("UPDATE device SET status = 'inactive' WHERE id = %s", [device_id])
    return await get(conn, serial)


async def lock(conn: Connection, serial: str) -> str:
    """The device's status, its row locked until the transaction ends: for a change of
    the device made elsewhere (its broker identity) that must not cross another change."""
    _, status, _ = await _lock(conn, serial, None)
    return status


async def _lock(conn: Connection, serial: str, at: datetime | None) -> tuple[int, str, datetime]:
    cursor = await conn.execute(
        "SELECT id, status, coalesce(%s, now()) FROM device WHERE serial = %s FOR UPDATE",
        [at, serial],
    )
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no device with serial {serial!r} is registered")
    return row[0], row[1], row[2]


async def _close_open_period(conn: Connection, device_id: int, serial: str, when: datetime) -> bool:
    cursor = await conn.execute(
        "SELECT assigned_at FROM device_assignment WHERE device_id = %s AND unassigned_at IS NULL",
        [device_id],
    )
    row = await cursor.fetchone()
    if row is None:
        return False
    if row[0] >= when:
        raise Conflict(
            f"device {serial}'s current assignment starts at {row[0].isoformat()}, "
            f"not before {when.isoformat()}"
        )
    await conn.execute(
        "UPDATE device_assignment SET unassigned_at = %s"
        " WHERE device_id = %s AND unassigned_at IS NULL",
        [when, device_id],
    )
    return True


async def patients_seen_since(conn: Connection, since: datetime, limit: int) -> list[int]:
    """Patients holding a device that sent something since then, most recent first."""
    cursor = await conn.execute(
        "SELECT a.patient_id FROM device d"
        " JOIN device_assignment a ON a.device_id = d.id AND a.unassigned_at IS NULL"
        " WHERE d.last_seen_at >= %s"
        " GROUP BY a.patient_id ORDER BY max(d.last_seen_at) DESC LIMIT %s",
        [since, limit],
    )
    return [patient_id for (patient_id,) in await cursor.fetchall()]
