"""The webhook integrations' SQL: one per vendor account, each with its own secret.

The secret is a random 256-bit token shown once, when the integration is created; only
its SHA-256 is kept. To rotate, create a new integration and revoke the old one once the
vendor sends the new secret.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

Connection = AsyncConnection[TupleRow]

# Recognisable in a leaked-credential scan, and never mistaken for a device serial.
SECRET_PREFIX = "rpmwh_"  # noqa: S105 (a prefix, not a secret)


class Vendor(StrEnum):
    TENOVI = "tenovi"


class IntegrationError(Exception):
    """An integration change that cannot be made, with a message saying why."""


@dataclass(frozen=True)
class IntegrationRecord:
    id: int
    name: str
    vendor: str
    created_at: datetime
    revoked_at: datetime | None


_SELECT = "SELECT id, name, vendor, created_at, revoked_at FROM integration"


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create(conn: Connection, name: str, vendor: Vendor) -> tuple[IntegrationRecord, str]:
    """A new integration and its secret; the secret cannot be read back later."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO integration (name, vendor, secret_sha256) VALUES (%s, %s, %s)",
                [name, vendor.value, secret_digest(secret)],
            )
    except psycopg.errors.UniqueViolation:
        raise IntegrationError(f"an integration named {name!r} already exists") from None
    except psycopg.errors.CheckViolation:
        raise IntegrationError(
            f"integration name {name!r} must be 1 to 63 lower-case letters, digits or -,"
            " starting with a letter or digit"
        ) from None
    return await _get(conn, name), secret


async def list_integrations(conn: Connection) -> list[IntegrationRecord]:
    async with conn.cursor(row_factory=class_row(IntegrationRecord)) as cursor:
        await cursor.execute(_SELECT + " ORDER BY name")
        return await cursor.fetchall()


async def revoke(conn: Connection, name: str) -> IntegrationRecord:
    """Refuse the integration's secret from now on; its past messages stay."""
    await conn.execute(
        "UPDATE integration SET revoked_at = coalesce(revoked_at, now()) WHERE name = %s",
        [name],
    )
    return await _get(conn, name)


async def authenticate(conn: Connection, secret: str) -> IntegrationRecord | None:
    """The active integration this secret belongs to, if any."""
    async with conn.cursor(row_factory=class_row(IntegrationRecord)) as cursor:
        await cursor.execute(
            _SELECT + " WHERE secret_sha256 = %s AND revoked_at IS NULL", [secret_digest(secret)]
        )
        return await cursor.fetchone()


async def _get(conn: Connection, name: str) -> IntegrationRecord:
    async with conn.cursor(row_factory=class_row(IntegrationRecord)) as cursor:
        await cursor.execute(_SELECT + " WHERE name = %s", [name])
        record = await cursor.fetchone()
    if record is None:
        raise IntegrationError(f"no integration named {name!r}")
    return record
