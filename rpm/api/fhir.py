"""rpm as a read-only FHIR R4 server (docs/fhir.md): Observation, Patient, Device and Flag,
each read by id (with its ETag and Last-Modified) and searched as a searchset Bundle, the
CapabilityStatement (`GET /fhir/metadata`) written from the same table the searches take
their parameters from (`rpm.fhir.capability`); and several patients' readings over a
period as NDJSON, one Observation a line (`POST /api/v1/exports/observations`).

All take the readings API's permission, care-team check and audit. Under /fhir every
refusal is an OperationOutcome, FHIR's error body, in the same words as the problem
details of /api/v1 (which the export keeps), unknown paths and types included.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from pydantic import ConfigDict, Field

import rpm
from rpm.alerts import repository as alerts
from rpm.api import problems
from rpm.api.deps import (
    Audit,
    AuditTrail,
    Conn,
    ReadsPatients,
    RequestBody,
    alert_in_view,
    patient_in_view,
)
from rpm.api.values import Instant
from rpm.auth.access import Principal
from rpm.fhir import capability, repository, resources, search
from rpm.fhir.observations import (
    KINDS_OF_CODE,
    LOINC,
    Measurement,
    Position,
    observation_key,
    observations,
    observations_after,
)
from rpm.fhir.search import Interval, SearchError
from rpm.patients import registry as patients

FHIR_JSON = "application/fhir+json"
FHIR_NDJSON = "application/fhir+ndjson"
DEFAULT_COUNT = 100
# FHIR lets a server return fewer than `_count` asks for: more than this is cut to it.
MAX_COUNT = 1000
MAX_EXPORT_PATIENTS = 100
# Readings read per query while an export streams: no query and no buffer grows with the
# period asked for, and no transaction stays open on a slow reader.
EXPORT_BATCH = 1000
# The most `_id` values a search takes: an id list is no way to page through a store.
MAX_IDS = 100

# FHIR's issue type (http://hl7.org/fhir/issue-type) of each status a refusal can have.
_ISSUE_TYPE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    429: "throttled",
    503: "transient",
}
# What a client must see of a refusal's headers: how to sign in, when to come back.
_KEPT_HEADERS = ("www-authenticate", "retry-after")


class UnknownResource(LookupError):
    """No resource of that type and id, or one the user may not see (the same 404)."""


class FhirJSONResponse(JSONResponse):
    media_type = FHIR_JSON


class FhirNdjsonResponse(StreamingResponse):
    media_type = FHIR_NDJSON


def operation_outcome(
    status: int, diagnostics: str, headers: dict[str, str] | None = None
) -> FhirJSONResponse:
    """A refusal as FHIR says it: one error issue, whose diagnostics say what was wrong."""
    issue = {"severity": "error", "code": _ISSUE_TYPE.get(status, "processing")}
    body = {"resourceType": "OperationOutcome", "issue": [{**issue, "diagnostics": diagnostics}]}
    return FhirJSONResponse(body, status_code=status, headers=headers)


class FhirRoute(APIRoute):
    """A route whose refusals are OperationOutcomes. The app's own handlers decide the
    status and the words (sign-in, permission, a patient out of view, a database that is
    away), so that /fhir refuses as /api/v1 does; a parameter that does not fit is 400,
    as FHIR has it for a search, where /api/v1 says 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_in_fhir(request: Request) -> Response:
            try:
                return await handle(request)
            except SearchError as exc:
                return operation_outcome(400, str(exc))
            except UnknownResource as exc:
                return operation_outcome(404, str(exc))
            except Exception as exc:
                refuse = _handler_of(request, exc)
                if refuse is None:
                    raise
                problem = await refuse(request, exc)
                return _as_outcome(problem)

        return handle_in_fhir


ExceptionHandler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]


def _handler_of(request: Request, exc: Exception) -> ExceptionHandler | None:
    """The app's handler of this exception, looked up as Starlette does (by its class's
    method resolution order); None: it is not a refusal but a fault (500)."""
    handlers: dict[Any, ExceptionHandler] = request.app.exception_handlers
    return next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)


def _as_outcome(problem: Response) -> FhirJSONResponse:
    detail = str(json.loads(bytes(problem.body))["detail"])
    status = 400 if problem.status_code == 422 else problem.status_code
    headers = {k: v for k, v in problem.headers.items() if k.lower() in _KEPT_HEADERS}
    return operation_outcome(status, detail, headers)


def _outcome_reply(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {FHIR_JSON: {"schema": {"type": "object", "title": "OperationOutcome"}}},
    }


fhir_router = APIRouter(
    prefix="/fhir",
    tags=["fhir"],
    route_class=FhirRoute,
    responses={
        400: _outcome_reply("A parameter FHIR or rpm cannot take: `diagnostics` says which"),
        401: _outcome_reply("Not signed in: send `Authorization: Bearer <token>`"),
        403: _outcome_reply("The role may not read patient data"),
        404: _outcome_reply(
            "No such resource, type or path (or a patient not of the user's care teams')"
        ),
        # Every refusal is an OperationOutcome (and FastAPI then adds no 422 of its own).
        "4XX": _outcome_reply("Any other refusal"),
        503: _outcome_reply("The database is not available at the moment; retry"),
    },
)


def fhir_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _check_parameters(request: Request, resource_type: str) -> None:
    """A parameter the search does not take is refused rather than ignored: an EHR asking
    for what rpm does not filter on must not take everything for what it asked."""
    taken = capability.BY_NAME[resource_type].parameters()
    if unknown := sorted(set(request.query_params) - taken):
        raise SearchError(
            f"not supported here: {', '.join(unknown)} (the {resource_type} search takes"
            f" {', '.join(sorted(taken))})"
        )


def _id_values(values: list[str] | None) -> set[str] | None:
    if values is None:
        return None
    wanted = search.ids(values)
    if len(wanted) > MAX_IDS:
        raise SearchError(f"_id: at most {MAX_IDS} ids a search")
    return wanted


def _row_ids(values: list[str] | None) -> set[int] | None:
    return None if values is None else search.row_ids(_id_values(values) or ())


def _updated(values: list[str] | None, zone: Any = UTC) -> list[Interval]:
    return search.window([search.date_condition(v) for v in values or []], zone)


def _understood(request: Request, count: int, cursor: str | None) -> list[tuple[str, str | int]]:
    """The search's parameters as taken, for its `self` and `next` links."""
    query: list[tuple[str, str | int]] = [
        (name, value)
        for name, value in request.query_params.multi_items()
        if name not in ("_count", "_cursor", "patient")
    ]
    if (patient := request.query_params.get("patient")) is not None:
        query.insert(0, ("patient", search.patient_reference(patient)))
    query.append(("_count", count))
    if cursor is not None:
        query.append(("_cursor", cursor))
    return query


def _read_reply(request: Request, resource: dict[str, Any]) -> Response:
    """A read: the resource with its version as ETag and Last-Modified; 304 to a client
    that has this version already."""
    headers = {"ETag": resources.etag(resource), "Last-Modified": resources.last_modified(resource)}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return FhirJSONResponse(resource, headers=headers)


def _bundle_reply(
    request: Request,
    resource_type: str,
    page: Sequence[dict[str, Any]],
    count: int,
    cursor: str | None,
    next_cursor: str | None,
    included: Sequence[dict[str, Any]] = (),
) -> FhirJSONResponse:
    base = fhir_base(request)
    self_url = search.search_url(base, resource_type, _understood(request, count, cursor))
    next_url = None
    if next_cursor is not None:
        next_url = search.search_url(base, resource_type, _understood(request, count, next_cursor))
    return FhirJSONResponse(search.searchset(base, page, self_url, next_url, included))


def _sees_device(user: Principal, row: resources.DeviceRow) -> bool:
    """A device in stock is the admins'; one with a patient, whoever sees that patient."""
    if user.sees_all_patients:
        return True
    return row.patient_id is not None and user.sees_team(row.care_team_id)


_BUNDLE_REPLY: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A searchset Bundle: a page of matches, with a `next` link while"
        " there are more",
        "content": {FHIR_JSON: {"schema": {"type": "object", "title": "Bundle"}}},
    }
}


def _resource_reply(name: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": f"The {name}, its version as ETag and Last-Modified",
            "content": {FHIR_JSON: {"schema": {"type": "object", "title": name}}},
        },
        304: {"description": "Not modified: the client's If-None-Match is this version"},
    }


Count = Annotated[
    int, Query(alias="_count", ge=1, description=f"Per page; at most {MAX_COUNT} are sent")
]
Cursor = Annotated[
    str | None, Query(alias="_cursor", description="Set by the `next` link: follow it")
]
Ids = Annotated[
    list[str] | None,
    Query(alias="_id", description=f"Ids, comma-separated or repeated (at most {MAX_IDS})"),
]
LastUpdated = Annotated[
    list[str] | None,
    Query(alias="_lastUpdated", description="When it last changed: a prefix, then a date"),
]
PatientFilter = Annotated[str | None, Query(description="The patient: `123` or `Patient/123`")]


@fhir_router.get(
    "/metadata",
    response_class=FhirJSONResponse,
    summary="The CapabilityStatement: what this FHIR server serves",
    responses={
        200: {
            "description": "The CapabilityStatement",
            "content": {FHIR_JSON: {"schema": {"type": "object", "title": "CapabilityStatement"}}},
        }
    },
)
async def metadata(request: Request) -> FhirJSONResponse:
    # Public, as FHIR has it: a client reads it before it signs in.
    statement = capability.capability_statement(
        fhir_base(request), rpm.__version__, _STARTED.replace(microsecond=0)
    )
    return FhirJSONResponse(statement)


_STARTED = datetime.now(UTC)


@fhir_router.get(
    "/Observation",
    response_class=FhirJSONResponse,
    summary="Search a patient's Observations: a searchset Bundle, oldest first",
    responses=_BUNDLE_REPLY,
)
async def search_observations(
    request: Request,
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    patient: Annotated[str, Query(description="The patient: `123` or `Patient/123`")],
    date: Annotated[
        list[str] | None,
        Query(
            description="Repeatable, all must hold: a prefix (eq, ne, gt, ge, lt, le; eq by"
            " default), then YYYY, YYYY-MM, YYYY-MM-DD (on the patient's clock) or a time"
            " with its zone, e.g. `ge2026-11-01`, `lt2026-11-24T07:30:00-05:00`",
        ),
    ] = None,
    code: Annotated[
        list[str] | None,
        Query(description="LOINC codes, comma-separated: `8867-4` or `http://loinc.org|8867-4`"),
    ] = None,
    ids: Ids = None,
    last_updated: LastUpdated = None,
    sort: Annotated[
        str | None, Query(alias="_sort", description="`date`: oldest first (the only order)")
    ] = None,
    include: Annotated[
        list[str] | None,
        Query(alias="_include", description="`Observation:patient`, `Observation:device`"),
    ] = None,
    count: Count = DEFAULT_COUNT,
    cursor: Cursor = None,
) -> FhirJSONResponse:
    _check_parameters(request, "Observation")
    patient_id = search.patient_reference(patient)
    dates = date or []
    conditions = [search.date_condition(value) for value in dates]
    if sort is not None and sort != "date":
        raise SearchError(f"_sort {sort!r}: Observations come oldest first only (_sort=date)")
    includes = set(include or [])
    if unknown := sorted(includes - set(capability.BY_NAME["Observation"].includes)):
        raise SearchError(
            f"_include {', '.join(unknown)} is not supported (Observation:patient and"
            " Observation:device are)"
        )
    codes = None if code is None else search.tokens(code, LOINC)
    wanted = _id_values(ids)
    after = search.decode_cursor(cursor, patient_id) if cursor else None
    count = min(count, MAX_COUNT)

    patient_record = await patient_in_view(conn, user, record, patient_id)
    await record("read", "fhir_observations", patient_ids=[patient_id], details={"date": dates})
    zone = patients.time_zone(patient_record.time_zone)
    found = await _observation_page(
        conn,
        patient_id,
        search.window(conditions, zone),
        _updated(last_updated, zone),
        codes,
        wanted,
        after,
        count,
    )
    page = [resource for _, resource in found[:count]]
    next_cursor = search.encode_cursor(found[count - 1][0]) if len(found) > count else None
    included = []
    if "Observation:patient" in includes:
        included += [
            resources.patient(row)
            for row in await repository.patients(conn, ids=[patient_id], limit=1)
        ]
    if "Observation:device" in includes:
        device_ids = {int(r["device"]["reference"].removeprefix("Device/")) for r in page}
        rows = await repository.devices(conn, ids=device_ids, limit=len(device_ids))
        included += [resources.device(row) for row in rows if _sees_device(user, row)]
    return _bundle_reply(request, "Observation", page, count, cursor, next_cursor, included)


async def _observation_page(
    conn: repository.Connection,
    patient_id: int,
    window: Sequence[Interval],
    received: Sequence[Interval],
    codes: Collection[str] | None,
    wanted: Collection[str] | None,
    after: Position | None,
    count: int,
) -> list[tuple[Position, dict[str, Any]]]:
    """Up to `count` + 1 matching Observations after `after` (one more than a page: is
    there a next?). A reading may give none that match (a cuff without a pulse, for
    heart rates): batches are read until enough match or the readings end."""
    kinds = None if codes is None else {k for c in codes for k in KINDS_OF_CODE.get(c, ())}
    keys = None if wanted is None else {k for i in wanted if (k := observation_key(i))}
    if kinds == set() or keys == set():
        return []
    # Two or more: each batch then takes at least one reading past the position.
    batch = count + 2
    found: list[tuple[Position, dict[str, Any]]] = []
    position = after
    while True:
        readings = await repository.measurements(
            conn, [patient_id], window, position, batch, received=received, kinds=kinds, keys=keys
        )
        for at, resource in observations_after(readings, position):
            position = at
            if (codes is None or resource["code"]["coding"][0]["code"] in codes) and (
                wanted is None or resource["id"] in wanted
            ):
                found.append((at, resource))
                if len(found) > count:
                    return found
        if len(readings) < batch:
            return found


@fhir_router.get(
    "/Observation/{observation_id}",
    response_class=FhirJSONResponse,
    summary="Read an Observation",
    responses=_resource_reply("Observation"),
)
async def read_observation(
    request: Request, conn: Conn, user: ReadsPatients, record: Audit, observation_id: str
) -> Response:
    key = observation_key(observation_id)
    reading = None if key is None else await repository.measurement(conn, key)
    resource = None if reading is None or key is None else _part(reading, key.part)
    if reading is None or resource is None:
        raise UnknownResource(f"no Observation with id {observation_id!r}")
    try:
        await patient_in_view(conn, user, record, reading.patient_id)
    except patients.PatientNotFound:
        raise UnknownResource(f"no Observation with id {observation_id!r}") from None
    await record("read", "fhir_observations", observation_id, [reading.patient_id])
    return _read_reply(request, resource)


def _part(reading: Measurement, part: int) -> dict[str, Any] | None:
    made = observations(reading)
    return made[part] if part < len(made) else None


@fhir_router.get(
    "/Patient",
    response_class=FhirJSONResponse,
    summary="Search the patients of the user's care teams, by id",
    responses=_BUNDLE_REPLY,
)
async def search_patients(
    request: Request,
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    identifier: Annotated[
        list[str] | None, Query(description="The clinic's reference (an MRN): `MRN-1`")
    ] = None,
    ids: Ids = None,
    last_updated: LastUpdated = None,
    count: Count = DEFAULT_COUNT,
    cursor: Cursor = None,
) -> FhirJSONResponse:
    _check_parameters(request, "Patient")
    count = min(count, MAX_COUNT)
    rows = await repository.patients(
        conn,
        after=search.row_cursor(cursor) if cursor else 0,
        limit=count + 1,
        ids=_row_ids(ids),
        refs=None if identifier is None else search.tokens(identifier, None),
        updated=_updated(last_updated),
        teams=user.visible_teams(),
    )
    page = rows[:count]
    await record("read", "fhir_patients", patient_ids=[row.id for row in page])
    next_cursor = str(page[-1].id) if len(rows) > count else None
    found = [resources.patient(row) for row in page]
    return _bundle_reply(request, "Patient", found, count, cursor, next_cursor)


@fhir_router.get(
    "/Patient/{patient_id}",
    response_class=FhirJSONResponse,
    summary="Read a patient",
    responses=_resource_reply("Patient"),
)
async def read_patient(
    request: Request, conn: Conn, user: ReadsPatients, record: Audit, patient_id: str
) -> Response:
    number = _row_id(patient_id, "Patient")
    await _patient_in_view(conn, user, record, number, f"no Patient with id {patient_id!r}")
    (row,) = await repository.patients(conn, ids=[number], limit=1)
    await record("read", "fhir_patients", number, [number])
    return _read_reply(request, resources.patient(row))


def _row_id(text: str, resource_type: str) -> int:
    (number,) = search.row_ids([text]) or (None,)
    if number is None:
        raise UnknownResource(f"no {resource_type} with id {text!r}")
    return number


async def _patient_in_view(
    conn: repository.Connection, user: Principal, record: AuditTrail, patient_id: int, gone: str
) -> patients.PatientRecord:
    """`patient_in_view`, its 404 in the words of the resource asked for."""
    try:
        return await patient_in_view(conn, user, record, patient_id)
    except patients.PatientNotFound:
        raise UnknownResource(gone) from None


@fhir_router.get(
    "/Device",
    response_class=FhirJSONResponse,
    summary="Search devices: a patient's, or those of the user's care teams' patients",
    responses=_BUNDLE_REPLY,
)
async def search_devices(
    request: Request,
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    patient: PatientFilter = None,
    ids: Ids = None,
    last_updated: LastUpdated = None,
    count: Count = DEFAULT_COUNT,
    cursor: Cursor = None,
) -> FhirJSONResponse:
    _check_parameters(request, "Device")
    count = min(count, MAX_COUNT)
    patient_ids = await _searched_patients(conn, user, record, patient)
    rows = await repository.devices(
        conn,
        after=search.row_cursor(cursor) if cursor else 0,
        limit=count + 1,
        ids=_row_ids(ids),
        patient_ids=patient_ids,
        updated=_updated(last_updated),
        teams=user.visible_teams(),
    )
    page = rows[:count]
    await record("read", "fhir_devices", patient_ids=[row.patient_id for row in page])
    next_cursor = str(page[-1].id) if len(rows) > count else None
    found = [resources.device(row) for row in page]
    return _bundle_reply(request, "Device", found, count, cursor, next_cursor)


@fhir_router.get(
    "/Device/{device_id}",
    response_class=FhirJSONResponse,
    summary="Read a device",
    responses=_resource_reply("Device"),
)
async def read_device(
    request: Request, conn: Conn, user: ReadsPatients, record: Audit, device_id: str
) -> Response:
    number = _row_id(device_id, "Device")
    rows = await repository.devices(conn, ids=[number], limit=1)
    if not rows:
        raise UnknownResource(f"no Device with id {device_id!r}")
    (row,) = rows
    if not _sees_device(user, row):
        # As for a patient out of view: the same 404 as for none, and the try audited.
        await record("denied", "device", number, [row.patient_id], status=404)
        raise UnknownResource(f"no Device with id {device_id!r}")
    await record("read", "fhir_devices", number, [row.patient_id])
    return _read_reply(request, resources.device(row))


@fhir_router.get(
    "/Flag",
    response_class=FhirJSONResponse,
    summary="Search open alerts as Flags: a patient's, or those of the user's care teams",
    responses=_BUNDLE_REPLY,
)
async def search_flags(
    request: Request,
    conn: Conn,
    user: ReadsPatients,
    record: Audit,
    patient: PatientFilter = None,
    ids: Ids = None,
    last_updated: LastUpdated = None,
    count: Count = DEFAULT_COUNT,
    cursor: Cursor = None,
) -> FhirJSONResponse:
    _check_parameters(request, "Flag")
    count = min(count, MAX_COUNT)
    patient_ids = await _searched_patients(conn, user, record, patient)
    rows = await repository.alerts(
        conn,
        after=search.row_cursor(cursor) if cursor else 0,
        limit=count + 1,
        open_only=True,
        ids=_row_ids(ids),
        patient_ids=patient_ids,
        updated=_updated(last_updated),
        teams=user.visible_teams(),
    )
    page = rows[:count]
    await record("read", "fhir_flags", patient_ids=[row.patient_id for row in page])
    next_cursor = str(page[-1].id) if len(rows) > count else None
    found = [resources.flag(row) for row in page]
    return _bundle_reply(request, "Flag", found, count, cursor, next_cursor)


@fhir_router.get(
    "/Flag/{flag_id}",
    response_class=FhirJSONResponse,
    summary="Read an alert as a Flag (inactive once resolved)",
    responses=_resource_reply("Flag"),
)
async def read_flag(
    request: Request, conn: Conn, user: ReadsPatients, record: Audit, flag_id: str
) -> Response:
    number = _row_id(flag_id, "Flag")
    try:
        alert = await alert_in_view(conn, user, record, number)
    except alerts.AlertNotFound:
        raise UnknownResource(f"no Flag with id {flag_id!r}") from None
    await record("read", "fhir_flags", number, [alert.patient_id])
    row = resources.AlertRow(
        alert.id, alert.patient_id, alert.severity, alert.status, alert.message,
        alert.opened_at, alert.resolved_at, alert.updated_at,
    )  # fmt: skip
    return _read_reply(request, resources.flag(row))


_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@fhir_router.api_route("/{path:path}", methods=_METHODS, include_in_schema=False)
async def unknown(request: Request, path: str) -> FhirJSONResponse:
    """Whatever no route above serves: a type rpm does not serve is not there (404); a
    change to one it does is not supported (405: the API is read-only)."""
    first = path.split("/", 1)[0]
    if first in capability.BY_NAME or first == "metadata":
        return operation_outcome(
            405, f"{request.method} /fhir/{path} is not supported: rpm's FHIR API is read-only"
        )
    known = ", ".join(sorted(capability.BY_NAME))
    return operation_outcome(
        404, f"/fhir/{path} is not here: rpm serves {known} (see /fhir/metadata)"
    )


class ObservationExport(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "patient_ids": [123, 124],
                    "start": "2026-11-01T00:00:00-06:00",
                    "end": "2026-12-01T00:00:00-06:00",
                }
            ]
        }
    )

    patient_ids: list[int] = Field(
        min_length=1,
        max_length=MAX_EXPORT_PATIENTS,
        description=f"Whose readings: at most {MAX_EXPORT_PATIENTS} patients a request",
    )
    start: Instant = Field(description="From this moment (included)")
    end: Instant = Field(description="Until this moment (left out)")


exports_router = APIRouter(
    prefix="/api/v1/exports",
    tags=["exports"],
    responses=problems.errors({404: "No such patient (or not one of your care teams')"}),
)


@exports_router.post(
    "/observations",
    response_class=FhirNdjsonResponse,
    summary="Export patients' readings over a period as FHIR Observations, one a line",
    responses={
        200: {
            "description": "NDJSON: one Observation a line, by patient, then oldest first",
            "content": {FHIR_NDJSON: {"schema": {"type": "string"}}},
        }
    },
)
async def export_observations(
    conn: Conn, user: ReadsPatients, record: Audit, export: ObservationExport
) -> FhirNdjsonResponse:
    if export.end <= export.start:
        raise HTTPException(422, "`end` must be after `start`")
    patient_ids = sorted(set(export.patient_ids))
    # Every patient checked, and the export audited, before the first line is sent: a
    # refusal can only be a status, and a stream once started can no longer be one.
    for patient_id in patient_ids:
        await patient_in_view(conn, user, record, patient_id)
    await record(
        "export",
        "fhir_observations",
        patient_ids=patient_ids,
        details={"start": export.start.isoformat(), "end": export.end.isoformat()},
    )
    return FhirNdjsonResponse(_lines(conn, patient_ids, [(export.start, export.end)]))


async def _lines(
    conn: repository.Connection, patient_ids: Sequence[int], window: Sequence[Interval]
) -> AsyncIterator[bytes]:
    """The Observations as NDJSON, a batch of readings at a time."""
    position: Position | None = None
    while True:
        readings = await repository.measurements(conn, patient_ids, window, position, EXPORT_BATCH)
        found = list(observations_after(readings, position))
        if found:
            position = found[-1][0]
            yield "".join(_line(resource) for _, resource in found).encode()
        if len(readings) < EXPORT_BATCH:
            return


def _line(resource: dict[str, Any]) -> str:
    return json.dumps(resource, separators=(",", ":")) + "\n"


router = APIRouter()
router.include_router(fhir_router)
router.include_router(exports_router)


async def _searched_patients(
    conn: AsyncConnection[TupleRow], user: Principal, record: AuditTrail, patient: str | None
) -> list[int] | None:
    """A search's `patient`, checked to be in the user's view (None: no such filter)."""
    if patient is None:
        return None
    patient_id = search.patient_reference(patient)
    await patient_in_view(conn, user, record, patient_id)
    return [patient_id]
