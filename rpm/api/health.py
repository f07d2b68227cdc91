"""Liveness and readiness, for orchestrators and for people."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rpm.health import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database and the broker are connected",
    responses={503: {"description": "A dependency is not connected; the body says which."}},
)
async def readyz(request: Request) -> JSONResponse:
    health: Health = request.app.state.health
    body = {"ready": health.ready, **health.snapshot()}
    return JSONResponse(body, status_code=200 if health.ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
