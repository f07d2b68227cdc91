"""FHIR Bulk Data export under /fhir (Bulk Data IG v2) and the SMART Backend Services
sign-in that EHRs run it with (docs/fhir.md).

- `GET /fhir/Patient/$export`, `GET /fhir/Group/<care team id>/$export`: the kick-off
  (`Prefer: respond-async`; `_type`, `_since`, `_outputFormat`), 202 with the status URL
  in Content-Location; the job is run by the exporter (`rpm.fhir.exporter`);
- `GET /fhir/bulk-status/<id>`: 202 with Retry-After and X-Progress while it runs, then
  200 with the manifest; `DELETE` cancels it (202);
- `GET /fhir/bulk-files/<id>/<Type>-<n>.ndjson`: a file, for the same requester only;
- `POST /fhir/auth/token`: client_credentials with a signed JWT assertion, advertised at
  `/fhir/.well-known/smart-configuration`;
- `/api/v1/smart-clients`: admins register the clients and their public keys.

A Backend Services token reads what its scopes name, every patient (as an integration
does); a staff member's bearer token works too, within their care teams, as the rest of
/fhir. Kick-offs and downloads are audited per patient. Refusals under /fhir are
OperationOutcomes; the token endpoint answers in OAuth 2's words (RFC 6749 5.2).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field

from rpm.api import problems
from rpm.api.deps import (
    BEARER,
    Audit,
    Conn,
    Forbidden,
    ManagesUsers,
    NotSignedIn,
    RequestBody,
    check_permission,
    client_ip,
)
from rpm.api.fhir import (
    FHIR_NDJSON,
    FhirJSONResponse,
    FhirRoute,
    UnknownResource,
    fhir_base,
    operation_outcome,
)
from rpm.auth import audit, clients, smart
from rpm.auth import service as auth_service
from rpm.auth.access import Permission
from rpm.care_teams import registry as care_teams
from rpm.config import Settings
from rpm.fhir import bulk, exports, repository, search
from rpm.fhir.capability import TOKEN_PATH
from rpm.fhir.exporter import BulkExporter
from rpm.fhir.search import SearchError

# How long a client is asked to wait between two polls of a running export.
RETRY_AFTER_S = 5
# Patients read per query when an export's patients are gathered at kick-off.
_PATIENT_PAGE = 1000
_FILE_NAME = re.compile(r"([A-Z][A-Za-z]+)-([1-9][0-9]{0,8})\.ndjson")


@dataclass(frozen=True)
class Requester:
    """Who asks for an export: a Backend Services client or a staff member."""

    owner: str
    context: audit.Context
    # The care teams whose patients it sees (None: every patient).
    teams: Collection[int] | None
    # The types its scopes read.
    readable: set[str]

    async def record(
        self, conn: repository.Connection, action: str, resource: str, resource_id: object,
        patient_ids: Collection[int] = (), details: dict[str, Any] | None = None,
        status: int = 200,
    ) -> None:  # fmt: skip
        await audit.record(
            conn, self.context, action, resource, str(resource_id), patient_ids or (None,),
            status, details,
        )  # fmt: skip


async def _requester(
    request: Request,
    conn: Conn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Requester:
    credential = credentials.credentials.strip() if credentials else ""
    if not credential:
        raise NotSignedIn(
            "sign in first: send 'Authorization: Bearer <token>' with an access token from"
            f" POST /fhir{TOKEN_PATH} (SMART Backend Services) or POST /api/v1/auth/token"
        )
    holder = await clients.holder(conn, credential)
    if holder is not None:
        context = audit.Context(
            None, f"smart:{holder.name}", "backend_service", request.method, request.url.path,
            client_ip(request),
        )  # fmt: skip
        readable = smart.readable(holder.scopes, bulk.TYPES)
        return Requester(f"client:{holder.client_id}", context, None, readable)
    session = await auth_service.bearer(conn, credential)
    if session is None:
        raise NotSignedIn("the access token is unknown, expired or revoked: get a new one")
    principal = session.principal
    await check_permission(request, conn, principal, Permission.READ_PATIENT_DATA)
    context = audit.Context(
        principal.user_id, principal.username, principal.role.value, request.method,
        request.url.path, client_ip(request),
    )  # fmt: skip
    return Requester(
        f"user:{principal.user_id}", context, principal.visible_teams(), set(bulk.TYPES)
    )


Exporting = Annotated[Requester, Depends(_requester)]


def _outcome_reply(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/fhir+json": {"schema": {"type": "object", "title": "OperationOutcome"}}
        },
    }


bulk_router = APIRouter(
    prefix="/fhir",
    tags=["fhir bulk data"],
    route_class=FhirRoute,
    responses={
        400: _outcome_reply("A parameter or header the export cannot take"),
        401: _outcome_reply("No access token, or one unknown or expired"),
        403: _outcome_reply("The token's scopes (or the role) do not read what is asked"),
        404: _outcome_reply("No such export, file or group (or not this requester's)"),
        "4XX": _outcome_reply("Any other refusal"),
    },
)

TypeParam = Annotated[
    list[str] | None,
    Query(alias="_type", description="Types, comma-separated: Patient, Observation, Device, Flag"),
]
SinceParam = Annotated[
    str | None,
    Query(
        alias="_since", description="Only resources changed from this instant on (with its zone)"
    ),
]
FormatParam = Annotated[
    str | None, Query(alias="_outputFormat", description="application/fhir+ndjson (the only one)")
]
_KICK_OFF_REPLY: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: poll the status URL in Content-Location"}
}


@bulk_router.get(
    "/Patient/$export",
    status_code=202,
    summary="Bulk Data kick-off: every patient's data (of the requester's view)",
    responses=_KICK_OFF_REPLY,
)
async def export_patients(
    request: Request,
    conn: Conn,
    requester: Exporting,
    types: TypeParam = None,
    since: SinceParam = None,
    output_format: FormatParam = None,
) -> Response:
    return await _kick_off(request, conn, requester, None, types, since, output_format)


@bulk_router.get(
    "/Group/{group_id}/$export",
    status_code=202,
    summary="Bulk Data kick-off: a care team's patients' data (the Group is the care team)",
    responses=_KICK_OFF_REPLY,
)
async def export_group(
    request: Request,
    conn: Conn,
    requester: Exporting,
    group_id: str,
    types: TypeParam = None,
    since: SinceParam = None,
    output_format: FormatParam = None,
) -> Response:
    gone = f"no Group with id {group_id!r} (a Group is a care team)"
    (team_id,) = search.row_ids([group_id]) or (0,)
    try:
        await care_teams.team(conn, team_id)
    except care_teams.CareTeamNotFound:
        raise UnknownResource(gone) from None
    if requester.teams is not None and team_id not in requester.teams:
        await requester.record(conn, "denied", "care_team", team_id, status=404)
        raise UnknownResource(gone)
    return await _kick_off(request, conn, requester, team_id, types, since, output_format)


async def _kick_off(
    request: Request,
    conn: repository.Connection,
    requester: Requester,
    team_id: int | None,
    types: list[str] | None,
    since_text: str | None,
    output_format: str | None,
) -> Response:
    if "respond-async" not in request.headers.get("prefer", ""):
        raise SearchError("a kick-off needs the header Prefer: respond-async")
    bulk.check_parameters(request.query_params.keys())
    bulk.output_format(output_format)
    since = bulk.since(since_text)
    try:
        chosen = bulk.types(types, requester.readable)
    except bulk.NotPermitted as exc:
        await requester.record(conn, "denied", "fhir_bulk_export", "kick-off", status=403)
        raise Forbidden(str(exc)) from None
    teams = requester.teams if team_id is None else [team_id]
    patient_ids = await _patients(conn, teams)
    job = await exports.create(
        conn, requester.owner, str(request.url), team_id, patient_ids, chosen, since
    )
    await requester.record(
        conn, "export", "fhir_bulk_export", job.id, patient_ids,
        {"types": chosen, "since": since_text, "group": team_id},
    )  # fmt: skip
    exporter: BulkExporter | None = getattr(request.app.state, "bulk_exporter", None)
    if exporter is not None:
        exporter.wake()
    status_url = f"{fhir_base(request)}/bulk-status/{job.id}"
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational",
                   "diagnostics": f"export accepted: poll {status_url}"}],
    }  # fmt: skip
    return FhirJSONResponse(body, status_code=202, headers={"Content-Location": status_url})


async def _patients(conn: repository.Connection, teams: Collection[int] | None) -> list[int]:
    """The ids of the patients in scope now: the export's patients, whatever comes later."""
    found: list[int] = []
    while True:
        rows = await repository.patients(
            conn, after=found[-1] if found else 0, limit=_PATIENT_PAGE, teams=teams
        )
        found += [row.id for row in rows]
        if len(rows) < _PATIENT_PAGE:
            return found


def _export_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise UnknownResource(f"no export {text!r}") from None


@bulk_router.get(
    "/bulk-status/{export_id}",
    summary="An export's status: 202 while it runs, then its manifest",
    responses={
        200: {"description": "Complete: the manifest (transactionTime, output, error)"},
        202: {"description": "Running: X-Progress says how far; come back after Retry-After"},
        500: _outcome_reply("The export failed: `diagnostics` says why"),
    },
)
async def export_status(
    request: Request, conn: Conn, requester: Exporting, export_id: str
) -> Response:
    job = await exports.get(conn, _export_id(export_id), requester.owner)
    if job is None:
        raise UnknownResource(f"no export {export_id!r} (cancelled, expired, or not yours)")
    if job.status == "pending":
        return Response(
            status_code=202,
            headers={
                "Retry-After": str(RETRY_AFTER_S),
                "X-Progress": bulk.progress_text(job.types, job.progress),
            },
        )
    assert job.expires_at is not None
    expires = {"Expires": format_datetime(job.expires_at.astimezone(UTC), usegmt=True)}
    if job.status == "failed":
        return operation_outcome(500, f"the export failed: {job.error}", expires)
    file_url = f"{fhir_base(request)}/bulk-files/{job.id}/{{type}}-{{seq}}.ndjson"
    files = await exports.files(conn, job.id)
    return JSONResponse(bulk.manifest(job.transaction_time, job.request, files, file_url),
                        headers=expires)  # fmt: skip


@bulk_router.delete(
    "/bulk-status/{export_id}",
    status_code=202,
    summary="Cancel an export (or discard a finished one's files)",
    responses={202: {"description": "Cancelled: its status URL answers 404 from now on"}},
)
async def cancel_export(conn: Conn, requester: Exporting, export_id: str) -> Response:
    found = _export_id(export_id)
    if not await exports.delete(conn, found, requester.owner):
        raise UnknownResource(f"no export {export_id!r} (cancelled, expired, or not yours)")
    await requester.record(conn, "cancel", "fhir_bulk_export", found)
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational",
                   "diagnostics": f"export {found} cancelled"}],
    }  # fmt: skip
    return FhirJSONResponse(body, status_code=202)


@bulk_router.get(
    "/bulk-files/{export_id}/{file_name}",
    summary="A file of a complete export: NDJSON, one resource a line",
    responses={200: {"content": {FHIR_NDJSON: {"schema": {"type": "string"}}}}},
)
async def export_file(conn: Conn, requester: Exporting, export_id: str, file_name: str) -> Response:
    match = _FILE_NAME.fullmatch(file_name)
    found = _export_id(export_id)
    stored = None
    if match is not None:
        stored = await exports.file(conn, found, requester.owner, match[1], int(match[2]))
    if stored is None:
        raise UnknownResource(f"no file {file_name!r} in export {export_id!r}")
    await requester.record(
        conn, "download", "fhir_bulk_file", f"{found}/{file_name}", stored.patient_ids
    )
    return Response(stored.body, media_type=FHIR_NDJSON)


@bulk_router.get(
    "/.well-known/smart-configuration",
    summary="SMART configuration: where and how a backend service gets its access token",
)
async def smart_configuration(request: Request) -> JSONResponse:
    # Public, as SMART has it: a client reads it before it signs in.
    return JSONResponse(
        {
            "token_endpoint": fhir_base(request) + TOKEN_PATH,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(smart.ALGORITHMS),
            "scopes_supported": ["system/*.read", "system/*.rs"]
            + [f"system/{t}.read" for t in bulk.TYPES],
            "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        }
    )


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@bulk_router.post(
    TOKEN_PATH,
    summary="SMART Backend Services: an access token for a client's signed assertion",
    responses={
        200: {"description": "access_token, token_type bearer, expires_in, scope"},
        400: {
            "description": "OAuth 2 error: invalid_request, unsupported_grant_type, invalid_scope"
        },
        401: {
            "description": "OAuth 2 error invalid_client: the assertion does not prove the client"
        },
    },
)
async def token(request: Request, conn: Conn) -> JSONResponse:
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if fields.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    if fields.get("client_assertion_type") != smart.CLIENT_ASSERTION_TYPE:
        return _oauth_error(
            400, "invalid_request", f"client_assertion_type must be {smart.CLIENT_ASSERTION_TYPE}"
        )
    assertion = fields.get("client_assertion", "")
    settings: Settings = request.app.state.settings
    context = audit.Context(
        None, "smart:unknown", "backend_service", request.method, request.url.path,
        client_ip(request),
    )  # fmt: skip
    try:
        client, issued = await clients.grant(
            conn, assertion, fields.get("scope", ""), fhir_base(request) + TOKEN_PATH,
            bulk.TYPES, settings.bulk.token_ttl_s,
        )  # fmt: skip
    except smart.SmartRefusal as exc:
        await audit.record(
            conn, context, "sign_in_refused", "smart_token", status=401, details={"why": str(exc)}
        )
        status = 400 if exc.error == "invalid_scope" else 401
        return _oauth_error(status, exc.error, str(exc))
    signed_in = audit.Context(
        None, f"smart:{client.name}", "backend_service", request.method, request.url.path,
        client_ip(request),
    )  # fmt: skip
    await audit.record(conn, signed_in, "sign_in", "smart_token", client.client_id)
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "token_type": "bearer",
            "expires_in": issued.expires_in,
            "scope": " ".join(issued.scopes),
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


# Registration, for admins (problem details, as all of /api/v1).

clients_router = APIRouter(
    prefix="/api/v1/smart-clients",
    tags=["SMART clients"],
    responses=problems.errors({404: "No such client", 409: "A client of that name exists"}),
)


class ClientRequest(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "clinic-ehr",
                    "jwks": {"keys": [{"kty": "EC", "crv": "P-384", "kid": "ehr-1",
                                       "x": "…", "y": "…", "alg": "ES384"}]},
                    "scopes": ["system/*.read"],
                }
            ]
        }
    )  # fmt: skip

    name: str = Field(min_length=1, max_length=100)
    jwks: dict[str, Any] = Field(description="The client's JWK Set: public RSA or P-384 keys")
    scopes: list[str] = Field(
        min_length=1, max_length=20, description="The most it may be granted: system/*.read, …"
    )


class ClientReply(BaseModel):
    client_id: str = Field(description="Its `iss` and `sub` in every assertion")
    name: str
    scopes: list[str]
    active: bool
    created_at: datetime
    created_by: str
    jwks: dict[str, Any]


class ClientChange(RequestBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"active": False}]})

    active: bool = Field(description="false: its tokens end now, and it gets no new one")


def _reply(record: clients.ClientRecord) -> ClientReply:
    return ClientReply(
        client_id=record.client_id, name=record.name, scopes=record.scopes, active=record.active,
        created_at=record.created_at, created_by=record.created_by, jwks=record.jwks,
    )  # fmt: skip


@clients_router.post("", status_code=201, summary="Register a Backend Services client")
async def register_client(
    conn: Conn, user: ManagesUsers, record: Audit, body: ClientRequest
) -> ClientReply:
    registered = await clients.register(conn, body.name, body.jwks, body.scopes, user.username)
    await record("create", "smart_client", registered.client_id)
    return _reply(registered)


@clients_router.get("", summary="The registered Backend Services clients")
async def list_clients(conn: Conn, user: ManagesUsers) -> list[ClientReply]:
    return [_reply(c) for c in await clients.list_clients(conn)]


@clients_router.patch(
    "/{client_id}", summary="Deactivate a client (its tokens end) or reactivate it"
)
async def change_client(
    conn: Conn, user: ManagesUsers, record: Audit, client_id: str, body: ClientChange
) -> ClientReply:
    changed = await clients.set_active(conn, client_id, body.active)
    await record("update", "smart_client", client_id, details={"active": body.active})
    return _reply(changed)


router = APIRouter()
router.include_router(bulk_router)
router.include_router(clients_router)
