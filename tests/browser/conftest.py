"""Browser tests: the real `rpm up` in a child process (its own database and Mosquitto),
driven by Debian's Chromium through Playwright.

Playwright's own browser download cannot work here (no internet), and is never used:
Chromium is `/usr/bin/chromium` (Debian package `chromium`, which `.ci/run` installs).
Without it the tests are skipped, saying so (a failure in CI, RPM_TEST_NO_SKIPS=1).
Screenshots of each step are kept in test-artifacts/screenshots/ (git-ignored); the run's
summary names the directory.
"""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

from tests.conftest import SCREENSHOTS
from tests.support import (
    TEST_PASSWORD,
    ApiCall,
    MosquittoProcess,
    RpmProcess,
    add_user,
)

CHROMIUM = Path("/usr/bin/chromium")


# Per module, never per session: while Playwright's sync API runs, its event loop counts
# as running in this thread, and every later asyncio.run() (the async tests, the
# template database) would fail.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium);"
            " the browser tests drive it, never a browser of Playwright's own"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@dataclass(frozen=True)
class RunningRpm:
    """`rpm up` on a port of its own, and how to reach it."""

    url: str
    database_url: str
    broker_port: int
    # The API, as an admin.
    admin: ApiCall


def api_call_over_http(base_url: str, headers: dict[str, str]) -> ApiCall:
    def call(method: str, path: str, body: object) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            base_url + path,
            data=data,
            method=method,
            headers={**headers, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    return call


@pytest.fixture
def rpm(db_url: str, tmp_path: Path) -> Iterator[RunningRpm]:
    """The service as `rpm up` runs it, with nothing of the UI's set: the session cookie is
    Secure, as by default, and Chromium keeps it at http://127.0.0.1."""
    broker = MosquittoProcess("allow_anonymous true\npersistence false\n", tmp_path)
    broker.start()
    process = RpmProcess(
        tmp_path,
        "rpm-browser",
        RPM_DATABASE_URL=db_url,
        RPM_MQTT_URL=f"mqtt://127.0.0.1:{broker.port}",
    )
    try:
        process.start()
        process.wait_ready()
        url = f"http://127.0.0.1:{process.http_port}"
        add_user(db_url, "admin-1", "admin", TEST_PASSWORD)
        token = api_call_over_http(url, {})(
            "POST", "/api/v1/auth/token", {"username": "admin-1", "password": TEST_PASSWORD}
        )["access_token"]
        admin = api_call_over_http(url, {"Authorization": f"Bearer {token}"})
        yield RunningRpm(url, db_url, broker.port, admin)
        # A clean stop, with the page's event stream still open.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, process.log()
        assert "Traceback" not in process.log(), process.log()
    finally:
        process.close()
        broker.stop()


def sign_in(page: Page, rpm: RunningRpm, username: str) -> None:
    """Through the sign-in form, to the first page (the worklist)."""
    page.goto(f"{rpm.url}/ui/")
    expect(page).to_have_url(f"{rpm.url}/ui/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{rpm.url}/ui/worklist")


@dataclass
class BrowserPage:
    """A page in a fresh browser context, with what went wrong in it: script errors and
    console errors (a Content-Security-Policy violation is one)."""

    page: Page
    name: str
    errors: list[str] = field(default_factory=list)

    def screenshot(self, step: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{step}.png"
        # caret="initial": hiding the caret means injecting a style, which the pages'
        # Content-Security-Policy refuses (and the refusal would count as an error here).
        self.page.screenshot(path=path, full_page=True, caret="initial")


def _on_console(errors: list[str]) -> Any:
    def record(message: ConsoleMessage) -> None:
        # A refused request is logged by the browser itself; the tests check what the
        # page did about it.
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(message.text)

    return record


# (width, and optionally height) in CSS pixels.
OpenPage = Callable[..., BrowserPage]


@pytest.fixture
def open_page(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[OpenPage]:
    """Opens a page this many CSS pixels wide (and high); each in a browser context of its
    own."""
    contexts: list[BrowserContext] = []

    def open_one(width: int, height: int = 900) -> BrowserPage:
        context = chromium.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
        opened = BrowserPage(page, f"{name}-{width}")
        page.on("console", _on_console(opened.errors))
        page.on("pageerror", lambda error: opened.errors.append(str(error)))
        return opened

    yield open_one
    for context in contexts:
        context.close()
