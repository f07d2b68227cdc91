"""The real `rpm up` stops promptly with a worklist page open: uvicorn waits for every
open response before it stops, and a page's event stream never ends by itself, so the
server ends the streams first (rpm/cli/serve.py)."""

from __future__ import annotations

import http.client
import signal
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.support import TEST_PASSWORD, MosquittoProcess, RpmProcess, add_user

pytestmark = pytest.mark.e2e


def _sign_in(port: int) -> str:
    """The session cookie's value, from the UI's sign-in form."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "POST",
        "/ui/login",
        urlencode({"username": "nurse-1", "password": TEST_PASSWORD}),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = conn.getresponse()
    assert response.status == 303, response.read()
    cookie = response.getheader("Set-Cookie") or ""
    conn.close()
    assert cookie.startswith("rpm_session=")
    return cookie.split(";")[0].removeprefix("rpm_session=")


def test_rpm_up_stops_promptly_with_a_worklist_stream_open(db_url: str, tmp_path: Path) -> None:
    broker = MosquittoProcess("allow_anonymous true\npersistence false\n", tmp_path)
    broker.start()
    rpm = RpmProcess(
        tmp_path,
        "rpm-ui",
        RPM_DATABASE_URL=db_url,
        RPM_MQTT_URL=f"mqtt://127.0.0.1:{broker.port}",
    )
    page: http.client.HTTPConnection | None = None
    try:
        rpm.start()
        rpm.wait_ready()
        add_user(db_url, "nurse-1", "nurse", TEST_PASSWORD)
        token = _sign_in(rpm.http_port)
        page = http.client.HTTPConnection("127.0.0.1", rpm.http_port, timeout=30)
        page.request("GET", "/ui/worklist/events", headers={"Cookie": f"rpm_session={token}"})
        stream = page.getresponse()
        assert stream.status == 200
        assert stream.readline() == b"retry: 5000\n"

        started = time.monotonic()
        rpm.send_signal(signal.SIGTERM)
        assert rpm.wait(timeout=30) == 0, rpm.log()
        stopped_s = time.monotonic() - started
        # The stream ended cleanly (the browser reconnects to whichever process is up).
        assert stream.read() == b"\n"
        print(f"rpm up stopped {stopped_s:.2f} s after SIGTERM with a worklist stream open")
        assert stopped_s < 5, rpm.log()
        assert "Traceback" not in rpm.log()
    finally:
        if page is not None:
            page.close()
        rpm.close()
        broker.stop()
