"""What the API's routes share: a database connection per request, and its errors.

A route that changes something commits inside the call it makes (the registry and the
ingest service each own their transaction), so the reply is sent only after the commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import psycopg
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from rpm.alerts import repository as alerts
from rpm.alerts.lifecycle import InvalidTransition
from rpm.care_teams import registry as care_teams
from rpm.devices import registry
from rpm.ingest import dead_letters
from rpm.ingest.service import IngestService
from rpm.patients import registry as patients
from rpm.rules import care_plans
from rpm.rules.engine import RuleEngine
from rpm.rules.templates import UnknownTemplate

# How long a request waits for a pooled connection before it is told to come back.
CONNECTION_TIMEOUT_S = 5.0
RETRY_AFTER_S = 5


def _pool(request: Request) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


async def _connection(request: Request) -> AsyncIterator[AsyncConnection[TupleRow]]:
    async with _pool(request).connection(timeout=CONNECTION_TIMEOUT_S) as conn:
        yield conn


def _ingest_service(request: Request) -> IngestService:
    service: IngestService = request.app.state.ingest
    return service


def _rule_engine(request: Request) -> RuleEngine:
    engine: RuleEngine = request.app.state.rules
    return engine


def _actor(
    x_rpm_user: Annotated[
        str,
        Header(
            min_length=1,
            max_length=200,
            description="Who makes the change, kept with it (until sign-in: issue 7)",
        ),
    ],
) -> str:
    return x_rpm_user


Pool = Annotated[AsyncConnectionPool, Depends(_pool)]
Conn = Annotated[AsyncConnection[TupleRow], Depends(_connection)]
Ingest = Annotated[IngestService, Depends(_ingest_service)]
Rules = Annotated[RuleEngine, Depends(_rule_engine)]
Actor = Annotated[str, Depends(_actor)]


# The core's errors carry a message meant for people; this says which status each is.
_STATUS_OF: dict[type[Exception], int] = {
    registry.NotFound: 404,
    registry.Conflict: 409,
    registry.RegistryError: 422,
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
}


def install_error_handlers(app: FastAPI) -> None:
    """Refusals become 4xx replies with the core's message; a database that is down or
    not yet ready is a 503 that says so, never a bare 500."""

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        code = next(_STATUS_OF[cls] for cls in type(exc).__mro__ if cls in _STATUS_OF)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": "the database is not available at the moment; retry shortly"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    for refusal in _STATUS_OF:
        app.add_exception_handler(refusal, refused)
    for error in (PoolClosed, PoolTimeout, psycopg.OperationalError):
        app.add_exception_handler(error, unavailable)
