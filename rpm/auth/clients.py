"""SMART Backend Services clients, the assertions they signed and the access tokens they
were issued: the SQL, in one place (migration 0015), and the token grant that uses it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row
from psycopg.types.json import Jsonb

from rpm.auth import smart
from rpm.auth.tokens import new_token, token_hash

Connection = AsyncConnection[TupleRow]


class ClientNotFound(Exception):
    pass


class ClientConflict(Exception):
    pass


class ClientError(Exception):
    """A registration the rules refuse; the message says which rule."""


@dataclass(frozen=True)
class ClientRecord:
    id: int
    client_id: str
    name: str
    jwks: dict[str, Any]
    scopes: list[str]
    active: bool
    created_at: datetime
    created_by: str


_CLIENT = (
    "SELECT id, client_id, name, jwks, scopes, active, created_at, created_by FROM smart_client"
)


async def register(
    conn: Connection, name: str, jwks: Any, scopes: Sequence[str], created_by: str
) -> ClientRecord:
    """A new client, its client_id made here (a UUID: nothing to guess from it)."""
    try:
        checked = smart.check_jwks(jwks)
        smart.scopes(scopes)
    except smart.SmartRefusal as exc:
        raise ClientError(str(exc)) from None
    except ValueError as exc:
        raise ClientError(str(exc)) from None
    if not scopes:
        raise ClientError("a client needs at least one scope, e.g. system/*.read")
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO smart_client (client_id, name, jwks, scopes, created_by)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING client_id",
                [str(uuid.uuid4()), name, Jsonb(checked), list(scopes), created_by],
            )
            row = await cursor.fetchone()
    except psycopg.errors.UniqueViolation:
        raise ClientConflict(f"a client named {name!r} is registered already") from None
    assert row is not None
    return await get(conn, row[0])


async def get(conn: Connection, client_id: str) -> ClientRecord:
    async with conn.cursor(row_factory=class_row(ClientRecord)) as cursor:
        await cursor.execute(_CLIENT + " WHERE client_id = %s", [client_id])
        record = await cursor.fetchone()
    if record is None:
        raise ClientNotFound(f"no client with client_id {client_id!r}")
    return record


async def list_clients(conn: Connection) -> list[ClientRecord]:
    async with conn.cursor(row_factory=class_row(ClientRecord)) as cursor:
        await cursor.execute(_CLIENT + " ORDER BY id")
        return await cursor.fetchall()


async def set_active(conn: Connection, client_id: str, active: bool) -> ClientRecord:
    """Deactivating also ends the client's tokens at once."""
    async with conn.transaction():
        cursor = await conn.execute(
            "UPDATE smart_client SET active = %s WHERE client_id = %s RETURNING id",
            [active, client_id],
        )
        row = await cursor.fetchone()
        if row is None:
            raise ClientNotFound(f"no client with client_id {client_id!r}")
        if not active:
            await conn.execute("DELETE FROM smart_token WHERE client_id = %s", [row[0]])
    return await get(conn, client_id)


@dataclass(frozen=True)
class AccessToken:
    access_token: str
    scopes: list[str]
    expires_in: int


async def grant(
    conn: Connection,
    assertion: str,
    asked_scope: str,
    token_url: str,
    served: Sequence[str],
    ttl_s: int,
) -> tuple[ClientRecord, AccessToken]:
    """The client_credentials grant: the assertion verified against its client's keys,
    its jti never seen before, the scopes within the registration; a new token."""
    now = datetime.now(UTC)
    try:
        client = await get(conn, smart.assertion_issuer(assertion))
    except ClientNotFound:
        raise smart.SmartRefusal("invalid_client", "no such client (the assertion's iss)") from None
    if not client.active:
        raise smart.SmartRefusal("invalid_client", "this client has been deactivated")
    verified = smart.verify_assertion(assertion, client.jwks, client.client_id, token_url, now)
    scopes = smart.granted(asked_scope, client.scopes, served)
    token = new_token()
    async with conn.transaction():
        await conn.execute("DELETE FROM smart_assertion WHERE expires_at < now()")
        cursor = await conn.execute(
            "INSERT INTO smart_assertion (client_id, jti, expires_at) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            [client.id, verified.jti, verified.expires_at + smart.LEEWAY],
        )
        if cursor.rowcount == 0:
            raise smart.SmartRefusal(
                "invalid_client", "this client_assertion was used before (its jti): sign a new one"
            )
        await conn.execute("DELETE FROM smart_token WHERE expires_at < now()")
        await conn.execute(
            "INSERT INTO smart_token (token_hash, client_id, scopes, expires_at)"
            " VALUES (%s, %s, %s, %s)",
            [token_hash(token), client.id, scopes, now + timedelta(seconds=ttl_s)],
        )
    return client, AccessToken(token, scopes, ttl_s)


@dataclass(frozen=True)
class TokenHolder:
    client_id: str
    name: str
    scopes: list[str]


async def holder(conn: Connection, token: str) -> TokenHolder | None:
    """The active client a live access token was issued to, with its scopes."""
    cursor = await conn.execute(
        "SELECT c.client_id, c.name, t.scopes FROM smart_token t"
        " JOIN smart_client c ON c.id = t.client_id"
        " WHERE t.token_hash = %s AND t.expires_at > now() AND c.active",
        [token_hash(token)],
    )
    row = await cursor.fetchone()
    return None if row is None else TokenHolder(*row)
