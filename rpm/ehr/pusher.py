"""The EHR pusher: sends what the EHR outbox holds to each clinic's FHIR server.

Each round claims the due rows (a lease, SKIP LOCKED: several processes never take the
same row), sends each server's share as one transaction Bundle (`rpm.ehr.bundle`) over
HTTPS, and records the answer: sent; due again later, with exponential backoff, when
the server was away, busy or refused rpm's credentials; dead, with the server's reason,
when it refused the content, or after `push_max_attempts` tries. A Bundle refused as a
whole is split, each reading sent alone, so one bad reading never holds back the rest.
At least once: a pusher dying between the send and the record leaves its rows due at
the end of their lease, and the conditional create makes the second delivery a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import aiohttp
from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool

from rpm.backoff import Backoff
from rpm.config import EhrSettings
from rpm.ehr import repository
from rpm.ehr.bundle import Answer, PushItem, Systems, Verdict, judge, transaction
from rpm.ehr.repository import Claimed, Endpoint
from rpm.logs import first_line

logger = logging.getLogger(__name__)

PUSHED = Counter("rpm_ehr_push", "Readings pushed to EHRs, by outcome", ["outcome"])
RETRY = Backoff(initial=5.0, maximum=900.0)
# Longer than a request may take (push_timeout_s), so that a lease outlives its send.
LEASE_MARGIN_S = 30.0
PRUNE_EVERY_S = 3600.0
DEVICE_SERIAL_PATH = "/fhir/sid/device-serial"


class FhirClient(Protocol):
    async def transaction(
        self, endpoint: Endpoint, bundle: dict[str, Any]
    ) -> tuple[int | None, Any, str | None]:
        """POST the Bundle to the server's base: (status, parsed body, error); status
        None when there was no answer, `error` saying why."""
        ...


class HttpFhirClient:
    """FHIR over HTTP(S) with aiohttp, verifying the server's certificate."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def transaction(
        self, endpoint: Endpoint, bundle: dict[str, Any]
    ) -> tuple[int | None, Any, str | None]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {
            "Content-Type": "application/fhir+json",
            "Accept": "application/fhir+json",
        }
        if endpoint.bearer_token:
            headers["Authorization"] = f"Bearer {endpoint.bearer_token}"
        try:
            async with self._session.post(
                endpoint.base_url, data=json.dumps(bundle), headers=headers
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, None, first_line(exc) or type(exc).__name__
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        return status, body, None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class EhrPusher:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        settings: EhrSettings,
        public_url: str,
        client: FhirClient | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._device_serial_system = public_url.rstrip("/") + DEVICE_SERIAL_PATH
        self._client = client or HttpFhirClient(settings.push_timeout_s)
        self._wake = asyncio.Event()
        self._pruned_at = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    while await self.round():
                        pass
                    await self._prune()
                except Exception as exc:  # the outbox keeps everything: try again later
                    logger.warning("EHR push round failed: %s", first_line(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.push_poll_s)
                self._wake.clear()
        finally:
            if isinstance(self._client, HttpFhirClient):
                await self._client.close()

    async def round(self) -> int:
        """Send what is due now; how many rows were claimed."""
        lease_s = self._settings.push_timeout_s * 2 + LEASE_MARGIN_S
        async with self._pool.connection() as conn:
            claimed = await repository.claim(conn, self._settings.push_batch_size, lease_s)
            servers = {e.id: e for e in await repository.endpoints(conn)} if claimed else {}
        by_server: dict[int, list[Claimed]] = {}
        for row in claimed:
            by_server.setdefault(row.endpoint_id, []).append(row)
        for endpoint_id, rows in by_server.items():
            await self._push(servers[endpoint_id], rows)
        return len(claimed)

    async def _push(self, endpoint: Endpoint, rows: Sequence[Claimed]) -> None:
        gone = [row for row in rows if row.item is None]
        ready = [row for row in rows if row.item is not None]
        if gone:
            reason = "the reading is no longer stored (a retention policy dropped it)"
            await self._record(gone, Answer(Verdict.REFUSED, reason, "gone"))
        if not ready:
            return
        answer = await self._send(endpoint, [row.item for row in ready if row.item])
        if answer.verdict is Verdict.REFUSED and len(ready) > 1:
            # Refused as a whole: find which by sending each alone.
            for row in ready:
                assert row.item is not None
                await self._record([row], await self._send(endpoint, [row.item]))
            return
        await self._record(ready, answer)

    async def _send(self, endpoint: Endpoint, items: Sequence[PushItem]) -> Answer:
        systems = Systems(endpoint.patient_identifier_system, self._device_serial_system)
        status, body, error = await self._client.transaction(endpoint, transaction(items, systems))
        return judge(status, body, error)

    async def _record(self, rows: Sequence[Claimed], answer: Answer) -> None:
        """The answer for these rows, in one transaction. Logs name ids and the answer's
        summary only: the EHR's own words (in the row, for admins) may quote a patient's
        identifier."""
        async with self._pool.connection() as conn:
            if answer.verdict is Verdict.SENT:
                await repository.mark_sent(conn, [row.push_id for row in rows])
                PUSHED.labels("sent").inc(len(rows))
                return
            retrying = answer.verdict is Verdict.RETRY
            for row in rows:
                if retrying and row.attempts < self._settings.push_max_attempts:
                    delay = RETRY.delay(row.attempts - 1)
                    await repository.retry_later(conn, [row.push_id], delay, answer.reason or "")
                    PUSHED.labels("retry").inc()
                    logger.info(
                        "EHR push %s to endpoint %s: %s; retrying in %.0f s",
                        row.push_id, row.endpoint_id, answer.summary, delay,
                    )  # fmt: skip
                    continue
                if retrying:
                    reason = f"gave up after {row.attempts} attempts: {answer.reason}"
                else:
                    reason = f"refused: {answer.reason}"
                await repository.mark_dead(conn, [row.push_id], reason)
                PUSHED.labels("dead").inc()
                logger.warning(
                    "EHR push %s to endpoint %s is dead (%s); an admin can retry it",
                    row.push_id, row.endpoint_id, answer.summary,
                )  # fmt: skip

    async def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        async with self._pool.connection() as conn:
            await repository.prune_sent(conn, self._settings.push_keep_sent_days)
