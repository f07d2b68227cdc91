"""Signing in and out of the UI: the form, the browser session's cookie, and the way in
(the first page the user may use)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rpm.api.auth import audited_sign_in
from rpm.api.deps import Conn, Forbidden, refuse_nul_in_form
from rpm.auth import repository as users
from rpm.auth import service as auth_service
from rpm.web.deps import (
    COOKIE,
    PAGES,
    PREFIX,
    BrowserAudit,
    SignedInBrowser,
    browser_user,
    check_same_origin,
    clear_session_cookie,
    local_page,
    render,
    set_session_cookie,
    settings_of,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# The sign-in form's query after a successful sign-in: arriving without the cookie then
# means the browser refused it (a Secure cookie over plain http).
_JUST_SIGNED_IN = "signed_in"


@router.get("/")
async def home(request: Request, conn: Conn) -> Response:
    """The first page the user may use; the sign-in form when not signed in."""
    if COOKIE not in request.cookies and _JUST_SIGNED_IN in request.query_params:
        return _form(request, cookie_refused=True)
    user = await browser_user(request, conn)
    if back := local_page(request.query_params.get("next")):
        return RedirectResponse(back, 303)
    first = next((p for p in PAGES if user.principal.may(p.permission)), None)
    if first is None:
        raise Forbidden(f"the UI has no page for the role {user.principal.role.value} yet")
    return RedirectResponse(first.path, 303)


@router.get("/login")
async def login_form(
    request: Request,
    ended: str | None = None,
    then: Annotated[str | None, Query(alias="next")] = None,
) -> HTMLResponse:
    return _form(request, ended=ended, back=local_page(then))


@router.post("/login")
async def login(
    request: Request,
    conn: Conn,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    then: Annotated[str, Form(alias="next", max_length=2000)] = "",
) -> Response:
    """Throttled, refused and audited as the API's sign-in is (`audited_sign_in`)."""
    check_same_origin(request)
    await refuse_nul_in_form(request)
    back = local_page(then)
    try:
        signed_in = await audited_sign_in(request, conn, username, password, "browser")
    except auth_service.SignInRefused as exc:
        return _form(request, error=str(exc), username=username, back=back, status_code=401)
    except auth_service.SignInLocked as exc:
        retry_after = str(exc.retry_after_s(datetime.now(UTC)))
        return _form(
            request,
            error=str(exc),
            username=username,
            back=back,
            status_code=429,
            headers={"Retry-After": retry_after},
        )
    previous = request.cookies.get(COOKIE)
    if previous:
        # A new sign-in on this browser: the session it had ends, not lingers.
        async with conn.transaction():
            await users.end_session(conn, previous)
    query = urlencode({_JUST_SIGNED_IN: 1} | ({"next": back} if back else {}))
    response = RedirectResponse(f"{PREFIX}/?{query}", 303)
    set_session_cookie(response, signed_in.token, settings_of(request))
    return response


@router.post("/logout")
async def logout(
    request: Request, conn: Conn, user: SignedInBrowser, record: BrowserAudit
) -> Response:
    async with conn.transaction():
        await users.end_session(conn, request.cookies[COOKIE])
    await record("sign_out", "session", user.principal.user_id)
    response = RedirectResponse(f"{PREFIX}/login?ended=signed_out", 303)
    clear_session_cookie(response, settings_of(request))
    return response


def _form(
    request: Request,
    *,
    ended: str | None = None,
    error: str | None = None,
    username: str = "",
    cookie_refused: bool = False,
    back: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    auth = settings_of(request).auth
    ended_because = {
        "idle": f"You were signed out after {auth.idle_timeout_min} minutes without activity.",
        "expired": f"You were signed out: a session lasts at most {auth.session_max_hours} hours.",
        "revoked": "Your session was ended (signed out elsewhere, or your account changed).",
        "signed_out": "You have signed out.",
    }
    context = {
        "notice": ended_because.get(ended or ""),
        "error": error,
        "username": username,
        "cookie_refused": cookie_refused,
        "next": back,
    }
    return render(request, None, "login.html", context, status_code, headers)
