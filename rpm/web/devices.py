"""The devices page, for admins: the registry a page at a time and a form to register a
device; a device's page with its assignment history, where it is given to a patient,
taken back, or retired.

Reads and changes go through the API's own audited calls (`rpm.api.devices`:
`read_devices`, `read_device` and `read_assignments`; `register_device`,
`assign_device`, `unassign_device` and `deactivate_device`, which name the patient
concerned), so the pages refuse and audit exactly as `/api/v1/devices` does. The actions
post with htmx and get the device's section back, saying what was done or why not;
without JavaScript the forms post normally.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from rpm.api.deps import AuditTrail, Conn, status_of
from rpm.api.devices import (
    assign_device,
    deactivate_device,
    read_assignments,
    read_device,
    read_devices,
    register_device,
    unassign_device,
)
from rpm.devices.model import DeviceKind
from rpm.devices.registry import DeviceRecord, RegistryError
from rpm.web.deps import (
    PREFIX,
    AtField,
    BrowserAudit,
    BrowserManagesDevices,
    BrowserUser,
    clock_of,
    form_instant,
    is_htmx,
    render,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZE = 25
DEVICES = f"{PREFIX}/devices"
KINDS = list(DeviceKind)


def device_path(serial: str) -> str:
    return f"{DEVICES}/{quote(serial, safe='')}"


def _devices_url(after: str | None) -> str:
    return DEVICES + (f"?{urlencode({'after': after})}" if after else "")


@router.get("/devices")
async def devices_page(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    after: str = "",
    serial: str = "",
) -> Response:
    """The devices in serial order, a page at a time, and the form to register one
    (`serial` filled in: a dead letter's page links here for a device not yet known)."""
    page = await read_devices(conn, record, after, PAGE_SIZE + 1)
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    context = {
        "devices": page,
        "after": after,
        "first_page": _devices_url(None),
        "next_page": _devices_url(page[-1].serial) if more else None,
        "device_path": device_path,
        "now": datetime.now(UTC),
        **_register_context(serial, None, ""),
    }
    return render(request, user, "devices.html", context)


def _register_context(serial: str, kind: DeviceKind | None, model: str) -> dict[str, Any]:
    return {"kinds": KINDS, "entered": {"serial": serial, "kind": kind, "model": model}}


@router.post("/devices")
async def register(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    serial: Annotated[str, Form(max_length=200)],
    kind: Annotated[DeviceKind, Form()],
    model: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Register a device, then on to its page (where it is assigned); a refusal (a serial
    taken or malformed) in the form, with what was entered."""
    # Pasted serials bring spaces with them; the registry would refuse the serial for them.
    serial, model = serial.strip(), model.strip()
    try:
        device = await register_device(conn, record, serial, kind, model)
    except RegistryError as exc:
        if not is_htmx(request):
            raise
        context = {"refusal": str(exc), **_register_context(serial, kind, model)}
        return render(request, user, "_register_device.html", context, status_of(exc))
    path = device_path(device.serial)
    if is_htmx(request):
        # htmx goes there as a whole page, not into the form's place.
        return Response(headers={"HX-Redirect": path})
    return RedirectResponse(path, 303)


@router.get("/devices/{serial}")
async def device_page(
    request: Request, conn: Conn, user: BrowserManagesDevices, record: BrowserAudit, serial: str
) -> Response:
    context = await _device_context(conn, record, serial)
    return render(request, user, "device.html", context)


async def _device_context(
    conn: AsyncConnection[TupleRow], record: AuditTrail, serial: str
) -> dict[str, Any]:
    device = await read_device(conn, record, serial)
    periods = await read_assignments(conn, record, serial)
    return {
        "device": device,
        "device_path": device_path,
        # Newest first: the current assignment on top.
        "history": periods[::-1],
        "dead_letters": f"{PREFIX}/dead-letters?{urlencode({'device_serial': device.serial})}",
        "now": datetime.now(UTC),
        "outcome": None,
        "refusal": None,
    }


@router.post("/devices/{serial}/assign")
async def assign(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    serial: str,
    patient_id: Annotated[int, Form(ge=1)],
    at: AtField = "",
) -> Response:
    clock = clock_of(request, user)
    since = form_instant(at, "the start", clock)

    def said(device: DeviceRecord) -> str:
        assert device.assigned_at is not None
        start = clock.timestamp(device.assigned_at)
        return f"device {serial} is now patient {device.patient_id}'s, from {start}"

    return await _change(
        request,
        conn,
        user,
        record,
        serial,
        lambda: assign_device(conn, record, serial, patient_id, since),
        said,
    )


@router.post("/devices/{serial}/unassign")
async def unassign(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    serial: str,
    at: AtField = "",
) -> Response:
    until = form_instant(at, "the end", clock_of(request, user))
    taken_back = f"device {serial} is no longer assigned to a patient"
    return await _change(
        request,
        conn,
        user,
        record,
        serial,
        lambda: unassign_device(conn, record, serial, until),
        lambda _: taken_back,
    )


@router.post("/devices/{serial}/deactivate")
async def deactivate(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    serial: str,
    confirm: Annotated[bool, Form()] = False,
) -> Response:
    """Retire the device, once the admin has confirmed it (a box to tick: with or without
    JavaScript, by keyboard too)."""
    if not confirm:
        raise HTTPException(
            422, f"tick the box to confirm that device {serial} is to be deactivated"
        )
    retired = f"device {serial} is deactivated: its messages are dead-lettered from now on"
    return await _change(
        request,
        conn,
        user,
        record,
        serial,
        lambda: deactivate_device(conn, record, serial),
        lambda _: retired,
    )


async def _change(
    request: Request,
    conn: AsyncConnection[TupleRow],
    user: BrowserUser,
    record: AuditTrail,
    serial: str,
    change: Callable[[], Awaitable[DeviceRecord]],
    said: Callable[[DeviceRecord], str],
) -> Response:
    """The device's section after the change, saying what was done; a refusal (no such
    patient, deactivated, overlapping periods) in the section, in the registry's words.
    Without htmx (a plain form post): back to the device's page, or a page saying why not."""
    try:
        outcome, refusal, status = said(await change()), None, 200
    except RegistryError as exc:
        if not is_htmx(request):
            raise
        outcome, refusal, status = None, str(exc), status_of(exc)
    if not is_htmx(request):
        return RedirectResponse(device_path(serial), 303)
    context = await _device_context(conn, record, serial) | {
        "outcome": outcome,
        "refusal": refusal,
    }
    return render(request, user, "_device.html", context, status)
