"""The Bulk Data exporter: writes the NDJSON files of each pending `$export` job.

A task of every `rpm up` (unless RPM_BULK_RUN_EXPORTS is false). It claims the oldest
pending job nobody holds (SKIP LOCKED, with a lease), then writes one file at a time:
up to RPM_BULK_FILE_RESOURCES resources of the type in hand, read with the FHIR API's own
queries (`rpm.fhir.repository`) and made by its own builders, committed together with the
progress past them. An exporter that dies loses at most the file it was writing; when its
lease runs out another takes the job up from the progress, writing no line twice. A job
cancelled (its row deleted) or taken over is simply dropped at the next file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool

from rpm.config import BulkSettings
from rpm.fhir import bulk, exports, repository, resources
from rpm.fhir.exports import Claimed, ExportJob
from rpm.fhir.observations import observations_after
from rpm.fhir.search import Interval
from rpm.logs import first_line

logger = logging.getLogger(__name__)

EXPORTED = Counter("rpm_bulk_export_resources", "Resources written to Bulk Data files", ["type"])
PRUNE_EVERY_S = 600.0


@dataclass(frozen=True)
class Batch:
    lines: list[str]
    patient_ids: list[int]
    cursor: Any
    done: bool


class BulkExporter:
    def __init__(self, pool: AsyncConnectionPool, settings: BulkSettings) -> None:
        self._pool = pool
        self._settings = settings
        self._wake = asyncio.Event()
        self._pruned_at = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                while await self.run_once():
                    pass
                await self._prune()
            except Exception as exc:  # the jobs wait in the table: try again later
                logger.warning("bulk export round failed: %s", first_line(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_s)
            self._wake.clear()

    async def claim(self) -> Claimed | None:
        async with self._pool.connection() as conn:
            return await exports.claim(conn, self._settings.lease_s)

    async def run_once(self) -> bool:
        """Claim a job and write it to its end; False when none was waiting."""
        held = await self.claim()
        if held is None:
            return False
        logger.info("bulk export %s claimed", held.job.id, extra={"action": "bulk_export"})
        try:
            while await self.step(held):
                pass
        except psycopg.OperationalError:
            raise  # the database is away: the lease runs out and the job is taken up again
        except Exception as exc:
            # Not the database: a fault that trying again would meet again.
            logger.exception("bulk export %s failed", held.job.id)
            async with self._pool.connection() as conn:
                await exports.fail(conn, held, first_line(exc), self._settings.expiry_hours)
        return True

    async def step(self, held: Claimed) -> bool:
        """Write the next file (or mark the job complete); False once there is nothing
        more for this exporter to do: complete, cancelled or taken over."""
        job = held.job
        async with self._pool.connection() as conn, conn.transaction():
            progress = await exports.held_progress(conn, held)
            if progress is None:
                logger.info("bulk export %s is no longer this exporter's", job.id)
                return False
            resource_type = bulk.next_type(job.types, progress)
            if resource_type is None:
                await exports.complete(conn, held, self._settings.expiry_hours)
                logger.info("bulk export %s complete", job.id, extra={"action": "bulk_export"})
                return False
            state = bulk.progress_of(progress, resource_type)
            batch = await self._batch(conn, job, resource_type, state.cursor)
            files = state.files
            if batch.lines:
                files += 1
                await exports.add_file(
                    conn, job.id, resource_type, files, len(batch.lines), batch.patient_ids,
                    "".join(batch.lines),
                )  # fmt: skip
                EXPORTED.labels(resource_type).inc(len(batch.lines))
            progress[resource_type] = bulk.TypeProgress(
                batch.cursor, files, state.count + len(batch.lines), batch.done
            ).as_json()
            await exports.advance(conn, held, progress, self._settings.lease_s)
        return True

    async def _batch(
        self, conn: repository.Connection, job: ExportJob, resource_type: str, cursor: Any
    ) -> Batch:
        """The next file's resources of this type after `cursor`, changed within the
        export's window: from `_since` (if any) up to its transaction time."""
        window: Sequence[Interval] = [(job.since, job.transaction_time)]
        # Two readings at least: a batch then always gets past the cursor's own reading.
        limit = max(self._settings.file_resources, 2)
        patients = job.patient_ids
        made: list[tuple[int | None, dict[str, Any]]]
        match resource_type:
            case "Patient":
                rows = await repository.patients(
                    conn, after=cursor or 0, limit=limit, ids=patients, updated=window
                )
                made = [(row.id, resources.patient(row)) for row in rows]
                last, fetched = (rows[-1].id if rows else cursor), len(rows)
            case "Device":
                devices = await repository.devices(
                    conn, after=cursor or 0, limit=limit, patient_ids=patients, updated=window
                )
                made = [(row.patient_id, resources.device(row)) for row in devices]
                last, fetched = (devices[-1].id if devices else cursor), len(devices)
            case "Flag":
                alerts = await repository.alerts(
                    conn, after=cursor or 0, limit=limit, open_only=False,
                    patient_ids=patients, updated=window,
                )  # fmt: skip
                made = [(row.patient_id, resources.flag(row)) for row in alerts]
                last, fetched = (alerts[-1].id if alerts else cursor), len(alerts)
            case "Observation":
                position = bulk.position_of(cursor)
                readings = await repository.measurements(
                    conn, patients, repository.ALWAYS, position, limit, received=window
                )
                found = list(observations_after(readings, position))
                # A cuff's reading makes two: a file ends at `limit`, maybe between them.
                kept = found[:limit]
                made = [(at.patient_id, resource) for at, resource in kept]
                last = bulk.position_json(kept[-1][0]) if kept else cursor
                fetched = len(readings) if len(kept) == len(found) else limit
            case _:
                raise ValueError(f"an export cannot hold {resource_type}")
        lines = [json.dumps(resource, separators=(",", ":")) + "\n" for _, resource in made]
        patient_ids = [p for p, _ in made if p is not None]
        return Batch(lines, patient_ids, last, fetched < limit)

    async def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        async with self._pool.connection() as conn:
            pruned = await exports.prune(conn)
        if pruned:
            logger.info("deleted %s expired bulk exports", pruned)
