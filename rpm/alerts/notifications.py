"""The SMS outbox's SQL (table `notification`): write, claim, settle, reconcile.

A row is claimed (pending -> sending) and committed before its SMS is sent, and settled
(sent, retry, failed) in a transaction after Twilio answers. A dispatcher that dies in
between leaves the row in `sending`: it is never sent again blindly, but reconciled with
Twilio's record of what it sent (`stale_sending`). docs/alerts.md has the whole argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

from rpm.alerts.routing import Due, Outgoing, recipient_key

Connection = AsyncConnection[TupleRow]

# Twilio's statuses that are its last word on a message; earlier ones change nothing.
FINAL_STATUSES = ("delivered", "undelivered", "failed")


@dataclass(frozen=True)
class NotificationRecord:
    id: int
    alert_id: int
    staff_id: int
    purpose: str
    severity: str
    tier: int
    status: str
    not_before: datetime
    expires_at: datetime
    attempts: int
    twilio_sid: str | None
    error_code: int | None
    error_message: str | None
    digest_of: int
    digested_into: int | None
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class Claimed:
    id: int
    to_phone: str
    body: str | None
    claimed_at: datetime
    # The rows a digest carried by this one counts (settled with it, or sent again).
    counted: list[int]


async def insert(conn: Connection, alert_id: int, outgoing: Sequence[Outgoing]) -> None:
    """In the caller's transaction: the one that changes the alert."""
    if not outgoing:
        return
    async with conn.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO notification (alert_id, staff_id, to_phone, purpose, severity, tier,"
            " not_before, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    alert_id,
                    o.staff_id,
                    o.to_phone,
                    o.purpose,
                    o.severity,
                    o.tier,
                    o.not_before,
                    o.expires_at,
                )
                for o in outgoing
            ],
        )


async def claim_due(conn: Connection, now: datetime, limit: int) -> list[Due]:
    """Cancel what an acknowledgement made moot (and reminders that a reading, an
    opt-out or a pause or discharge made moot), then claim due rows for this dispatcher
    alone (SKIP LOCKED: another dispatcher takes the others)."""
    await conn.execute(
        "UPDATE notification n SET status = 'cancelled', updated_at = now() FROM alert a"
        " WHERE n.status = 'pending' AND n.not_before <= %s AND a.id = n.alert_id"
        " AND a.status <> 'open'",
        [now],
    )
    await conn.execute(
        "UPDATE notification n SET status = 'cancelled', updated_at = now() FROM patient p"
        " WHERE n.status = 'pending' AND n.not_before <= %s AND p.id = n.patient_id"
        " AND (p.reminders_opted_in_at IS NULL OR p.status <> 'active'"
        "      OR EXISTS (SELECT 1 FROM reading r WHERE r.patient_id = p.id"
        "                 AND r.received_at >= n.created_at AND r.statistic IS NULL))",
        [now],
    )
    cursor = await conn.execute(
        "UPDATE notification SET status = 'sending', claimed_at = %s,"
        " attempts = attempts + 1, updated_at = now()"
        " WHERE id IN (SELECT id FROM notification WHERE status = 'pending' AND not_before <= %s"
        "              ORDER BY not_before, id LIMIT %s FOR UPDATE SKIP LOCKED)"
        " RETURNING id, staff_id, to_phone, alert_id, severity, expires_at, attempts,"
        " patient_id, body",
        [now, now, limit],
    )
    return [Due(*row) for row in await cursor.fetchall()]


async def sent_in_window(
    conn: Connection,
    recipients: Iterable[str],
    since: datetime,
    now: datetime,
    claimed: Sequence[int] = (),
) -> dict[str, list[datetime]]:
    """When each recipient (`routing.recipient_key`) was texted within the rate-limit
    window. A row still `sending` (in flight in an earlier round, or left by a dead
    dispatcher) counts as sent now: Twilio may be sending it. The rows this round just
    claimed (`claimed`) are not counted."""
    keys = set(recipients)
    staff = [int(k.split(":")[1]) for k in keys if k.startswith("staff:")]
    patients = [int(k.split(":")[1]) for k in keys if k.startswith("patient:")]
    cursor = await conn.execute(
        "SELECT staff_id, patient_id, CASE WHEN status = 'sending' THEN %s ELSE sent_at END"
        " FROM notification WHERE (staff_id = ANY(%s) OR patient_id = ANY(%s))"
        " AND (sent_at >= %s OR (status = 'sending' AND NOT id = ANY(%s)))",
        [now, staff, patients, since, list(claimed)],
    )
    sent: dict[str, list[datetime]] = {}
    for staff_id, patient_id, at in await cursor.fetchall():
        sent.setdefault(recipient_key(staff_id, patient_id), []).append(at)
    return sent


async def insert_reminder(
    conn: Connection,
    patient_id: int,
    to_phone: str,
    text: str,
    not_before: datetime,
    expires_at: datetime,
) -> bool:
    """An adherence reminder for the patient, unless one is already waiting (another
    process's scan got there first); whether it was added."""
    cursor = await conn.execute(
        "INSERT INTO notification (patient_id, to_phone, purpose, severity, body,"
        " not_before, expires_at) VALUES (%s, %s, 'adherence_reminder', 'warning', %s, %s, %s)"
        " ON CONFLICT (patient_id) WHERE purpose = 'adherence_reminder'"
        " AND status IN ('pending', 'sending') DO NOTHING",
        [patient_id, to_phone, text, not_before, expires_at],
    )
    return cursor.rowcount == 1


async def insert_confirmation_request(
    conn: Connection, patient_id: int, to_phone: str, text: str, now: datetime, expires_at: datetime
) -> int:
    """A request to the patient to re-measure, in the rule engine's transaction; its id.
    It goes now: the reading it follows shows the patient is up and at the device. A
    reading arriving before it goes cancels it (`claim_due`), as it does a reminder."""
    cursor = await conn.execute(
        "INSERT INTO notification (patient_id, to_phone, purpose, severity, body,"
        " not_before, expires_at) VALUES (%s, %s, 'confirmation_request', 'warning', %s, %s, %s)"
        " RETURNING id",
        [patient_id, to_phone, text, now, expires_at],
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def release(conn: Connection, until: Mapping[int, datetime]) -> None:
    """Back to pending until then (a full rate-limit window: not an attempt)."""
    async with conn.cursor() as cursor:
        await cursor.executemany(
            "UPDATE notification SET status = 'pending', not_before = %s,"
            " attempts = attempts - 1, claimed_at = NULL, updated_at = now() WHERE id = %s",
            [(at, notification_id) for notification_id, at in until.items()],
        )


async def expire(conn: Connection, ids: Sequence[int]) -> None:
    if ids:
        await conn.execute(
            "UPDATE notification SET status = 'expired', updated_at = now() WHERE id = ANY(%s)",
            [list(ids)],
        )


async def record_body(
    conn: Connection, notification_id: int, body: str, counted: Sequence[int] = ()
) -> None:
    """The text about to be sent, kept before the send: reconciliation matches on it. The
    rows a digest counts are settled with it (the digest's own row stands for them)."""
    await conn.execute("UPDATE notification SET body = %s WHERE id = %s", [body, notification_id])
    if counted:
        await conn.execute(
            "UPDATE notification SET status = 'digested', digested_into = %s, updated_at = now()"
            " WHERE id = ANY(%s)",
            [notification_id, list(counted)],
        )


async def record_sent(
    conn: Connection, notification_id: int, sid: str, at: datetime, counted: Sequence[int] = ()
) -> None:
    """Twilio accepted it `at` (the dispatcher's clock, which the rate limit counts in)."""
    await conn.execute(
        "UPDATE notification SET status = 'sent', twilio_sid = %s, sent_at = %s,"
        " digest_of = %s, error_code = NULL, error_message = NULL, updated_at = now()"
        " WHERE id = %s AND status = 'sending'",
        [sid, at, len(counted) + 1, notification_id],
    )


async def record_retry(
    conn: Connection,
    ids: Sequence[int],
    not_before: datetime,
    code: int | None,
    message: str,
) -> None:
    await conn.execute(
        "UPDATE notification SET status = 'pending', not_before = %s, claimed_at = NULL,"
        " digested_into = NULL, error_code = %s, error_message = %s, updated_at = now()"
        " WHERE id = ANY(%s)",
        [not_before, code, message, list(ids)],
    )


async def record_failed(
    conn: Connection, ids: Sequence[int], code: int | None, message: str
) -> None:
    await conn.execute(
        "UPDATE notification SET status = 'failed', error_code = %s, error_message = %s,"
        " updated_at = now() WHERE id = ANY(%s)",
        [code, message, list(ids)],
    )


async def record_unknown(conn: Connection, notification_id: int, message: str) -> None:
    """No answer from Twilio: the row stays `sending`, for reconciliation."""
    await conn.execute(
        "UPDATE notification SET error_message = %s, updated_at = now() WHERE id = %s",
        [message, notification_id],
    )


async def stale_sending(conn: Connection, claimed_before: datetime, limit: int) -> list[Claimed]:
    """Rows claimed long ago and never settled: their dispatcher died, or Twilio did not
    answer. Locked for this reconciler alone."""
    cursor = await conn.execute(
        "SELECT id, to_phone, body, claimed_at,"
        " ARRAY(SELECT d.id FROM notification d WHERE d.digested_into = n.id"
        "       AND d.status = 'digested' ORDER BY d.id)"
        " FROM notification n WHERE status = 'sending' AND claimed_at < %s"
        " ORDER BY claimed_at LIMIT %s FOR UPDATE SKIP LOCKED",
        [claimed_before, limit],
    )
    return [Claimed(*row) for row in await cursor.fetchall()]


async def record_status(
    conn: Connection, notification_id: int | None, sid: str, status: str, error_code: int | None
) -> bool:
    """A status callback: Twilio's word on a message. Also settles a row still `sending`
    (its dispatcher died before recording the send). False when no row matches."""
    final = status in FINAL_STATUSES
    cursor = await conn.execute(
        "UPDATE notification SET twilio_sid = %s,"
        " status = CASE WHEN %s THEN %s WHEN status = 'sending' THEN 'sent' ELSE status END,"
        " sent_at = coalesce(sent_at, now()),"
        " error_code = coalesce(%s, error_code), updated_at = now()"
        " WHERE (twilio_sid = %s OR (twilio_sid IS NULL AND id = %s))"
        " AND status NOT IN ('delivered', 'undelivered', 'failed')",
        [sid, final, status, error_code, sid, notification_id],
    )
    return cursor.rowcount > 0


async def for_alert(conn: Connection, alert_id: int) -> list[NotificationRecord]:
    async with conn.cursor(row_factory=class_row(NotificationRecord)) as cursor:
        await cursor.execute(
            "SELECT id, alert_id, staff_id, purpose, severity, tier, status, not_before,"
            " expires_at, attempts, twilio_sid, error_code, error_message, digest_of,"
            " digested_into, created_at, sent_at FROM notification WHERE alert_id = %s"
            " ORDER BY id",
            [alert_id],
        )
        return await cursor.fetchall()
