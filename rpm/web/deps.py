"""What the UI's routes share: the browser session (its cookie, CSRF), templates and the
navigation, error pages, and the headers every page carries.

The cookie is the UI's only: the API stays bearer-only, so CSRF is guarded here alone
(docs/access-control.md, "Browser sessions").
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rpm.api import values as api_values
from rpm.api.deps import (
    AuditTrail,
    Conn,
    audit_context,
    check_permission,
    pooled_connection,
    refuse_nul_in_form,
)
from rpm.auth import repository as users
from rpm.auth import service as auth_service
from rpm.auth.access import Permission, Principal
from rpm.config import Settings
from rpm.web import format as web_format

PREFIX = "/ui"
COOKIE = "rpm_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# Sent by a request the page makes by itself (a live refresh of the worklist): it is no
# sign of a person at the screen, so it does not hold off the idle log-off.
REFRESH_HEADER = "X-RPM-Refresh"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"
templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _on_clock(method: str) -> Callable[..., str]:
    """A filter putting an instant on the page's `clock` (the reader's, from `render`)."""

    @jinja2.pass_context
    def on_clock(context: jinja2.runtime.Context, *args: Any) -> str:
        said: str = getattr(context["clock"], method)(*args)
        return said

    return on_clock


@jinja2.pass_context
def _sentence(context: jinja2.runtime.Context, message: str) -> str:
    """A core message as a sentence, any instant in it on the reader's clock."""
    return web_format.sentence(context["clock"].words(message))


templates.filters.update(
    age=web_format.age,
    ago=web_format.ago,
    label=web_format.label,
    reading=web_format.reading,
    sentence=_sentence,
    day=web_format.day,
    month=web_format.month,
    # Times: "Sat 5 Dec 2026, 15:23 CST"; for <time datetime>; with the patient's beside.
    timestamp=_on_clock("timestamp"),
    iso=_on_clock("iso"),
    time_of_day=_on_clock("time_of_day"),
    patient_time=_on_clock("beside_patient"),
    # A core message's instants on the reader's clock.
    clocked=_on_clock("words"),
)


@dataclass(frozen=True)
class Page:
    """A page of the UI, listed in the navigation to those who may use it."""

    label: str
    path: str
    permission: Permission


# In the navigation's order; a patient's page and care plan are reached from the
# patients list and the worklist.
PAGES = (
    Page("Worklist", f"{PREFIX}/worklist", Permission.READ_PATIENT_DATA),
    Page("Patients", f"{PREFIX}/patients", Permission.READ_PATIENT_DATA),
    Page("Adherence", f"{PREFIX}/adherence", Permission.READ_PATIENT_DATA),
    Page("Huddle", f"{PREFIX}/huddle", Permission.READ_PATIENT_DATA),
    Page("Time report", f"{PREFIX}/reports/time", Permission.READ_PROGRAM_REPORTS),
    Page("Teams", f"{PREFIX}/teams", Permission.READ_CARE_TEAMS),
    Page("Staff", f"{PREFIX}/staff", Permission.MANAGE_USERS),
    Page("Devices", f"{PREFIX}/devices", Permission.MANAGE_DEVICES),
    Page("Dead letters", f"{PREFIX}/dead-letters", Permission.MANAGE_DEAD_LETTERS),
)


class SignedOut(Exception):
    """No live browser session: the sign-in form, saying why when the session ended
    ("idle", "expired", "revoked"; None: there was none)."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason or "not signed in")
        self.reason = reason


class CsrfRefused(Exception):
    """An unsafe request without the session's CSRF token, or from another site (403)."""


@dataclass(frozen=True)
class BrowserUser:
    principal: Principal
    # What the page echoes with each unsafe request (a header from htmx, a form field).
    csrf_token: str


async def browser_user(request: Request, conn: Conn) -> BrowserUser:
    """The user of the request's session cookie; `SignedOut` without a live one, and
    `CsrfRefused` for an unsafe request that does not carry the session's CSRF token."""
    touch = request.headers.get(REFRESH_HEADER) != "live"
    return await _session_user(request, conn, touch)


async def streaming_user(request: Request, permission: Permission) -> BrowserUser:
    """The user of a long-lived response (an event stream), if their role holds the
    permission: looked up on a connection given back at once (a stream must not keep one
    from the pool for hours), and no sign of activity (a page opens its stream by itself)."""
    async with pooled_connection(request) as conn:
        user = await _session_user(request, conn, touch=False)
        await check_permission(request, conn, user.principal, permission)
    return user


async def session_ended(request: Request) -> str | None:
    """Why the request's browser session has ended since (`users.ended_session`, or
    "revoked"); None while it lives. Looks, without counting as activity."""
    token = request.cookies.get(COOKIE, "")
    async with pooled_connection(request) as conn:
        if await auth_service.browser(conn, token, touch=False) is not None:
            return None
        return await users.ended_session(conn, token) or "revoked"


async def _session_user(
    request: Request, conn: AsyncConnection[TupleRow], touch: bool
) -> BrowserUser:
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignedOut(None)
    session = await auth_service.browser(conn, token, touch)
    if session is None:
        raise SignedOut(await users.ended_session(conn, token))
    assert session.csrf_token is not None  # every browser session is given one
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, session.csrf_token)
        await refuse_nul_in_form(request)
    return BrowserUser(session.principal, session.csrf_token)


def check_same_origin(request: Request) -> None:
    """Refuse an unsafe request that the browser says another site made (Fetch Metadata).
    The CSRF token guards signed-in requests; this also guards the sign-in form, which
    has no session yet (a forged sign-in would sign the victim in as the attacker)."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise CsrfRefused("refused: this request came from another site")


async def _check_csrf(request: Request, expected: str) -> None:
    check_same_origin(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        # Starlette keeps the parsed form for the route's own form fields.
        field = (await request.form()).get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if sent is None or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused(
            "refused: the page that sent this is out of date (or not ours); reload it and try again"
        )


SignedInBrowser = Annotated[BrowserUser, Depends(browser_user)]


def require(permission: Permission) -> Callable[..., Awaitable[BrowserUser]]:
    """A dependency: the browser's user, if their role holds the permission (a refusal is
    audited, as the API's are)."""

    async def allowed(request: Request, conn: Conn, user: SignedInBrowser) -> BrowserUser:
        await check_permission(request, conn, user.principal, permission)
        return user

    return allowed


def _audit_trail(request: Request, conn: Conn, user: SignedInBrowser) -> AuditTrail:
    return AuditTrail(conn, audit_context(request, user.principal))


BrowserAudit = Annotated[AuditTrail, Depends(_audit_trail)]
BrowserReadsPatients = Annotated[BrowserUser, Depends(require(Permission.READ_PATIENT_DATA))]
BrowserActsOnAlerts = Annotated[BrowserUser, Depends(require(Permission.ACT_ON_ALERTS))]
BrowserChangesCarePlans = Annotated[BrowserUser, Depends(require(Permission.CHANGE_CARE_PLANS))]
BrowserEnrolsPatients = Annotated[BrowserUser, Depends(require(Permission.ENROL_PATIENTS))]
BrowserManagesDevices = Annotated[BrowserUser, Depends(require(Permission.MANAGE_DEVICES))]
BrowserManagesDeadLetters = Annotated[BrowserUser, Depends(require(Permission.MANAGE_DEAD_LETTERS))]
BrowserLogsTime = Annotated[BrowserUser, Depends(require(Permission.LOG_TIME))]
BrowserHandsOff = Annotated[BrowserUser, Depends(require(Permission.HAND_OFF))]
BrowserReadsCareTeams = Annotated[BrowserUser, Depends(require(Permission.READ_CARE_TEAMS))]
BrowserManagesRota = Annotated[BrowserUser, Depends(require(Permission.MANAGE_ROTA))]
BrowserCreatesCareTeams = Annotated[BrowserUser, Depends(require(Permission.CREATE_CARE_TEAMS))]
BrowserManagesUsers = Annotated[BrowserUser, Depends(require(Permission.MANAGE_USERS))]
BrowserReadsProgramReports = Annotated[
    BrowserUser, Depends(require(Permission.READ_PROGRAM_REPORTS))
]


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def clock_of(request: Request, user: BrowserUser | None) -> web_format.Clock:
    """The reader's clock: the user's own zone or their staff record's, else the
    service's (`RPM_TIME_ZONE`), which is also the clock of a page with nobody signed in."""
    chosen = user.principal.time_zone if user else None
    return web_format.Clock.of(chosen, settings_of(request).service.time_zone)


# A form's datetime-local inputs carry no time zone: their times are on the reader's
# clock, as every time on the pages is. Empty means now (or none, as the form says).
AtField = Annotated[str, Form(max_length=40)]


def form_instant(value: str, what: str, clock: web_format.Clock) -> datetime | None:
    """The form's time as the API's `Instant` would take it (in UTC, years 1 to 9999);
    None for empty; else 422, in words."""
    if not value.strip():
        return None
    try:
        at = clock.entered(value)
    except ValueError:
        raise HTTPException(
            422, f"{what} {value!r} is not a date and time (YYYY-MM-DDTHH:MM, {clock.name})"
        ) from None
    try:
        return api_values.in_utc(at)
    except ValueError as exc:
        raise HTTPException(422, f"{what} {value!r}: {exc}") from None


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    user: BrowserUser | None,
    template: str,
    context: Mapping[str, Any] | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A page (or an htmx fragment) in the layout's context: who is signed in, the pages
    they may use, their CSRF token, their clock."""
    principal = user.principal if user else None
    body = templates.get_template(template).render(
        request=request,
        user=principal,
        clock=clock_of(request, user),
        csrf_token=user.csrf_token if user else None,
        csrf_header=CSRF_HEADER,
        csrf_field=CSRF_FIELD,
        pages=[p for p in PAGES if principal and principal.may(p.permission)],
        **(context or {}),
    )
    return HTMLResponse(body, status_code, headers)


def set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    # No Max-Age: the cookie goes when the browser closes; the server ends the session
    # after the idle timeout or the session's limit in any case.
    response.set_cookie(
        COOKIE,
        token,
        path="/",
        secure=settings.auth.cookie_secure,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE, path="/", secure=settings.auth.cookie_secure, httponly=True, samesite="strict"
    )


def error_response(
    request: Request, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    """A refusal under /ui: to htmx, its sentence as text (the page shows it where the
    person is looking); otherwise a page."""
    if is_htmx(request):
        return PlainTextResponse(detail, status, headers)
    context = {"status": status, "detail": detail}
    return render(request, None, "error.html", context, status, headers)


def install(app: FastAPI) -> None:
    """The UI's static files, its headers, and its errors: pages and sentences under /ui
    instead of the API's problem details (which the API keeps). After the API's error
    handlers are installed: each is wrapped, so both say the same thing."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    for refusal, handler in list(app.exception_handlers.items()):
        app.add_exception_handler(refusal, _page_or(handler))
    app.add_exception_handler(SignedOut, _signed_out)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_middleware(UiHeaders)


ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def _page_or(api_handler: Any) -> ExceptionHandler:
    async def handle(request: Request, exc: Exception) -> Response:
        response: Response = await api_handler(request, exc)
        if not request.url.path.startswith(f"{PREFIX}/"):
            return response
        problem = json.loads(bytes(response.body))
        kept = {k: v for k in ("Retry-After",) if (v := response.headers.get(k))}
        return error_response(request, problem["status"], problem["detail"], kept)

    return handle


def local_page(path: str | None) -> str | None:
    """`path` if it is one of the UI's own pages (where sign-in may return to); None for
    anything else: another site ("//evil.example", "https://..."), a backslash some
    browsers read as a slash, a control character."""
    if not path or not path.startswith(f"{PREFIX}/") or path.startswith(f"{PREFIX}/static/"):
        return None
    if "\\" in path or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return None
    return path


async def _signed_out(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignedOut)
    params = {"ended": exc.reason} if exc.reason else {}
    # An event stream (what EventSource asks for) is no page to come back to.
    stream = "text/event-stream" in request.headers.get("accept", "")
    if request.method == "GET" and not is_htmx(request) and not stream:
        # Back to this page after signing in (an SMS's link to an alert, say).
        query = f"?{request.url.query}" if request.url.query else ""
        if (back := local_page(request.url.path + query)) and back != f"{PREFIX}/":
            params["next"] = back
    login = f"{PREFIX}/login" + (f"?{urlencode(params)}" if params else "")
    response: Response
    if is_htmx(request):
        # htmx follows HX-Redirect whatever the status; 401 tells everyone else.
        response = Response(status_code=401, headers={"HX-Redirect": login})
    else:
        response = RedirectResponse(login, 303)
    if COOKIE in request.cookies:
        clear_session_cookie(response, settings_of(request))
    return response


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return error_response(request, 403, str(exc))


# No script, style or connection but our own; no framing; no referrer beyond us.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:;"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# Pages carry patient data: none kept in the browser's cache (the back button after
# signing out shows nothing).
_NO_STORE = {"Cache-Control": "no-store"}


class UiHeaders:
    """Adds the UI's headers to every response under /ui (a plain ASGI middleware: it
    leaves the live event stream alone)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(f"{PREFIX}/"):
            await self.app(scope, receive, send)
            return
        added = _HEADERS if path.startswith(f"{PREFIX}/static/") else _HEADERS | _NO_STORE

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in added.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
