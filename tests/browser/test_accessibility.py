"""An accessibility scan of every page of the UI: axe-core (pinned by tests/axe's
package-lock.json, installed by `npm_ci`) injected by Playwright into each page, at a
phone's size (390x844) and a desk's (1280x800), for users reading on America/Chicago's
clock; no serious or critical violation. Screenshots of each page at each size in
test-artifacts/screenshots/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import RunningRpm, sign_in
from tests.conftest import SCREENSHOTS
from tests.support import (
    ROOT,
    TEST_PASSWORD,
    Ward,
    add_alert,
    add_readings,
    add_user,
    npm_ci,
)

pytestmark = pytest.mark.browser

AXE_DIR = ROOT / "tests" / "axe"
SIZES = {"phone": (390, 844), "desk": (1280, 800)}
# What axe calls serious or critical: what a user of assistive technology cannot get past.
BLOCKING = ("serious", "critical")


@pytest.fixture(scope="session")
def axe_source() -> str:
    npm_ci(AXE_DIR)
    return (AXE_DIR / "node_modules" / "axe-core" / "axe.min.js").read_text()


def _seed(rpm: RunningRpm) -> dict[str, str]:
    """A team with a nurse and a care manager (both on Chicago's clock), a patient (in New
    York) with a month of readings, alerts and a device; a cuff nobody has, whose message is a dead
    letter. The pages to scan, by name."""
    ward = Ward.open(rpm.admin, "Team A")
    staff = {}
    for username, role in (("nurse-1", "nurse"), ("manager-1", "care_manager")):
        staff[username] = ward.staff(username, username.title(), role=role)
        add_user(rpm.database_url, username, role, TEST_PASSWORD, staff[username])
    # The nurse on call from an hour ago for twelve hours: the rota has cover and gaps.
    start = datetime.now(UTC) - timedelta(hours=1)
    shift = {"staff_id": staff["nurse-1"], "tier": 1, "starts_at": start.isoformat(),
             "ends_at": (start + timedelta(hours=12)).isoformat()}  # fmt: skip
    rpm.admin("POST", f"/api/v1/care-teams/{ward.team_id}/shifts", shift)
    with psycopg.connect(rpm.database_url, autocommit=True) as conn:
        conn.execute("UPDATE staff SET time_zone = 'America/Chicago'")
        conn.execute("UPDATE app_user SET time_zone = 'America/Chicago'")
    patient = ward.patient("MRN-A11Y")
    ward.device("BP-1", "blood_pressure_cuff", patient)
    now = datetime.now(UTC)
    add_readings(
        rpm.database_url,
        "BP-1",
        patient,
        "blood_pressure",
        [
            (now - timedelta(hours=11 * n), {"systolic_mmhg": 150 + n % 40, "diastolic_mmhg": 88})
            for n in range(60)
        ],
    )
    alert = add_alert(rpm.database_url, patient, "bp_crisis", "critical", "BP 186/124: crisis")
    # The patient an hour ahead of the staff, a reading fired the alert: the alert's page
    # shows both clocks.
    with psycopg.connect(rpm.database_url, autocommit=True) as conn:
        conn.execute("UPDATE patient SET time_zone = 'America/New_York' WHERE id = %s", [patient])
        conn.execute(
            "INSERT INTO alert_trigger (alert_id, device_id, kind, measured_at)"
            " SELECT %s, device_id, kind, max(measured_at) FROM reading"
            " GROUP BY device_id, kind",
            [alert],
        )
    add_alert(rpm.database_url, patient, "systolic_low", "high", "Systolic 84", timedelta(hours=3))
    rpm.admin("POST", "/api/v1/devices", {"serial": "BP-LOOSE", "kind": "blood_pressure_cuff"})
    _publish_unassigned(rpm, now)
    with psycopg.connect(rpm.database_url) as conn:
        row = conn.execute("SELECT max(id) FROM rejected_message").fetchone()
    assert row is not None
    return {
        "worklist": "/ui/worklist",
        "patients": "/ui/patients",
        "patient": f"/ui/patients/{patient}",
        "alert": f"/ui/alerts/{alert}",
        "adherence": "/ui/adherence",
        "huddle": "/ui/huddle",
        "enrol": "/ui/patients/new",
        "care-plan": f"/ui/patients/{patient}/care-plan",
        "settings": "/ui/settings",
        "teams": "/ui/teams",
        "team": f"/ui/teams/{ward.team_id}",
        "staff": "/ui/staff",
        "time-report": "/ui/reports/time",
        "devices": "/ui/devices",
        "device": "/ui/devices/BP-1",
        "dead-letters": "/ui/dead-letters",
        "dead-letter": f"/ui/dead-letters/{row[0]}",
    }


def _publish_unassigned(rpm: RunningRpm, now: datetime) -> None:
    """A reading from the cuff nobody has, over the webhook-free way a device talks: MQTT."""
    import paho.mqtt.publish as publish

    payload = {
        "kind": "blood_pressure",
        "measured_at": (now - timedelta(hours=1)).isoformat(),
        "systolic": 128,
        "diastolic": 82,
        "unit": "mmHg",
    }
    publish.single(
        "rpm/v1/devices/BP-LOOSE/readings",
        json.dumps(payload),
        qos=1,
        hostname="127.0.0.1",
        port=rpm.broker_port,
    )
    deadline = datetime.now(UTC) + timedelta(seconds=15)
    while datetime.now(UTC) < deadline:
        with psycopg.connect(rpm.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM rejected_message").fetchone()
        if row and row[0]:
            return
    raise AssertionError("the cuff's message was not dead-lettered")


def _pages_of(role: str, pages: dict[str, str]) -> list[str]:
    admin_only = {"devices", "device", "dead-letters", "dead-letter", "staff"}
    if role == "admin-1":
        everyone = {"settings", "teams", "team", "enrol"}
        return [name for name in pages if name in admin_only or name in everyone]
    # The time report is for care managers (and admins).
    skipped = admin_only | ({"time-report", "enrol"} if role == "nurse-1" else set())
    return [name for name in pages if name not in skipped]


def _violations(page: Page, axe: str) -> list[str]:
    """axe's serious and critical findings on the page as it stands, each in a line:
    the rule, its help and the first elements it names."""
    page.add_script_tag(content=axe)
    results = page.evaluate("async () => await axe.run(document)")
    # axe ran its rules on this page (a scan that checked nothing would pass too).
    assert len(results["passes"]) > 10, results["passes"]
    found = results["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['help']}: "
        + "; ".join(" ".join(n["target"]) for n in v["nodes"][:3])
        for v in found
        if v["impact"] in BLOCKING
    ]


@pytest.fixture
def contexts(chromium: Browser) -> Iterator[list[object]]:
    opened: list[object] = []
    yield opened
    for context in opened:
        context.close()  # type: ignore[attr-defined]


def test_every_page_has_no_serious_or_critical_accessibility_violation(
    rpm: RunningRpm, chromium: Browser, axe_source: str, contexts: list[object]
) -> None:
    pages = _seed(rpm)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    for size, (width, height) in SIZES.items():
        # The pages' Content-Security-Policy refuses an injected script (rightly): this
        # context alone sets it aside, to run axe; the other browser tests keep it.
        context = chromium.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{rpm.url}/ui/login")
        found[f"login at {size}"] = _violations(page, axe_source)
        for user in ("nurse-1", "manager-1", "admin-1"):
            context.clear_cookies()
            sign_in(page, rpm, user)
            for name in _pages_of(user, pages):
                page.goto(rpm.url + pages[name])
                shot = _screenshot_path(f"a11y-{name}-{user}-{size}")
                page.screenshot(path=shot, full_page=True, caret="initial")
                found[f"{name} ({user}) at {size}"] = _violations(page, axe_source)
    failures = {where: v for where, v in found.items() if v}
    assert not failures, json.dumps(failures, indent=2)


def _screenshot_path(name: str) -> Path:
    return SCREENSHOTS / f"{name}.png"
