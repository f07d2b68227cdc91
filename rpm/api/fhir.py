"""Readings as FHIR R4 Observations over HTTP (docs/fhir.md): one patient's, searched by
date, as a searchset Bundle (`GET /fhir/Observation`), and several patients' over a
period as NDJSON, one Observation a line (`POST /api/v1/exports/observations`).

Both take the readings API's permission, care-team check and audit. Under /fhir a
refusal is an OperationOutcome, FHIR's error body, in the same words as the problem
details of /api/v1, which the export keeps.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from itertools import islice
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import ConfigDict, Field

from rpm.api import problems
from rpm.api.deps import Audit, Conn, ReadsPatients, RequestBody, patient_in_view
from rpm.api.values import Instant
from rpm.fhir import repository, search
from rpm.fhir.observations import Position, observations_after
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
SEARCH_PARAMETERS = {"patient", "date", "_count", "_cursor"}

# FHIR's issue type (http://hl7.org/fhir/issue-type) of each status a refusal can have.
_ISSUE_TYPE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    429: "throttled",
    503: "transient",
}
# What a client must see of a refusal's headers: how to sign in, when to come back.
_KEPT_HEADERS = ("www-authenticate", "retry-after")


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
        404: _outcome_reply("No such patient (or not one of the user's care teams')"),
        # Every refusal is an OperationOutcome (and FastAPI then adds no 422 of its own).
        "4XX": _outcome_reply("Any other refusal"),
        503: _outcome_reply("The database is not available at the moment; retry"),
    },
)


@fhir_router.get(
    "/Observation",
    response_class=FhirJSONResponse,
    summary="Search a patient's Observations by date: a searchset Bundle, oldest first",
    responses={
        200: {
            "description": "A searchset Bundle: a page of Observations, with a `next` link"
            " while there are more",
            "content": {FHIR_JSON: {"schema": {"type": "object", "title": "Bundle"}}},
        }
    },
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
    count: Annotated[
        int, Query(alias="_count", ge=1, description=f"Per page; at most {MAX_COUNT} are sent")
    ] = DEFAULT_COUNT,
    cursor: Annotated[
        str | None, Query(alias="_cursor", description="Set by the `next` link: follow it")
    ] = None,
) -> FhirJSONResponse:
    if unknown := sorted(set(request.query_params) - SEARCH_PARAMETERS):
        raise SearchError(
            f"not supported here: {', '.join(unknown)} (an Observation search takes"
            f" {', '.join(sorted(SEARCH_PARAMETERS))})"
        )
    patient_id = search.patient_reference(patient)
    dates = date or []
    conditions = [search.date_condition(value) for value in dates]
    after = search.decode_cursor(cursor, patient_id) if cursor else None
    count = min(count, MAX_COUNT)

    patient_record = await patient_in_view(conn, user, record, patient_id)
    await record("read", "fhir_observations", patient_ids=[patient_id], details={"date": dates})
    window = search.window(conditions, patients.time_zone(patient_record.time_zone))
    # Enough readings for a page and one more Observation (the first may be the previous
    # page's last, left out; each gives at least one).
    readings = await repository.measurements(conn, [patient_id], window, after, count + 2)
    found = list(islice(observations_after(readings, after), count + 1))
    page = found[:count]

    base = str(request.base_url).rstrip("/") + "/fhir"
    next_url = None
    if len(found) > count:
        next_cursor = search.encode_cursor(page[-1][0])
        next_url = search.search_url(base, patient_id, dates, count, next_cursor)
    self_url = search.search_url(base, patient_id, dates, count, cursor)
    resources = [resource for _, resource in page]
    return FhirJSONResponse(search.searchset(base, resources, self_url, next_url))


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
