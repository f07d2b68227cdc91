"""What the API's routes share: a database connection per request, and its errors.

A route that changes something commits inside the call it makes (the registry and the
ingest service each own their transaction), so the reply is sent only after the commit.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout
from pydantic import BaseModel, ConfigDict, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from rpm.alerts import repository as alerts
from rpm.alerts.lifecycle import InvalidTransition
from rpm.api import problems
from rpm.api.problems import PROBLEM_JSON
from rpm.auth import audit, clients
from rpm.auth import repository as users
from rpm.auth import service as auth_service
from rpm.auth.access import Permission, Principal
from rpm.auth.passwords import WeakPassword
from rpm.care_teams import registry as care_teams
from rpm.devices import broker_identities, registry
from rpm.devices.identities import Identities
from rpm.ehr import repository as ehr
from rpm.ingest import dead_letters
from rpm.ingest.service import IngestService
from rpm.patients import registry as patients
from rpm.program import time_logs
from rpm.rules import care_plans
from rpm.rules.care_plans import PlanCache
from rpm.rules.engine import RuleEngine
from rpm.rules.templates import UnknownTemplate


class RequestBody(BaseModel):
    """What every request body is: a field the model does not name is refused (422), not
    ignored, so that a body cannot set what the route does not offer (mass assignment)
    and a misspelt field is not silently dropped."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if (where := _nul_at(data)) is not None:
            raise ValueError(f"{where or 'the body'}: {_NO_NUL}")
        return data


# PostgreSQL's text cannot hold it: refused at the edge (422), not failed in the store (500).
_NO_NUL = "text may not contain the NUL character (\\u0000, %00)"


def _nul_at(value: object, where: str = "") -> str | None:
    """Where in a JSON value (a dotted path) a text holds the NUL character, if anywhere."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        items: Iterable[tuple[object, object]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        at = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and "\x00" in key:
            return at
        if (found := _nul_at(item, at)) is not None:
            return found
    return None


async def refuse_nul(request: Request) -> None:
    """Every route's: a path or query parameter with the NUL character is refused (422),
    as `RequestBody` refuses it in a body."""
    _refuse_nul_in(
        ("path", list(request.path_params.items())),
        ("query", request.query_params.multi_items()),
    )


async def refuse_nul_in_form(request: Request) -> None:
    """A form's fields (the UI's) with the NUL character: refused (422) as anywhere else.
    Reads the form, so not for routes that read their raw body (Twilio's, the webhooks)."""
    _refuse_nul_in(("body", (await request.form()).multi_items()))


def _refuse_nul_in(*places: tuple[str, Iterable[tuple[str, object]]]) -> None:
    found = [
        {"loc": [place, name], "msg": _NO_NUL, "type": "value_error"}
        for place, params in places
        for name, value in params
        if "\x00" in name or (isinstance(value, str) and "\x00" in value)
    ]
    if found:
        raise RequestValidationError(found)


# How long a request waits for a pooled connection before it is told to come back.
CONNECTION_TIMEOUT_S = 5.0
RETRY_AFTER_S = 5


def _pool(request: Request) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


@contextlib.asynccontextmanager
async def pooled_connection(request: Request) -> AsyncIterator[AsyncConnection[TupleRow]]:
    """In autocommit, as the CLI's: each core call owns its transaction, and what a
    request records of itself (the audit trail, a failed sign-in) stays recorded when the
    request then fails."""
    async with _pool(request).connection(timeout=CONNECTION_TIMEOUT_S) as conn:
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            # The pool's other users (ingest, rules) expect their own transactions.
            with contextlib.suppress(psycopg.Error):
                await conn.set_autocommit(False)


async def _connection(request: Request) -> AsyncIterator[AsyncConnection[TupleRow]]:
    """The request's connection, for its whole life (`pooled_connection`)."""
    async with pooled_connection(request) as conn:
        yield conn


def _ingest_service(request: Request) -> IngestService:
    service: IngestService = request.app.state.ingest
    return service


def _identities(request: Request) -> Identities | None:
    """The broker's device identities, or None when rpm does not manage them."""
    identities: Identities | None = request.app.state.identities
    return identities


def _rule_engine(request: Request) -> RuleEngine:
    engine: RuleEngine = request.app.state.rules
    return engine


def _plan_cache(request: Request) -> PlanCache:
    """The parsed plans the rule engine keeps, which reads share (`PlanCache`)."""
    plans: PlanCache = request.app.state.plans
    return plans


class NotSignedIn(Exception):
    """No credential, or one that is unknown, expired or revoked (401)."""


class Forbidden(Exception):
    """The role does not hold the permission (403)."""


def client_ip(request: Request) -> str | None:
    """The peer's address (a proxy's, behind one: uvicorn's --forwarded-allow-ips then
    puts the client's there); None when it is not an IP address (a test client)."""
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


# As the schema shows the sign-in (/docs gets its "Authorize"); without auto_error, so a
# request without it gets our 401, which says what to do.
BEARER = HTTPBearer(
    auto_error=False,
    description="A token from POST /api/v1/auth/token, or an integration's API key",
)


async def _principal(
    conn: Conn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Principal:
    credential = credentials.credentials if credentials else ""
    if not credential.strip():
        raise NotSignedIn(
            "sign in first: send 'Authorization: Bearer <token>' with a token from"
            " POST /api/v1/auth/token, or an API key"
        )
    session = await auth_service.bearer(conn, credential.strip())
    if session is None:
        raise NotSignedIn("the token or API key is unknown, expired or revoked: sign in again")
    return session.principal


SignedInUser = Annotated[Principal, Depends(_principal)]


def audit_context(request: Request, principal: Principal) -> audit.Context:
    """Who makes this request, and how: what each audit row of it records."""
    return audit.Context(
        principal.user_id,
        principal.username,
        principal.role.value,
        request.method,
        request.url.path,
        client_ip(request),
    )


async def check_permission(
    request: Request, conn: AsyncConnection[TupleRow], principal: Principal, permission: Permission
) -> None:
    """`Forbidden` unless the user's role holds the permission; a refusal is audited.
    For the API's bearer users and the UI's browser users alike."""
    if not principal.may(permission):
        await audit.record(
            conn, audit_context(request, principal), "denied", permission.name.lower(), status=403
        )
        raise Forbidden(f"a user with the role {principal.role.value} may not {permission.value}")


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the signed-in user, if their role holds the permission."""

    async def allowed(request: Request, conn: Conn, principal: SignedInUser) -> Principal:
        await check_permission(request, conn, principal, permission)
        return principal

    return allowed


@dataclass(frozen=True)
class AuditTrail:
    """Records what this request did, as whom, from where (`rpm.auth.audit`)."""

    conn: AsyncConnection[TupleRow]
    context: audit.Context

    async def __call__(
        self,
        action: str,
        resource: str,
        resource_id: object = None,
        patient_ids: Iterable[int | None] = (None,),
        details: dict[str, Any] | None = None,
        status: int = 200,
    ) -> None:
        await audit.record(
            self.conn,
            self.context,
            action,
            resource,
            None if resource_id is None else str(resource_id),
            patient_ids,
            status,
            details,
        )


def _audit_trail(request: Request, conn: Conn, principal: SignedInUser) -> AuditTrail:
    return AuditTrail(conn, audit_context(request, principal))


Pool = Annotated[AsyncConnectionPool, Depends(_pool)]
Conn = Annotated[AsyncConnection[TupleRow], Depends(_connection)]
Ingest = Annotated[IngestService, Depends(_ingest_service)]
Rules = Annotated[RuleEngine, Depends(_rule_engine)]
# A page of a list: where a ranked list's page starts, and at most how many rows it holds.
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
PageLimit = Annotated[int, Query(ge=1, le=1000)]
Plans = Annotated[PlanCache, Depends(_plan_cache)]
DeviceIdentities = Annotated[Identities | None, Depends(_identities)]
Audit = Annotated[AuditTrail, Depends(_audit_trail)]
# The signed-in user, if their role may do what the route does (function level).
ReadsPatients = Annotated[Principal, Depends(require(Permission.READ_PATIENT_DATA))]
EnrolsPatients = Annotated[Principal, Depends(require(Permission.ENROL_PATIENTS))]
ChangesCarePlans = Annotated[Principal, Depends(require(Permission.CHANGE_CARE_PLANS))]
ActsOnAlerts = Annotated[Principal, Depends(require(Permission.ACT_ON_ALERTS))]
ReadsCareTeams = Annotated[Principal, Depends(require(Permission.READ_CARE_TEAMS))]
CreatesCareTeams = Annotated[Principal, Depends(require(Permission.CREATE_CARE_TEAMS))]
ManagesRota = Annotated[Principal, Depends(require(Permission.MANAGE_ROTA))]
ManagesDevices = Annotated[Principal, Depends(require(Permission.MANAGE_DEVICES))]
ManagesDeadLetters = Annotated[Principal, Depends(require(Permission.MANAGE_DEAD_LETTERS))]
ManagesUsers = Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]
ReadsAudit = Annotated[Principal, Depends(require(Permission.READ_AUDIT))]
LogsTime = Annotated[Principal, Depends(require(Permission.LOG_TIME))]
ReadsProgramReports = Annotated[Principal, Depends(require(Permission.READ_PROGRAM_REPORTS))]
ManagesEhrFeeds = Annotated[Principal, Depends(require(Permission.MANAGE_EHR_FEEDS))]
HandsOff = Annotated[Principal, Depends(require(Permission.HAND_OFF))]


async def patient_in_view(
    conn: AsyncConnection[TupleRow], user: Principal, trail: AuditTrail, patient_id: int
) -> patients.PatientRecord:
    """The patient, if the user's care teams include theirs (object level). Otherwise the
    same 404 as for no patient at all, so that trying ids tells nothing about other
    teams' patients; the attempt is audited."""
    record = await patients.get(conn, patient_id)
    if not user.sees_team(record.care_team_id):
        await trail("denied", "patient", patient_id, [patient_id], status=404)
        raise patients.PatientNotFound(f"no patient with id {patient_id}")
    return record


async def alert_in_view(
    conn: AsyncConnection[TupleRow], user: Principal, trail: AuditTrail, alert_id: int
) -> alerts.AlertRecord:
    """The alert, if its patient is in view (`patient_in_view`); else 404 as for none."""
    alert = await alerts.get(conn, alert_id)
    if not user.sees_all_patients:
        team_id = await alerts.care_team_of(conn, alert_id)
        if not user.sees_team(team_id):
            await trail("denied", "alert", alert_id, [alert.patient_id], status=404)
            raise alerts.AlertNotFound(f"no alert with id {alert_id}")
    return alert


async def check_team_choice(user: Principal, trail: AuditTrail, care_team_id: int | None) -> None:
    """A care manager puts patients in their own care teams only (admins: any, or none);
    a refusal is audited."""
    if not user.sees_team(care_team_id):
        await trail("denied", "care_team", care_team_id, status=403)
        yours = ", ".join(str(t) for t in sorted(user.team_ids)) or "none"
        raise Forbidden(
            f"a {user.role.value} may put patients only in their own care teams"
            f" (yours: {yours}); care team {care_team_id} is not one of them"
        )


# The core's errors carry a message meant for people; this says which status each is.
_STATUS_OF: dict[type[Exception], int] = {
    registry.NotFound: 404,
    registry.Conflict: 409,
    registry.RegistryError: 422,
    # The broker answered with an error (a bad gateway), or did not answer (unavailable).
    broker_identities.BrokerRefused: 502,
    broker_identities.BrokerUnavailable: 503,
    broker_identities.ServiceClient: 409,
    dead_letters.DeadLetterNotFound: 404,
    dead_letters.AlreadyReplayed: 409,
    patients.PatientNotFound: 404,
    patients.PatientConflict: 409,
    patients.PatientError: 422,
    care_plans.PlanNotFound: 404,
    care_plans.StalePlan: 409,
    care_plans.CarePlanError: 422,
    UnknownTemplate: 422,
    alerts.AlertNotFound: 404,
    InvalidTransition: 409,
    care_teams.CareTeamNotFound: 404,
    care_teams.CareTeamConflict: 409,
    care_teams.CareTeamError: 422,
    users.UserNotFound: 404,
    users.UserConflict: 409,
    users.UserError: 422,
    WeakPassword: 422,
    auth_service.SignInRefused: 401,
    NotSignedIn: 401,
    Forbidden: 403,
    time_logs.TimeLogNotFound: 404,
    time_logs.TimeLogConflict: 409,
    time_logs.TimeLogError: 422,
    ehr.EndpointNotFound: 404,
    ehr.EndpointConflict: 409,
    ehr.EhrError: 422,
    clients.ClientNotFound: 404,
    clients.ClientConflict: 409,
    clients.ClientError: 422,
}


def status_of(refusal: Exception) -> int:
    """The HTTP status of one of the core's refusals (the most specific class listed)."""
    return next(_STATUS_OF[cls] for cls in type(refusal).__mro__ if cls in _STATUS_OF)


def problem(
    request: Request,
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """An RFC 9457 problem details reply: every API error has this one shape, `detail`
    saying what was wrong in words a person can act on."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extensions,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def install_error_handlers(app: FastAPI) -> None:
    """Refusals become 4xx replies with the core's message; a database that is down or
    not yet ready is a 503 that says so, never a bare 500. All as problem details."""

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        code = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
        if code == 503:
            headers = {"Retry-After": str(RETRY_AFTER_S)}
        return problem(request, code, str(exc), headers)

    async def locked(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, auth_service.SignInLocked)
        wait_s = exc.retry_after_s(datetime.now(UTC))
        return problem(request, 429, str(exc), {"Retry-After": str(wait_s)})

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return problem(
            request,
            503,
            "the database is not available at the moment; retry shortly",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    async def out_of_range(request: Request, exc: Exception) -> JSONResponse:
        # Only a request's own numbers reach PostgreSQL: an id or count past its column's
        # type (bigint, integer) is the client's to fix, not a server error.
        reason = (str(exc).strip().splitlines() or ["out of range"])[0]
        return problem(request, 422, f"a number in the request is out of range ({reason})")

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = str(exc.detail)
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's "error parsing the body"
            detail = "the body is not JSON in UTF-8: send it encoded as UTF-8"
        return problem(request, exc.status_code, detail, exc.headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Without pydantic's `input`: it would echo what was sent, passwords included.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        where = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in errors[:5]
        )
        return problem(request, 422, f"the request is not valid: {where}", errors=errors)

    for refusal in _STATUS_OF:
        app.add_exception_handler(refusal, refused)
    app.add_exception_handler(auth_service.SignInLocked, locked)
    for error in (PoolClosed, PoolTimeout, psycopg.OperationalError):
        app.add_exception_handler(error, unavailable)
    app.add_exception_handler(psycopg.errors.NumericValueOutOfRange, out_of_range)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    problems.document(app)
