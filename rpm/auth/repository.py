"""Users, signed-in sessions, API keys and failed sign-ins: the SQL, in one place."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow, class_row

from rpm.auth.access import Principal, Role
from rpm.auth.tokens import NewApiKey, secret_matches, split_api_key, token_hash

Connection = AsyncConnection[TupleRow]


class UserNotFound(Exception):
    pass


class UserConflict(Exception):
    pass


class UserError(Exception):
    """A user the rules refuse; the message says which rule."""


@dataclass(frozen=True)
class NewUser:
    username: str
    role: Role
    staff_id: int | None = None


@dataclass(frozen=True)
class UserRecord:
    id: int
    username: str
    role: str
    staff_id: int | None
    active: bool
    has_password: bool
    created_at: datetime
    created_by: str
    password_changed_at: datetime | None
    # Their own choice of clock for the UI; None: their staff record's, or the service's.
    time_zone: str | None


_USER = (
    "SELECT id, username, role, staff_id, active, password_hash IS NOT NULL AS has_password,"
    " created_at, created_by, password_changed_at, time_zone FROM app_user"
)


async def create_user(
    conn: Connection, user: NewUser, password_hash: str | None, created_by: str
) -> UserRecord:
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO app_user (username, role, staff_id, password_hash, created_by,"
                " password_changed_at)"
                " VALUES (%s, %s, %s, %s, %s, CASE WHEN %s::text IS NULL THEN NULL ELSE now() END)"
                " RETURNING id",
                [
                    user.username,
                    user.role.value,
                    user.staff_id,
                    password_hash,
                    created_by,
                    password_hash,
                ],
            )
            row = await cursor.fetchone()
    except psycopg.errors.UniqueViolation as exc:
        if "staff" in (exc.diag.constraint_name or ""):
            raise UserConflict(f"staff member {user.staff_id} already has a login") from None
        raise UserConflict(f"the username {user.username!r} is taken") from None
    except psycopg.errors.ForeignKeyViolation:
        raise UserError(f"no staff member with id {user.staff_id}") from None
    except psycopg.errors.CheckViolation as exc:
        if "username" in (exc.diag.constraint_name or ""):
            raise UserError(
                "a username is 1 to 64 lower-case letters, digits, '.', '_' or '-',"
                " starting with a letter or digit"
            ) from None
        raise UserError("an integration signs in with API keys, not a password") from None
    assert row is not None
    return await get_user(conn, row[0])


async def get_user(conn: Connection, user_id: int) -> UserRecord:
    async with conn.cursor(row_factory=class_row(UserRecord)) as cursor:
        await cursor.execute(_USER + " WHERE id = %s", [user_id])
        record = await cursor.fetchone()
    if record is None:
        raise UserNotFound(f"no user with id {user_id}")
    return record


async def list_users(conn: Connection, after_id: int, limit: int) -> list[UserRecord]:
    async with conn.cursor(row_factory=class_row(UserRecord)) as cursor:
        await cursor.execute(_USER + " WHERE id > %s ORDER BY id LIMIT %s", [after_id, limit])
        return await cursor.fetchall()


async def update_user(
    conn: Connection, user_id: int, active: bool | None, password_hash: str | None
) -> UserRecord:
    """Deactivating ends the user's sessions and API keys at once."""
    async with conn.transaction():
        cursor = await conn.execute(
            "UPDATE app_user SET active = coalesce(%s::boolean, active),"
            " password_hash = coalesce(%s::text, password_hash),"
            " password_changed_at = CASE WHEN %s::text IS NULL THEN password_changed_at"
            " ELSE now() END"
            " WHERE id = %s RETURNING role",
            [active, password_hash, password_hash, user_id],
        )
        row = await cursor.fetchone()
        if row is None:
            raise UserNotFound(f"no user with id {user_id}")
        if password_hash is not None and row[0] == Role.INTEGRATION:
            raise UserError("an integration signs in with API keys, not a password")
        if active is False or password_hash is not None:
            await conn.execute(
                "UPDATE auth_session SET revoked_at = now()"
                " WHERE user_id = %s AND revoked_at IS NULL",
                [user_id],
            )
        if active is False:
            await conn.execute(
                "UPDATE api_key SET revoked_at = now(), revoked_by = 'deactivation'"
                " WHERE user_id = %s AND revoked_at IS NULL",
                [user_id],
            )
    return await get_user(conn, user_id)


async def set_time_zone(conn: Connection, user_id: int, time_zone: str | None) -> UserRecord:
    """The user's own clock for the UI (None: back to the default). The name is checked
    by the caller (`rpm.web.format.zone`)."""
    cursor = await conn.execute(
        "UPDATE app_user SET time_zone = %s WHERE id = %s RETURNING id", [time_zone, user_id]
    )
    if await cursor.fetchone() is None:
        raise UserNotFound(f"no user with id {user_id}")
    return await get_user(conn, user_id)


@dataclass(frozen=True)
class Credentials:
    user_id: int
    password_hash: str | None
    active: bool


async def logins_of_staff(conn: Connection, staff_ids: Collection[int]) -> dict[int, UserRecord]:
    """The logins of these staff members, by staff id (those without one are absent)."""
    async with conn.cursor(row_factory=class_row(UserRecord)) as cursor:
        await cursor.execute(_USER + " WHERE staff_id = ANY(%s)", [list(staff_ids)])
        return {user.staff_id: user for user in await cursor.fetchall() if user.staff_id}


async def username_of_staff(conn: Connection, staff_id: int) -> str | None:
    """The username of the staff member's login, if they have one."""
    cursor = await conn.execute("SELECT username FROM app_user WHERE staff_id = %s", [staff_id])
    row = await cursor.fetchone()
    return None if row is None else str(row[0])


async def credentials(conn: Connection, username: str) -> Credentials | None:
    cursor = await conn.execute(
        "SELECT id, password_hash, active FROM app_user WHERE username = %s", [username]
    )
    row = await cursor.fetchone()
    return None if row is None else Credentials(*row)


async def set_password_hash(conn: Connection, user_id: int, password_hash: str) -> None:
    """A rehash at sign-in, with parameters grown since: the password itself is unchanged."""
    await conn.execute(
        "UPDATE app_user SET password_hash = %s WHERE id = %s", [password_hash, user_id]
    )


async def record_login_failure(conn: Connection, username: str, client_ip: str | None) -> None:
    await conn.execute(
        "INSERT INTO login_failure (username, client_ip) VALUES (%s, %s)", [username, client_ip]
    )


async def login_failures(
    conn: Connection, username: str, client_ip: str | None, since: datetime
) -> tuple[list[datetime], list[datetime]]:
    """The failures since then: for this username, and from this address."""
    cursor = await conn.execute(
        "SELECT at, username = %s, client_ip = %s::inet FROM login_failure"
        " WHERE at > %s AND (username = %s OR client_ip = %s::inet)",
        [username, client_ip, since, username, client_ip],
    )
    by_username, by_client = [], []
    for at, same_username, same_client in await cursor.fetchall():
        if same_username:
            by_username.append(at)
        if same_client:
            by_client.append(at)
    return by_username, by_client


async def start_session(
    conn: Connection,
    user_id: int,
    kind: str,
    token: str,
    expires_at: datetime,
    idle_timeout: timedelta | None,
    csrf_token: str | None,
    client_ip: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO auth_session (token_hash, user_id, kind, expires_at, idle_timeout,"
        " csrf_token, client_ip) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [token_hash(token), user_id, kind, expires_at, idle_timeout, csrf_token, client_ip],
    )


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf_token: str | None


_LIVE_SESSION = (
    " s.token_hash = %s AND s.kind = %s AND u.id = s.user_id AND u.active"
    " AND s.revoked_at IS NULL AND s.expires_at > now()"
    " AND (s.idle_timeout IS NULL OR s.last_used_at + s.idle_timeout > now())"
)
_SESSION_COLUMNS = (
    " s.kind, s.csrf_token, u.id, u.username, u.role, u.staff_id,"
    " ARRAY(SELECT m.care_team_id FROM care_team_member m WHERE m.staff_id = u.staff_id),"
    # The user's clock: their own choice, else their staff record's.
    " coalesce(u.time_zone, (SELECT st.time_zone FROM staff st WHERE st.id = u.staff_id))"
)


async def session(conn: Connection, token: str, kind: str, touch: bool = True) -> Session | None:
    """The live session of this token and kind, its last use moved to now unless `touch`
    is false (a page refreshing itself is no sign of a person at it); None when the token
    is unknown, of another kind, revoked, expired or idle too long, or its user is
    deactivated."""
    if touch:
        query = (
            "UPDATE auth_session s SET last_used_at = now() FROM app_user u WHERE"  # noqa: S608 (constants only)
            + _LIVE_SESSION
            + " RETURNING"
            + _SESSION_COLUMNS
        )
    else:
        query = (
            "SELECT" + _SESSION_COLUMNS + " FROM auth_session s, app_user u WHERE" + _LIVE_SESSION
        )
    cursor = await conn.execute(query, [token_hash(token), kind])
    row = await cursor.fetchone()
    if row is None:
        return None
    kind, csrf, user_id, username, role, staff_id, teams, zone = row
    principal = Principal(user_id, username, Role(role), staff_id, frozenset(teams), kind, zone)
    return Session(principal, csrf)


async def ended_session(conn: Connection, token: str) -> str | None:
    """Why this token's session no longer signs in: "revoked" (signed out, or its user
    deactivated or their password reset), "idle" (no request within its idle timeout) or
    "expired"; None for a token that never was a session, or whose session is live."""
    cursor = await conn.execute(
        "SELECT CASE WHEN s.revoked_at IS NOT NULL OR NOT u.active THEN 'revoked'"
        " WHEN s.idle_timeout IS NOT NULL"
        "  AND s.last_used_at + s.idle_timeout <= least(now(), s.expires_at) THEN 'idle'"
        " WHEN s.expires_at <= now() THEN 'expired' END"
        " FROM auth_session s JOIN app_user u ON u.id = s.user_id WHERE s.token_hash = %s",
        [token_hash(token)],
    )
    row = await cursor.fetchone()
    return None if row is None else row[0]


async def end_session(conn: Connection, token: str) -> None:
    await conn.execute(
        "UPDATE auth_session SET revoked_at = now() WHERE token_hash = %s AND revoked_at IS NULL",
        [token_hash(token)],
    )


@dataclass(frozen=True)
class ApiKeyRecord:
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None


_API_KEY = (
    "SELECT id, user_id, name, prefix, created_at, created_by, last_used_at, revoked_at,"
    " revoked_by FROM api_key"
)


async def add_api_key(
    conn: Connection, user_id: int, name: str, key: NewApiKey, created_by: str
) -> ApiKeyRecord:
    user = await get_user(conn, user_id)
    if user.role != Role.INTEGRATION:
        # A key does not expire; a person signs in, and is signed out when idle.
        raise UserError(f"user {user_id} is a {user.role}: API keys are for integration users only")
    cursor = await conn.execute(
        "INSERT INTO api_key (user_id, name, prefix, secret_hash, created_by)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        [user_id, name, key.prefix, key.secret_hash, created_by],
    )
    row = await cursor.fetchone()
    assert row is not None
    return await api_key(conn, row[0])


async def api_key(conn: Connection, key_id: int) -> ApiKeyRecord:
    async with conn.cursor(row_factory=class_row(ApiKeyRecord)) as cursor:
        await cursor.execute(_API_KEY + " WHERE id = %s", [key_id])
        record = await cursor.fetchone()
    if record is None:
        raise UserNotFound(f"no API key with id {key_id}")
    return record


async def api_keys(conn: Connection, user_id: int) -> list[ApiKeyRecord]:
    async with conn.cursor(row_factory=class_row(ApiKeyRecord)) as cursor:
        await cursor.execute(_API_KEY + " WHERE user_id = %s ORDER BY id", [user_id])
        return await cursor.fetchall()


async def revoke_api_key(conn: Connection, key_id: int, revoked_by: str) -> ApiKeyRecord:
    await conn.execute(
        "UPDATE api_key SET revoked_at = now(), revoked_by = %s"
        " WHERE id = %s AND revoked_at IS NULL",
        [revoked_by, key_id],
    )
    return await api_key(conn, key_id)


async def api_key_principal(conn: Connection, key: str) -> Principal | None:
    """Whose key this is, if it is live and its user active; its last use moved to now."""
    parts = split_api_key(key)
    if parts is None:
        return None
    prefix, secret = parts
    cursor = await conn.execute(
        "SELECT k.id, k.secret_hash, u.id, u.username, u.role, u.staff_id,"
        " ARRAY(SELECT m.care_team_id FROM care_team_member m WHERE m.staff_id = u.staff_id),"
        " coalesce(u.time_zone, (SELECT st.time_zone FROM staff st WHERE st.id = u.staff_id))"
        " FROM api_key k"
        " JOIN app_user u ON u.id = k.user_id"
        " WHERE k.prefix = %s AND k.revoked_at IS NULL AND u.active",
        [prefix],
    )
    row = await cursor.fetchone()
    if row is None or not secret_matches(secret, row[1]):
        return None
    key_id, _, user_id, username, role, staff_id, teams, zone = row
    await conn.execute("UPDATE api_key SET last_used_at = now() WHERE id = %s", [key_id])
    return Principal(user_id, username, Role(role), staff_id, frozenset(teams), "api_key", zone)
