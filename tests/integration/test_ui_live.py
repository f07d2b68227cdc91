"""Live worklist updates against the real service and PostgreSQL: the triggers NOTIFY with
the teams concerned; a change reaches the open streams of those teams only; a stream tells
its page when the session has ended; a stream holds no pooled connection while it waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import psycopg
import pytest
from fastapi.testclient import TestClient

from rpm.web import worklist as worklist_ui
from tests.integration.conftest import Clinic
from tests.support import add_alert, browser_sign_in


@pytest.fixture
def quick_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeats every 0.3 s, so that a test sees a quiet stream go by."""
    monkeypatch.setattr(worklist_ui, "HEARTBEAT_S", 0.3)
    monkeypatch.setattr(worklist_ui, "COALESCE_S", 0)


def _listening(client: TestClient) -> None:
    deadline = time.monotonic() + 10
    while not client.app.state.alert_changes.listening:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the process never listened"
        time.sleep(0.02)


def _until(lines: Iterator[str], wanted: str, timeout_s: float = 10) -> list[str]:
    """The stream's lines up to and with `wanted`."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    for line in lines:
        seen.append(line)
        if line == wanted:
            return seen
        assert time.monotonic() < deadline, seen
    pytest.fail(f"the stream ended before {wanted!r}: {seen}")


def test_the_triggers_notify_the_teams_concerned(db_url: str, clinic: Clinic) -> None:
    mine, theirs = clinic.first.patient("MRN-A1"), clinic.second.patient("MRN-B1")
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN alert_changed")

        def heard() -> list[str]:
            return [n.payload for n in listener.notifies(timeout=0.5)]

        alert = add_alert(db_url, mine, "bp_crisis", "critical")
        # The opening event is an insert into alert_event, not alert: one notification.
        assert heard() == [str(clinic.first.team_id)]
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE alert SET status = 'acknowledged' WHERE id = %s", [alert])
            assert heard() == [str(clinic.first.team_id)]
            # One statement over both teams' alerts: one notification naming both.
            add_alert(db_url, theirs, "bp_crisis", "critical")
            heard()
            conn.execute("UPDATE alert SET updated_at = now()")
            both = heard()
            assert len(both) == 1
            teams = {str(clinic.first.team_id), str(clinic.second.team_id)}
            assert set(both[0].split(",")) == teams
            # Nothing changed: nothing said.
            conn.execute("UPDATE alert SET updated_at = now() WHERE id = -1")
            assert heard() == []
            # A patient moving team moves their open alerts between worklists.
            conn.execute(
                "UPDATE patient SET care_team_id = %s WHERE id = %s",
                [clinic.second.team_id, mine],
            )
            assert heard() == [f"{clinic.first.team_id},{clinic.second.team_id}"]
            # An SMS about the alert failing flags it in the worklist.
            conn.execute(
                "INSERT INTO notification (alert_id, staff_id, to_phone, purpose, severity,"
                " tier, status, expires_at) VALUES (%s, %s, '+15555550101', 'opened',"
                " 'critical', 1, 'sent', now())",
                [alert, clinic.nurse],
            )
            assert heard() == []
            conn.execute("UPDATE notification SET status = 'failed'")
            assert heard() == [str(clinic.second.team_id)]


@pytest.mark.usefixtures("quick_streams")
def test_a_change_reaches_the_open_streams_of_its_team_only(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    mine, theirs = clinic.first.patient("MRN-A1"), clinic.second.patient("MRN-B1")
    browser_sign_in(ui_client, "nurse-1")
    _listening(ui_client)
    with ui_client.stream("GET", "/ui/worklist/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["Cache-Control"] == "no-store"
        lines = stream.iter_lines()
        assert next(lines) == "retry: 5000"
        _until(lines, ": still here")

        # Another team's alert: only heartbeats.
        add_alert(db_url, theirs, "bp_crisis", "critical")
        seen = _until(lines, ": still here")
        seen += _until(lines, ": still here")
        assert "event: worklist-changed" not in seen

        # Ours, written by another connection (as another process would): the page is told.
        add_alert(db_url, mine, "bp_crisis", "critical")
        assert _until(lines, "event: worklist-changed")[-1] == "event: worklist-changed"
        assert next(lines) == "data: changed"


@pytest.mark.usefixtures("quick_streams")
def test_a_stream_tells_its_page_when_the_session_has_ended(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    browser_sign_in(ui_client, "nurse-1")
    with ui_client.stream("GET", "/ui/worklist/events") as stream:
        lines = stream.iter_lines()
        _until(lines, ": still here")
        # The stream itself is no activity.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE auth_session SET last_used_at = now() - interval '16 minutes'")
        _until(lines, "event: signed-out")
        assert next(lines) == "data: idle"
        assert [line for line in lines if line] == []  # and it ends

    # A stream without a session is sent to the sign-in form (not back to the stream).
    ui_client.cookies.clear()
    refused = ui_client.get(
        "/ui/worklist/events", headers={"Accept": "text/event-stream"}, follow_redirects=False
    )
    assert refused.status_code == 303
    assert refused.headers["Location"] == "/ui/login"


@pytest.mark.usefixtures("quick_streams")
def test_a_busy_stream_still_tells_its_page_when_the_session_has_ended(
    ui_client: TestClient, db_url: str, clinic: Clinic
) -> None:
    """Changes more often than the heartbeat (an admin's page on a busy system) leave the
    stream never quiet: it looks at the session all the same, once a heartbeat."""
    alert = add_alert(db_url, clinic.first.patient("MRN-A1"), "bp_crisis", "critical")
    browser_sign_in(ui_client, "nurse-1")
    _listening(ui_client)
    stop = threading.Event()

    def busy() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not stop.wait(0.03):
                conn.execute("UPDATE alert SET updated_at = now() WHERE id = %s", [alert])

    writer = threading.Thread(target=busy)
    with ui_client.stream("GET", "/ui/worklist/events") as stream:
        lines = stream.iter_lines()
        _until(lines, ": still here")
        writer.start()
        try:
            _until(lines, "event: worklist-changed")
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("UPDATE auth_session SET last_used_at = now() - interval '16 minutes'")
            seen = _until(lines, "event: signed-out", timeout_s=5)
        finally:
            stop.set()
            writer.join()
        assert ": still here" not in seen  # never quiet: only the changes woke it
        assert next(lines) == "data: idle"


def test_open_streams_hold_no_pooled_connection(ui_client: TestClient, clinic: Clinic) -> None:
    browser_sign_in(ui_client, "nurse-1")
    pool_size = ui_client.app.state.settings.database.pool_max_size  # type: ignore[attr-defined]
    with ExitStack() as streams:
        for _ in range(pool_size + 2):
            stream = streams.enter_context(ui_client.stream("GET", "/ui/worklist/events"))
            assert next(stream.iter_lines()) == "retry: 5000"
        started = time.monotonic()
        page = ui_client.get("/ui/worklist")
        assert page.status_code == 200
        assert time.monotonic() - started < 2
