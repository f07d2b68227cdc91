"""Sign-in: the throttle, the password, the new session; and who a bearer credential is.

Shared by the API's token endpoint and the browser's sign-in form, so that both throttle,
refuse and audit alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rpm.auth import passwords, repository
from rpm.auth.access import Throttle, locked_until
from rpm.auth.repository import Connection, Session
from rpm.auth.tokens import API_KEY_PREFIX, new_token
from rpm.config import AuthSettings

# The same answer for an unknown user, a wrong password and a deactivated account.
REFUSED = "the username or password is wrong"


class SignInRefused(Exception):
    pass


class SignInLocked(Exception):
    def __init__(self, until: datetime) -> None:
        super().__init__(
            "too many failed sign-ins for this account or from this address:"
            # An RFC 3339 instant: the UI shows it on the reader's clock.
            f" try again after {until.isoformat(timespec='seconds')}"
        )
        self.until = until

    def retry_after_s(self, now: datetime) -> int:
        """Whole seconds until sign-in may be tried again (at least 1): `Retry-After`."""
        return max(1, int((self.until - now).total_seconds()) + 1)


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    token: str
    expires_at: datetime
    # Browser sessions: the token that forms and htmx requests must echo.
    csrf_token: str | None


def throttle_of(settings: AuthSettings) -> Throttle:
    return Throttle(
        settings.login_failures_per_username,
        settings.login_failures_per_client,
        timedelta(minutes=settings.login_window_min),
    )


async def sign_in(
    conn: Connection,
    username: str,
    password: str,
    client_ip: str | None,
    kind: str,
    settings: AuthSettings,
) -> SignedIn:
    """A new session of `kind` ("api_token" or "browser"); `SignInLocked` while the
    throttle holds (checked before the password, so a locked account cannot be probed),
    `SignInRefused` otherwise."""
    now = datetime.now(UTC)
    throttle = throttle_of(settings)
    by_username, by_client = await repository.login_failures(
        conn, username, client_ip, now - throttle.window
    )
    until = locked_until(by_username, by_client, now, throttle)
    if until is not None:
        raise SignInLocked(until)
    found = await repository.credentials(conn, username)
    stored = found.password_hash if found is not None else None
    if not (passwords.verify(stored, password) and found is not None and found.active):
        async with conn.transaction():
            await repository.record_login_failure(conn, username, client_ip)
        raise SignInRefused(REFUSED)
    assert stored is not None
    token = new_token()
    if kind == "browser":
        expires_at = now + timedelta(hours=settings.session_max_hours)
        idle: timedelta | None = timedelta(minutes=settings.idle_timeout_min)
        csrf: str | None = new_token()
    else:
        expires_at, idle, csrf = now + timedelta(minutes=settings.token_ttl_min), None, None
    async with conn.transaction():
        if passwords.needs_rehash(stored):
            await repository.set_password_hash(
                conn, found.user_id, passwords.hash_password(password)
            )
        await repository.start_session(
            conn, found.user_id, kind, token, expires_at, idle, csrf, client_ip
        )
    return SignedIn(found.user_id, token, expires_at, csrf)


async def bearer(conn: Connection, credential: str) -> Session | None:
    """The API token or API key a bearer credential stands for, if it is live. A browser
    session's token is refused here: the API is bearer-only, the cookie is the UI's."""
    async with conn.transaction():
        if credential.startswith(API_KEY_PREFIX):
            principal = await repository.api_key_principal(conn, credential)
            return None if principal is None else Session(principal, None)
        return await repository.session(conn, credential, "api_token")


async def browser(conn: Connection, token: str, touch: bool = True) -> Session | None:
    """The browser session of a cookie, if it is live; `touch`: the request is the
    person's own (it counts as activity against the idle timeout)."""
    async with conn.transaction():
        return await repository.session(conn, token, "browser", touch)
