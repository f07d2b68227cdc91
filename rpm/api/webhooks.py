"""Vendor webhooks: cellular gateways that push readings over HTTPS instead of MQTT.

A request is authenticated by its integration's secret, sent in the `Authorization`
header (bare, or as `Bearer <secret>`). It then goes through the same pipeline as an MQTT
message, and the reply is sent only once it is committed: 200 means stored or
dead-lettered (the body says which), so the vendor must not send it again; 503 means
nothing was kept, and the vendor's retry is safe because storage is idempotent.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, status
from pydantic import BaseModel

from rpm.api import problems
from rpm.api.deps import CONNECTION_TIMEOUT_S, Ingest, Pool
from rpm.devices.codecs import MAX_PAYLOAD_BYTES
from rpm.ingest import integrations, metrics
from rpm.ingest.integrations import Vendor
from rpm.ingest.pipeline import Envelope, Transport, webhook_topic

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class WebhookReceipt(BaseModel):
    stored: int
    duplicates: int
    dead_lettered: int
    rejections: list[str]


@router.post(
    "/tenovi",
    summary="Tenovi measurement webhook (one measurement, or an array)",
    responses=problems.errors(
        {
            401: "Missing, unknown or revoked integration secret",
            413: "The body is larger than a message may be",
            503: "Nothing was kept; send it again later",
        },
        signed_in=False,
    ),
)
async def tenovi(
    request: Request,
    pool: Pool,
    ingest: Ingest,
    authorization: Annotated[str | None, Header()] = None,
) -> WebhookReceipt:
    integration = None
    if authorization:
        secret = authorization.removeprefix("Bearer ").strip()
        async with pool.connection(timeout=CONNECTION_TIMEOUT_S) as conn:
            integration = await integrations.authenticate(conn, secret)
    if integration is None or integration.vendor != Vendor.TENOVI:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "send the integration's secret in the Authorization header"
            if authorization is None
            else "the Authorization header holds no active Tenovi integration's secret",
        )
    payload = await _read_limited(request)
    envelope = Envelope(
        Transport.HTTP, webhook_topic(Vendor.TENOVI, integration.name), payload, datetime.now(UTC)
    )
    metrics.MESSAGES_RECEIVED.labels(Transport.HTTP.value).inc()
    result = await ingest.ingest([envelope])
    return WebhookReceipt(
        stored=result.stored,
        duplicates=result.duplicates,
        dead_lettered=result.rejected_messages,
        rejections=list(result.rejections),
    )


async def _read_limited(request: Request) -> bytes:
    """The body, or 413 once it passes the size any message may have."""
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > MAX_PAYLOAD_BYTES:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"a webhook body may be at most {MAX_PAYLOAD_BYTES} bytes",
            )
    return bytes(chunks)
