"""The feeds of readings into clinics' EHRs, for administrators: the FHIR servers to push
to (add, pause, resume) and their outboxes (what waits, what was refused and why, retry)."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rpm.api import problems
from rpm.api.deps import Audit, Conn, ManagesEhrFeeds, PageLimit, RequestBody
from rpm.api.values import in_utc
from rpm.ehr import repository
from rpm.ehr.repository import Endpoint, NewEndpoint, Push

router = APIRouter(
    prefix="/api/v1/ehr",
    tags=["EHR feeds"],
    responses=problems.errors(
        {404: "No such EHR endpoint", 409: "An EHR endpoint of that name exists already"}
    ),
)

MAX_RETRY = 1000


class EndpointRequest(RequestBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "clinic-ehr",
                    "base_url": "https://ehr.example.org/fhir/R4",
                    "patient_identifier_system": "urn:oid:2.16.840.1.113883.19.5",
                    "bearer_token": "token-the-ehr-issued",
                    "backfill_since": "2026-11-01T00:00:00Z",
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=100)
    base_url: str = Field(
        max_length=2000,
        description="The FHIR base URL (https; http only on this machine's loopback)",
    )
    patient_identifier_system: str = Field(
        min_length=1,
        max_length=500,
        description="The identifier system under which the EHR knows the clinic's patient"
        " reference (`external_ref`, usually the MRN)",
    )
    bearer_token: str | None = Field(
        None, min_length=1, max_length=4000, description="Sent as `Authorization: Bearer`"
    )
    backfill_since: datetime | None = Field(
        None, description="Also queue the readings already stored, measured since this time"
    )

    @field_validator("base_url")
    @classmethod
    def _https(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an https URL such as https://ehr.example.org/fhir/R4")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError(
                "must be https: readings are patient data; plain http only to this machine"
            )
        if parts.query or parts.fragment:
            raise ValueError("must be the FHIR base URL alone, without a query or fragment")
        return url.rstrip("/")

    @field_validator("backfill_since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else in_utc(value)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EndpointChange(RequestBody):
    """What to change: `active`, `bearer_token`, or both."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"active": False}]})

    active: bool | None = Field(
        None, description="false pauses the feed (readings still queue); true resumes it"
    )
    bearer_token: str | None = Field(
        None, min_length=1, max_length=4000, description="A new token the EHR issued"
    )

    @model_validator(mode="after")
    def _something(self) -> EndpointChange:
        if self.active is None and self.bearer_token is None:
            raise ValueError("give active, bearer_token or both")
        return self


class EndpointView(BaseModel):
    id: int
    name: str
    base_url: str
    patient_identifier_system: str
    has_bearer_token: bool = Field(description="The token itself is never shown")
    active: bool
    created_at: datetime
    pending: int
    sent: int
    dead: int
    oldest_pending_at: datetime | None

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointView:
        return cls(
            id=endpoint.id,
            name=endpoint.name,
            base_url=endpoint.base_url,
            patient_identifier_system=endpoint.patient_identifier_system,
            has_bearer_token=endpoint.bearer_token is not None,
            active=endpoint.active,
            created_at=endpoint.created_at,
            pending=endpoint.pending,
            sent=endpoint.sent,
            dead=endpoint.dead,
            oldest_pending_at=endpoint.oldest_pending_at,
        )


class AddedEndpoint(EndpointView):
    queued: int = Field(description="Stored readings queued by `backfill_since`")


class RetryRequest(RequestBody):
    """Either `ids` of dead pushes, or an `endpoint_id` to retry all of its dead ones."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"endpoint_id": 1}, {"ids": [41]}]})

    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        default_factory=list, max_length=MAX_RETRY
    )
    endpoint_id: int | None = Field(None, ge=1, le=2**63 - 1)

    @model_validator(mode="after")
    def _ids_or_endpoint(self) -> RetryRequest:
        if bool(self.ids) == (self.endpoint_id is not None):
            raise ValueError("give either ids or an endpoint_id")
        return self


class Retried(BaseModel):
    ids: list[int] = Field(description="The pushes due again now")


@router.post("/endpoints", status_code=201, summary="Push readings to another FHIR server")
async def add(
    conn: Conn, admin: ManagesEhrFeeds, record: Audit, request: EndpointRequest
) -> AddedEndpoint:
    new = NewEndpoint(
        request.name, request.base_url, request.patient_identifier_system, request.bearer_token
    )
    endpoint_id, queued = await repository.add_endpoint(conn, new, request.backfill_since)
    await record("create", "ehr_endpoint", endpoint_id, details={"queued": queued})
    endpoint = await repository.endpoint(conn, endpoint_id)
    return AddedEndpoint(**EndpointView.of(endpoint).model_dump(), queued=queued)


@router.get("/endpoints", summary="The FHIR servers pushed to, with their outboxes' counts")
async def list_endpoints(conn: Conn, admin: ManagesEhrFeeds) -> list[EndpointView]:
    return [EndpointView.of(e) for e in await repository.endpoints(conn)]


@router.patch("/endpoints/{endpoint_id}", summary="Pause or resume a feed, or renew its token")
async def change(
    conn: Conn,
    admin: ManagesEhrFeeds,
    record: Audit,
    endpoint_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    request: EndpointChange,
) -> EndpointView:
    await repository.endpoint(conn, endpoint_id)
    endpoint = await repository.change(conn, endpoint_id, request.active, request.bearer_token)
    details: dict[str, object] = {"active": request.active}
    details["bearer_token"] = "renewed" if request.bearer_token is not None else None
    await record("update", "ehr_endpoint", endpoint_id, details=details)
    return EndpointView.of(endpoint)


@router.get("/pushes", summary="Readings in the EHR outboxes, newest first")
async def list_pushes(
    conn: Conn,
    admin: ManagesEhrFeeds,
    endpoint_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    status: Literal["pending", "sent", "dead"] | None = None,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Paging: the last id seen")
    ] = None,
    limit: PageLimit = 100,
) -> list[Push]:
    return await repository.pushes(conn, endpoint_id, status, before_id, limit)


@router.post("/pushes/retry", summary="Send dead pushes again (after fixing their cause)")
async def retry(
    conn: Conn, admin: ManagesEhrFeeds, record: Audit, request: RetryRequest
) -> Retried:
    if request.endpoint_id is not None:
        await repository.endpoint(conn, request.endpoint_id)
    ids = await repository.revive(conn, request.ids, request.endpoint_id)
    await record("retry", "ehr_pushes", details={"ids": ids})
    return Retried(ids=ids)
