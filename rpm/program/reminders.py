"""The adherence-reminder job: an opted-in patient silent for a number of whole days (their
own setting, else RPM_ADHERENCE_REMINDER_AFTER_DAYS) is sent one SMS, through the same
outbox as care-team SMS, so the same rate limit, retries and delivery tracking apply.

It waits out the patient's quiet hours (their own, else the service's), never says more
than the number of silent days, and is cancelled before it goes if a reading arrives,
the patient opts out, or monitoring is paused. `adherence.reminder_due` decides who is
due; every process runs the job, and an advisory lock lets one scan at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool

from rpm.alerts import notifications
from rpm.alerts.routing import quiet_hours_end
from rpm.config import AdherenceSettings
from rpm.patients.registry import time_zone
from rpm.program import repository
from rpm.program.adherence import reminder_due, silent_days
from rpm.program.periods import local_day

logger = logging.getLogger(__name__)

REMINDERS = Counter("rpm_adherence_reminders", "Adherence reminders written to the outbox")
# pg_try_advisory_xact_lock's key for the scan (any constant the service uses once).
_SCAN_LOCK = 0x52504D_0A


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AdherenceReminders:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        settings: AdherenceSettings,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._pool = pool
        self._settings = settings
        # Wakes the SMS dispatcher once the reminders are committed.
        self._wake = wake
        self._clock = clock

    async def run(self) -> int:
        """Write the reminders due now; returns how many."""
        now = self._clock()
        written = 0
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", [_SCAN_LOCK])
            row = await cursor.fetchone()
            if not (row and row[0]):
                return 0  # another process is scanning
            for patient in await repository.reminder_candidates(conn):
                zone = time_zone(patient.time_zone)
                today = local_day(now, zone)
                last_day = (
                    None if patient.last_reading_at is None
                    else local_day(patient.last_reading_at, zone)
                )  # fmt: skip
                reminded = (
                    None if patient.last_reminder_at is None
                    else local_day(patient.last_reminder_at, zone)
                )  # fmt: skip
                first_day = local_day(patient.episode_started_at, zone)
                after = patient.after_days or self._settings.reminder_after_days
                if not reminder_due(last_day, reminded, first_day, today, after):
                    continue
                quiet = (patient.quiet_hours_start, patient.quiet_hours_end)
                if quiet[0] is None:
                    quiet = (self._settings.quiet_hours_start, self._settings.quiet_hours_end)
                not_before = quiet_hours_end(patient.time_zone, *quiet, now) or now
                text = self._settings.reminder_template.format(
                    days=silent_days(last_day, first_day, today)
                )
                expires_at = not_before + timedelta(hours=self._settings.reminder_validity_h)
                if await notifications.insert_reminder(
                    conn, patient.patient_id, patient.phone, text, not_before, expires_at
                ):
                    written += 1
        if written:
            REMINDERS.inc(written)
            self._wake()
            logger.info("adherence: %d reminder(s) written to the outbox", written)
        return written
