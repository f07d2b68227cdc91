"""The dead letter's SQL: keep what did not become a reading, list it, and replay it.

A replay marks the row `replayed_at` in the same transaction that feeds its bytes through
the pipeline again, so the row and its outcome commit together. Marking it first also
releases it from the unique index on (topic, payload), so a message that fails again is
dead-lettered again, as a new row that says why this time.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

from rpm.devices.model import Reason
from rpm.ingest.pipeline import DeadLetter, Envelope, Transport

Connection = AsyncConnection[TupleRow]


class DeadLetterError(Exception):
    """A dead-letter request that cannot be carried out, with a message saying why."""


class DeadLetterNotFound(DeadLetterError):
    pass


class AlreadyReplayed(DeadLetterError):
    pass


@dataclass(frozen=True)
class DeadLetterRecord:
    id: int
    received_at: datetime
    source: str
    topic: str
    device_serial: str | None
    reason: str
    detail: str
    payload_bytes: int
    replayed_at: datetime | None
    replay_result: str | None


@dataclass(frozen=True)
class DeadLetterMessage(DeadLetterRecord):
    """A dead letter with its raw bytes shown: as text when they are UTF-8, else base64."""

    payload: str
    payload_encoding: Literal["utf-8", "base64"]

    @classmethod
    def of(cls, record: DeadLetterRecord, payload: bytes) -> DeadLetterMessage:
        try:
            return cls(**vars(record), payload=payload.decode(), payload_encoding="utf-8")
        except UnicodeDecodeError:
            shown = base64.b64encode(payload).decode()
            return cls(**vars(record), payload=shown, payload_encoding="base64")

    def raw(self) -> bytes:
        """The bytes as they arrived (what `of` made of them, undone)."""
        if self.payload_encoding == "utf-8":
            return self.payload.encode()
        return base64.b64decode(self.payload)


@dataclass(frozen=True)
class DeadLetterFilter:
    reason: Reason | None = None
    device_serial: str | None = None


_INSERT = """
INSERT INTO rejected_message (received_at, source, topic, device_serial, payload, reason, detail)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (topic, payload_sha256) WHERE replayed_at IS NULL DO NOTHING
"""

# In DeadLetterRecord's order.
_RECORD = """id, received_at, source, topic, device_serial, reason, detail,
octet_length(payload) AS payload_bytes, replayed_at, replay_result"""
_SELECT = f"SELECT {_RECORD} FROM rejected_message"  # noqa: S608 (constants only)

_MATCHES = """
(%(reason)s::text IS NULL OR reason = %(reason)s)
AND (%(serial)s::text IS NULL OR device_serial = %(serial)s)
"""

# SKIP LOCKED: two replays started at once take different rows rather than waiting.
_CLAIM = f"""
UPDATE rejected_message SET replayed_at = now()
WHERE id IN (SELECT id FROM rejected_message
             WHERE replayed_at IS NULL AND {_MATCHES}
             ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id, source, topic, payload, received_at
"""  # noqa: S608 (constants only)

_CLAIM_IDS = """
UPDATE rejected_message SET replayed_at = now()
WHERE id = ANY(%s) AND replayed_at IS NULL
RETURNING id, source, topic, payload, received_at
"""


async def insert(conn: Connection, letters: Sequence[DeadLetter]) -> None:
    async with conn.cursor() as cursor:
        await cursor.executemany(
            _INSERT,
            [
                (
                    d.envelope.received_at,
                    d.envelope.transport.value,
                    d.envelope.topic,
                    d.device_serial,
                    d.envelope.payload,
                    d.reason.value,
                    d.detail,
                )
                for d in letters
            ],
        )


async def list_dead_letters(
    conn: Connection,
    matching: DeadLetterFilter,
    *,
    include_replayed: bool = False,
    before_id: int | None = None,
    limit: int = 100,
) -> list[DeadLetterRecord]:
    """Newest first, a page at a time (keyset: pass the last id seen as `before_id`)."""
    replayed = "" if include_replayed else "AND replayed_at IS NULL"
    async with conn.cursor(row_factory=class_row(DeadLetterRecord)) as cursor:
        await cursor.execute(
            f"{_SELECT} WHERE {_MATCHES} {replayed}"
            " AND (%(before)s::bigint IS NULL OR id < %(before)s) ORDER BY id DESC LIMIT %(limit)s",
            _params(matching) | {"before": before_id, "limit": limit},
        )
        return await cursor.fetchall()


async def get(conn: Connection, dead_letter_id: int) -> DeadLetterMessage:
    """One dead letter and its raw bytes, exactly as they arrived."""
    cursor = await conn.execute(
        f"SELECT {_RECORD}, payload FROM rejected_message WHERE id = %s",  # noqa: S608
        [dead_letter_id],
    )
    row = await cursor.fetchone()
    if row is None:
        raise DeadLetterNotFound(f"no dead letter with id {dead_letter_id}")
    return DeadLetterMessage.of(DeadLetterRecord(*row[:-1]), bytes(row[-1]))


async def pending_id(conn: Connection, envelope: Envelope) -> int | None:
    """The unreplayed dead letter holding these bytes on this topic, if any."""
    cursor = await conn.execute(
        "SELECT id FROM rejected_message WHERE topic = %s AND payload_sha256 = sha256(%s)"
        " AND replayed_at IS NULL",
        [envelope.topic, envelope.payload],
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else None


async def claim(
    conn: Connection, matching: DeadLetterFilter, limit: int
) -> list[tuple[int, Envelope]]:
    """Mark up to `limit` unreplayed dead letters as replayed; the caller replays them."""
    cursor = await conn.execute(_CLAIM, _params(matching) | {"limit": limit})
    return _envelopes(await cursor.fetchall())


async def claim_ids(conn: Connection, ids: Sequence[int]) -> list[tuple[int, Envelope]]:
    """Mark these dead letters as replayed, or fail naming those that are missing or done."""
    cursor = await conn.execute(_CLAIM_IDS, [list(ids)])
    claimed = _envelopes(await cursor.fetchall())
    unclaimed = sorted(set(ids) - {i for i, _ in claimed})
    if unclaimed:
        cursor = await conn.execute(
            "SELECT id FROM rejected_message WHERE id = ANY(%s)", [unclaimed]
        )
        existing = {row[0] for row in await cursor.fetchall()}
        missing = [i for i in unclaimed if i not in existing]
        if missing:
            raise DeadLetterNotFound(f"no dead letter with id {', '.join(map(str, missing))}")
        raise AlreadyReplayed(
            f"dead letter {', '.join(map(str, unclaimed))} was already replayed; "
            "a replay that failed again left a new dead letter to replay instead"
        )
    return sorted(claimed, key=lambda pair: pair[0])


async def record_result(conn: Connection, dead_letter_id: int, result: str) -> None:
    await conn.execute(
        "UPDATE rejected_message SET replay_result = %s WHERE id = %s", [result, dead_letter_id]
    )


def _params(matching: DeadLetterFilter) -> dict[str, object]:
    return {
        "reason": matching.reason.value if matching.reason else None,
        "serial": matching.device_serial,
    }


def _envelopes(rows: Sequence[TupleRow]) -> list[tuple[int, Envelope]]:
    return [(row[0], Envelope(Transport(row[1]), row[2], bytes(row[3]), row[4])) for row in rows]
