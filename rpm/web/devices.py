"""The devices page, for admins: the registry a page at a time and a form to register a
device; a device's page with its assignment history, where it is given to a patient,
taken back, given a new MQTT password, or retired.

Where rpm manages the broker's identities, a registration, a move to another patient and
a rotation show the device's new MQTT password on the page that answers the post, this
once (`_device_secret.html`), never in a URL: that page is not kept by the browser's
cache (`Cache-Control: no-store`), and reloading it posts again (a registration is then
refused, a rotation makes another secret) rather than showing the same one.

Reads and changes go through the API's own audited calls (`rpm.api.devices`:
`read_devices`, `read_device` and `read_assignments`; `register_device`,
`assign_device`, `unassign_device`, `rotate_device_secret` and `deactivate_device`,
which name the patient concerned), so the pages refuse and audit exactly as
`/api/v1/devices` does. The actions
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

from rpm.api.deps import AuditTrail, Conn, DeviceIdentities, status_of
from rpm.api.devices import (
    assign_device,
    deactivate_device,
    read_assignments,
    read_device,
    read_devices,
    register_device,
    rotate_device_secret,
    unassign_device,
)
from rpm.devices.broker_identities import BrokerIdentityError
from rpm.devices.identities import Identities
from rpm.devices.model import DeviceKind
from rpm.devices.provisioning import Issued
from rpm.devices.registry import RegistryError
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
# A page showing a secret: not to be kept by the browser or anything on the way.
NO_STORE = {"Cache-Control": "no-store"}
# What the pages refuse in words (the broker's refusals too), status and all.
REFUSALS = (RegistryError, BrokerIdentityError)


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
    context = await _list_context(conn, record, after) | _register_context(serial, None, "")
    return render(request, user, "devices.html", context)


async def _list_context(conn: Conn, record: BrowserAudit, after: str) -> dict[str, Any]:
    page = await read_devices(conn, record, after, PAGE_SIZE + 1)
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return {
        "devices": page,
        "after": after,
        "first_page": _devices_url(None),
        "next_page": _devices_url(page[-1].serial) if more else None,
        "device_path": device_path,
        "now": datetime.now(UTC),
    }


def _register_context(serial: str, kind: DeviceKind | None, model: str) -> dict[str, Any]:
    return {"kinds": KINDS, "entered": {"serial": serial, "kind": kind, "model": model}}


@router.post("/devices")
async def register(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    identities: DeviceIdentities,
    serial: Annotated[str, Form(max_length=200)],
    kind: Annotated[DeviceKind, Form()],
    model: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Register a device, then on to its page (where it is assigned); a refusal (a serial
    taken or malformed, the broker's) in the form, with what was entered. With a secret,
    the form says so and shows it (htmx), or the device's page does."""
    # Pasted serials bring spaces with them; the registry would refuse the serial for them.
    serial, model = serial.strip(), model.strip()
    try:
        issued = await register_device(conn, record, identities, serial, kind, model)
    except REFUSALS as exc:
        if not is_htmx(request):
            raise
        context = {"refusal": str(exc), **_register_context(serial, kind, model)}
        return render(request, user, "_register_device.html", context, status_of(exc))
    path = device_path(issued.device.serial)
    if issued.secret is not None:
        if is_htmx(request):
            # The first page of the list comes too, out of band: it holds the new device.
            context = await _list_context(conn, record, "")
            context |= {"issued": issued, "device_list_oob": True}
            context |= _register_context("", None, "")
            return render(request, user, "_register_device.html", context, 201, NO_STORE)
        context = await device_context(conn, record, identities, issued.device.serial)
        context |= {"outcome": f"device {serial} is registered", "secret": issued.secret}
        return render(request, user, "device.html", context, 201, NO_STORE)
    if is_htmx(request):
        # htmx goes there as a whole page, not into the form's place.
        return Response(headers={"HX-Redirect": path})
    return RedirectResponse(path, 303)


@router.get("/devices/{serial}")
async def device_page(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    identities: DeviceIdentities,
    serial: str,
) -> Response:
    context = await device_context(conn, record, identities, serial)
    return render(request, user, "device.html", context)


async def device_context(
    conn: AsyncConnection[TupleRow],
    record: AuditTrail,
    identities: Identities | None,
    serial: str,
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
        "manages_identities": identities is not None,
        "outcome": None,
        "refusal": None,
        "secret": None,
    }


@router.post("/devices/{serial}/assign")
async def assign(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    identities: DeviceIdentities,
    serial: str,
    patient_id: Annotated[int, Form(ge=1)],
    at: AtField = "",
) -> Response:
    clock = clock_of(request, user)
    since = form_instant(at, "the start", clock)

    def said(issued: Issued) -> str:
        device = issued.device
        assert device.assigned_at is not None
        start = clock.timestamp(device.assigned_at)
        moved = "; it was another patient's, so it has a new MQTT password" if issued.secret else ""
        return f"device {serial} is now patient {device.patient_id}'s, from {start}{moved}"

    return await _change(
        request,
        conn,
        user,
        record,
        identities,
        serial,
        lambda: assign_device(conn, record, identities, serial, patient_id, since),
        said,
    )


@router.post("/devices/{serial}/unassign")
async def unassign(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    identities: DeviceIdentities,
    serial: str,
    at: AtField = "",
) -> Response:
    until = form_instant(at, "the end", clock_of(request, user))
    taken_back = f"device {serial} is no longer assigned to a patient"

    async def unassigned() -> Issued:
        return Issued(await unassign_device(conn, record, serial, until))

    return await _change(
        request, conn, user, record, identities, serial, unassigned, lambda _: taken_back
    )


@router.post("/devices/{serial}/rotate-secret")
async def rotate_secret(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    identities: DeviceIdentities,
    serial: str,
) -> Response:
    """A new MQTT password for the device, shown once; the old one stops working now."""
    rotated = f"device {serial} has a new MQTT password: the old one no longer works"
    return await _change(
        request,
        conn,
        user,
        record,
        identities,
        serial,
        lambda: rotate_device_secret(conn, record, identities, serial),
        lambda _: rotated,
    )


@router.post("/devices/{serial}/deactivate")
async def deactivate(
    request: Request,
    conn: Conn,
    user: BrowserManagesDevices,
    record: BrowserAudit,
    identities: DeviceIdentities,
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
    if identities is not None:
        retired += ", and the broker refuses it"

    async def deactivated() -> Issued:
        return Issued(await deactivate_device(conn, record, identities, serial))

    return await _change(
        request, conn, user, record, identities, serial, deactivated, lambda _: retired
    )


async def _change(
    request: Request,
    conn: AsyncConnection[TupleRow],
    user: BrowserUser,
    record: AuditTrail,
    identities: Identities | None,
    serial: str,
    change: Callable[[], Awaitable[Issued]],
    said: Callable[[Issued], str],
) -> Response:
    """The device's section after the change, saying what was done (with a new secret,
    showing it); a refusal (no such patient, deactivated, overlapping periods, the
    broker's) in the section, in the registry's or the broker's words. Without htmx (a
    plain form post): back to the device's page, or a page saying why not; the whole page
    when it shows a secret."""
    secret = None
    try:
        issued = await change()
        outcome, refusal, status, secret = said(issued), None, 200, issued.secret
    except REFUSALS as exc:
        if not is_htmx(request):
            raise
        outcome, refusal, status = None, str(exc), status_of(exc)
    if not is_htmx(request) and secret is None:
        return RedirectResponse(device_path(serial), 303)
    context = await device_context(conn, record, identities, serial) | {
        "outcome": outcome,
        "refusal": refusal,
        "secret": secret,
    }
    headers = NO_STORE if secret else None
    template = "_device.html" if is_htmx(request) else "device.html"
    return render(request, user, template, context, status, headers)
