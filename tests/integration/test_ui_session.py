"""The UI's browser session against the real service: the cookie's flags, CSRF, the idle
log-off (the clock moved back in SQL), the session's limit, signing out, the throttle,
and the cookie and the bearer token each refused where the other belongs."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from tests.support import TEST_PASSWORD, add_user, bearer, browser_csrf, browser_sign_in


def _sql(db_url: str, query: str, *params: object) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(query, params)


def test_signing_in_sets_a_secure_httponly_strict_cookie_and_a_csrf_token(
    ui_client: TestClient, db_url: str
) -> None:
    form = ui_client.get("/ui/login")
    assert form.status_code == 200
    assert '<label for="username">Username</label>' in form.text
    assert '<label for="password">Password</label>' in form.text
    assert form.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in form.headers["Content-Security-Policy"]

    add_user(db_url, "nurse-1", "nurse", TEST_PASSWORD)
    response = ui_client.post(
        "/ui/login",
        data={"username": "nurse-1", "password": TEST_PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/ui/?signed_in=1"
    cookie = response.headers["Set-Cookie"]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert flags == {"httponly", "path=/", "samesite=strict", "secure"}, cookie
    assert "max-age" not in cookie.lower()  # gone with the browser
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT kind, csrf_token IS NOT NULL, idle_timeout FROM auth_session"
        ).fetchone()
        audited = conn.execute(
            "SELECT action, path FROM audit_event WHERE username = 'nurse-1'"
        ).fetchall()
    assert row is not None
    assert row[:2] == ("browser", True)
    assert row[2].total_seconds() == 15 * 60
    assert audited == [("sign_in", "/ui/login")]

    # The way in: the first page the role may use.
    home = ui_client.get("/ui/", follow_redirects=False)
    assert home.status_code == 303
    assert home.headers["Location"] == "/ui/worklist"


def test_a_wrong_password_shows_the_form_again_then_the_throttle_locks(
    ui_client: TestClient, db_url: str
) -> None:
    add_user(db_url, "nurse-1", "nurse", TEST_PASSWORD)
    for _ in range(5):
        refused = ui_client.post("/ui/login", data={"username": "nurse-1", "password": "wrong"})
        assert refused.status_code == 401
        assert "The username or password is wrong." in refused.text
        assert 'value="nurse-1"' in refused.text
    locked = ui_client.post("/ui/login", data={"username": "nurse-1", "password": TEST_PASSWORD})
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in locked.text
    assert "rpm_session" not in ui_client.cookies


def test_a_sign_in_posted_from_another_site_is_refused(ui_client: TestClient, db_url: str) -> None:
    add_user(db_url, "nurse-1", "nurse", TEST_PASSWORD)
    forged = ui_client.post(
        "/ui/login",
        data={"username": "nurse-1", "password": TEST_PASSWORD},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert forged.status_code == 403
    assert "came from another site" in forged.text
    assert "rpm_session" not in ui_client.cookies


def test_an_unsafe_request_needs_the_sessions_csrf_token(
    ui_client: TestClient, db_url: str
) -> None:
    add_user(db_url, "nurse-1", "nurse", TEST_PASSWORD)
    browser_sign_in(ui_client, "nurse-1")
    csrf = browser_csrf(db_url, "nurse-1")

    for refused in (
        ui_client.post("/ui/logout"),
        ui_client.post("/ui/logout", data={"csrf_token": "not-the-token"}),
        ui_client.post(
            "/ui/logout", headers={"X-CSRF-Token": "not-the-token", "HX-Request": "true"}
        ),
    ):
        assert refused.status_code == 403
        assert "out of date" in refused.text
    # htmx is told in words (its page shows the sentence); a form gets a page.
    assert refused.headers["Content-Type"].startswith("text/plain")
    # Still signed in.
    assert ui_client.get("/ui/", follow_redirects=False).headers["Location"] == "/ui/worklist"

    # The header (htmx) or the form field both carry it.
    signed_out = ui_client.post(
        "/ui/logout", headers={"X-CSRF-Token": csrf}, follow_redirects=False
    )
    assert signed_out.status_code == 303
    assert signed_out.headers["Location"] == "/ui/login?ended=signed_out"


def test_signing_out_ends_the_session_and_clears_the_cookie(
    ui_client: TestClient, db_url: str
) -> None:
    add_user(db_url, "nurse-1", "nurse", TEST_PASSWORD)
    browser_sign_in(ui_client, "nurse-1")
    cookie = ui_client.cookies["rpm_session"]
    response = ui_client.post(
        "/ui/logout", data={"csrf_token": browser_csrf(db_url, "nurse-1")}, follow_redirects=False
    )
    assert response.status_code == 303
    assert 'rpm_session=""' in response.headers["Set-Cookie"]
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    page = ui_client.get(response.headers["Location"])
    assert "You have signed out." in page.text

    # The old cookie, kept by someone, is worth nothing now.
    ui_client.cookies.set("rpm_session", cookie, domain="testserver.local")
    again = ui_client.get("/ui/", follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["Location"] == "/ui/login?ended=revoked"
    with psycopg.connect(db_url) as conn:
        actions = conn.execute(
            "SELECT action FROM audit_event WHERE username = 'nurse-1' ORDER BY id"
        ).fetchall()
    assert actions == [("sign_in",), ("sign_out",)]


def test_the_session_ends_after_the_idle_timeout_and_the_page_says_so(
    ui_client: TestClient, db_url: str
) -> None:
    add_user(db_url, "nurse-1", "nurse", TEST_PASSWORD)
    browser_sign_in(ui_client, "nurse-1")
    assert ui_client.get("/ui/", follow_redirects=False).headers["Location"] == "/ui/worklist"

    # 14 minutes idle: still signed in, and the request counts as activity.
    _sql(db_url, "UPDATE auth_session SET last_used_at = now() - interval '14 minutes'")
    assert ui_client.get("/ui/", follow_redirects=False).headers["Location"] == "/ui/worklist"
    # A refresh the page makes by itself does not count: it keeps nobody signed in.
    _sql(db_url, "UPDATE auth_session SET last_used_at = now() - interval '14 minutes'")
    ui_client.get("/ui/", headers={"X-RPM-Refresh": "live"}, follow_redirects=False)
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT now() - last_used_at FROM auth_session").fetchone()
    assert row is not None
    assert row[0].total_seconds() >= 14 * 60

    _sql(db_url, "UPDATE auth_session SET last_used_at = now() - interval '16 minutes'")
    # htmx is sent to the sign-in form by HX-Redirect; a page by a redirect.
    fragment = ui_client.get("/ui/", headers={"HX-Request": "true"}, follow_redirects=False)
    assert fragment.status_code == 401
    assert fragment.headers["HX-Redirect"] == "/ui/login?ended=idle"
    assert "Max-Age=0" in fragment.headers["Set-Cookie"]
    ui_client.cookies.clear()
    page = ui_client.get("/ui/login?ended=idle")
    assert "You were signed out after 15 minutes without activity." in page.text


def test_the_session_ends_at_its_limit_however_active(ui_client: TestClient, db_url: str) -> None:
    add_user(db_url, "nurse-1", "nurse", TEST_PASSWORD)
    browser_sign_in(ui_client, "nurse-1")
    _sql(db_url, "UPDATE auth_session SET expires_at = now() - interval '1 second'")
    response = ui_client.get("/ui/", follow_redirects=False)
    assert response.headers["Location"] == "/ui/login?ended=expired"
    assert "a session lasts at most 12 hours" in ui_client.get(response.headers["Location"]).text


def test_the_cookie_is_not_a_bearer_token_nor_a_bearer_token_a_cookie(
    ui_client: TestClient, db_url: str
) -> None:
    add_user(db_url, "nurse-1", "nurse", TEST_PASSWORD)
    browser_sign_in(ui_client, "nurse-1")
    cookie = ui_client.cookies["rpm_session"]
    # The API is bearer-only: it takes neither the cookie nor its value as a token.
    assert ui_client.get("/api/v1/auth/me").status_code == 401
    as_bearer = ui_client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {cookie}"})
    assert as_bearer.status_code == 401

    token = bearer(ui_client, "nurse-1", TEST_PASSWORD)["Authorization"].split()[1]
    ui_client.cookies.clear()
    ui_client.cookies.set("rpm_session", token, domain="testserver.local")
    assert ui_client.get("/ui/", follow_redirects=False).headers["Location"] == "/ui/login"


def test_a_browser_that_drops_the_secure_cookie_is_told_why(ui_client: TestClient) -> None:
    # What a browser sees after signing in over plain http away from loopback.
    page = ui_client.get("/ui/?signed_in=1")
    assert page.status_code == 200
    assert "did not keep the sign-in cookie" in page.text
    assert "RPM_AUTH_COOKIE_SECURE=false" in page.text


def test_a_nul_character_in_a_form_is_refused_in_words_not_a_server_error(
    ui_client: TestClient, db_url: str
) -> None:
    add_user(db_url, "admin-1", "admin", TEST_PASSWORD)
    sign_in = ui_client.post("/ui/login", data={"username": "admin\x00", "password": "x"})
    assert sign_in.status_code == 422
    assert "username: text may not contain the NUL character" in sign_in.text

    browser_sign_in(ui_client, "admin-1")
    htmx = {"HX-Request": "true", "X-CSRF-Token": browser_csrf(db_url, "admin-1")}
    form = {"serial": "BP-1", "kind": "blood_pressure_cuff", "model": "cuff\x00"}
    refused = ui_client.post("/ui/devices", data=form, headers=htmx)
    assert refused.status_code == 422
    assert refused.text == (
        "the request is not valid: body.model: text may not contain the NUL character"
        " (\\u0000, %00)"
    )
